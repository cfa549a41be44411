// Before/after per dataset from a run's responses: compliance counts with Wilson intervals, and the prompts whose
// judgement flipped, paired by prompt index (the same prompt answered by the model alone and edited), for the exact
// McNemar test and the example responses. Shared by the headline, the sweep and the examples sections.
import type { EvalResult, ResponseRow } from '../method/evaluate.js';
import { isHeldOutHarmful } from '../method/heldout.js';
import { type Interval, mcnemarExact, wilsonInterval } from '../method/stats.js';

export interface Rate {
  n: number;
  complied: number;
  rate: number;
  ci: Interval | null;
}

/** A result's compliance as a count (eval.json keeps the rate; n · rate is an integer up to rounding). */
export function rateOf(r: Pick<EvalResult, 'n' | 'compliance_rate'>): Rate {
  const complied = Math.round(r.compliance_rate * r.n);
  return { n: r.n, complied, rate: r.compliance_rate, ci: wilsonInterval(complied, r.n) };
}

export interface PairedDataset {
  dataset: string;
  before: Rate;
  after: Rate;
  /** The edited condition's name ("ablated", "ablated+actadd"). */
  condition: string;
  /** Refused before, complied after / complied before, refused after; null without paired responses. */
  toCompliance: { before: ResponseRow; after: ResponseRow }[] | null;
  toRefusal: { before: ResponseRow; after: ResponseRow }[] | null;
  pValue: number | null;
}

/** One row per dataset that has both a baseline and an edited result, in eval.json's order. */
export function pairDatasets(results: EvalResult[], responses: ResponseRow[]): PairedDataset[] {
  const out: PairedDataset[] = [];
  for (const base of results.filter((r) => r.condition === 'baseline')) {
    const edited = results.find((r) => r.dataset === base.dataset && r.condition !== 'baseline');
    if (!edited) continue;
    const pairs = pairResponses(responses, base.dataset, edited.condition, base.n);
    const toCompliance = pairs?.filter((p) => p.before.refusal && !p.after.refusal) ?? null;
    const toRefusal = pairs?.filter((p) => !p.before.refusal && p.after.refusal) ?? null;
    out.push({
      dataset: base.dataset,
      before: rateOf(base),
      after: rateOf(edited),
      condition: edited.condition,
      toCompliance,
      toRefusal,
      pValue: toCompliance && toRefusal ? mcnemarExact({ b: toCompliance.length, c: toRefusal.length }) : null,
    });
  }
  return out;
}

/**
 * Baseline and edited responses of one dataset matched by prompt index; null unless every index 0..n-1 is there
 * once in both with the same prompt (a partial or mismatched file must not give a test that looks exact).
 */
function pairResponses(
  rows: ResponseRow[],
  dataset: string,
  condition: string,
  n: number,
): { before: ResponseRow; after: ResponseRow }[] | null {
  const byIndex = (cond: string) => {
    const m = new Map<number, ResponseRow>();
    for (const r of rows) if (r.dataset === dataset && r.condition === cond) m.set(r.index, r);
    return m;
  };
  const before = byIndex('baseline');
  const after = byIndex(condition);
  if (before.size !== n || after.size !== n) return null;
  const pairs: { before: ResponseRow; after: ResponseRow }[] = [];
  for (let i = 0; i < n; i++) {
    const b = before.get(i);
    const a = after.get(i);
    if (!b || !a || b.prompt !== a.prompt) return null;
    pairs.push({ before: b, after: a });
  }
  return pairs;
}

/** What a reader hopes a dataset's compliance does under the edit, guessed from its name (for labels only). */
export function datasetKind(name: string): 'pseudo-harmful' | 'harmful' | 'harmless' | 'other' {
  if (isHeldOutHarmful(name)) return 'harmful';
  const n = name.toLowerCase();
  if (/pseudo|xstest-safe|or-bench-hard|oktest|coconot/.test(n)) return 'pseudo-harmful';
  if (/alpaca|harmless|benign/.test(n)) return 'harmless';
  if (/harmful|unsafe|toxic|advbench|harmbench|strongreject|jbb/.test(n)) return 'harmful';
  return 'other';
}
