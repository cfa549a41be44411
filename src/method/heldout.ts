// The held-out harmful figure: every evaluated set whose definition says `kind: 'harmful'` (datasets.ts) pooled
// into one refusal rate, baseline and edited, with Wilson 95% intervals and each set's change beside it. Pooling
// counts prompts, not sets: a set of 200 weighs twice one of 100. Written into eval.json, printed under the table
// and shown in the report's headline.
import { publicSetOf } from './datasets.js';
import { wilsonInterval, type Interval } from './stats.js';

/** What pooling reads of an eval.json row (EvalResult has these fields). */
export interface RateRow {
  dataset: string;
  condition: string;
  n: number;
  refusal_rate: number;
}

export interface PooledRate {
  n: number;
  refusals: number;
  refusal_rate: number;
  wilson95: Interval | null;
}

export interface HeldOutHarmful {
  /** The edited condition pooled against the baseline ('ablated' or 'ablated+actadd'); null for a model alone. */
  condition: string | null;
  sets: {
    dataset: string;
    n: number;
    baseline_refusal: number;
    edited_refusal: number | null;
    change: number | null;
  }[];
  pooled: { baseline: PooledRate; edited: PooledRate | null; change: number | null };
}

/** Whether an evaluation set reference ("name" or "name:N") is a held-out harmful set. */
export function isHeldOutHarmful(ref: string): boolean {
  return publicSetOf(ref)?.kind === 'harmful';
}

/** A rate row's refusal count: eval.json stores the rate, and n · rate is an integer up to rounding. */
const refusalsOf = (r: RateRow) => Math.round(r.refusal_rate * r.n);

function pool(rows: RateRow[]): PooledRate {
  const n = rows.reduce((a, r) => a + r.n, 0);
  const refusals = rows.reduce((a, r) => a + refusalsOf(r), 0);
  return { n, refusals, refusal_rate: n > 0 ? refusals / n : 0, wilson95: wilsonInterval(refusals, n) };
}

/**
 * The pooled held-out harmful refusal of an evaluation's results; null when no held-out harmful set was evaluated.
 * A set counts only when its baseline and (with an edit) its edited row are both there, so both pools hold the
 * same prompts.
 */
export function heldOutHarmful(results: readonly RateRow[]): HeldOutHarmful | null {
  const condition = results.find((r) => r.condition !== 'baseline')?.condition ?? null;
  const sets: HeldOutHarmful['sets'] = [];
  const base: RateRow[] = [];
  const edited: RateRow[] = [];
  for (const b of results.filter((r) => r.condition === 'baseline' && isHeldOutHarmful(r.dataset))) {
    const e = condition ? results.find((r) => r.dataset === b.dataset && r.condition === condition) : undefined;
    if (condition && !e) continue;
    base.push(b);
    if (e) edited.push(e);
    sets.push({
      dataset: b.dataset,
      n: b.n,
      baseline_refusal: b.refusal_rate,
      edited_refusal: e ? e.refusal_rate : null,
      change: e ? e.refusal_rate - b.refusal_rate : null,
    });
  }
  if (sets.length === 0) return null;
  const pooledBase = pool(base);
  const pooledEdited = condition ? pool(edited) : null;
  return {
    condition,
    sets,
    pooled: {
      baseline: pooledBase,
      edited: pooledEdited,
      change: pooledEdited ? pooledEdited.refusal_rate - pooledBase.refusal_rate : null,
    },
  };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const signed = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(100 * x).toFixed(1)}`;
const ci = (r: PooledRate) => (r.wilson95 ? ` [${pct(r.wilson95.lo)}, ${pct(r.wilson95.hi)}]` : '');

/** One line for the printed table: the pooled refusal, baseline → edited, and the per-set changes. */
export function describeHeldOut(h: HeldOutHarmful): string {
  const p = h.pooled;
  const head = `held-out harmful refusal, pooled over ${h.sets.length} set${h.sets.length === 1 ? '' : 's'} (n = ${p.baseline.n}, Wilson 95%): ${pct(p.baseline.refusal_rate)}${ci(p.baseline)}`;
  if (!p.edited) return head;
  const per = h.sets.map((s) => `${s.dataset} ${signed(s.change!)}`).join(', ');
  return `${head} → ${pct(p.edited.refusal_rate)}${ci(p.edited)} (${signed(p.change!)} points; per set: ${per})`;
}
