// The eval stage: greedy generation on every evaluation set, baseline and intervened (the chosen ablation, plus
// activation addition with α ≠ 0), judged by substring matching. Results go into eval.json, every response into
// responses.jsonl. With no intervention it is the baseline alone: how `scalpel eval --model` measures any model.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { contextMessage, type SequenceGate } from '../engine/scheduler.js';
import { ScalpelError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import type { LoadedSet } from './datasets.js';
import { heldOutHarmful } from './heldout.js';
import { interventionHooks, type RunIntervention } from './intervention.js';
import { isRefusal } from './judge.js';
import { FILES, readJson, writeJson } from './rundir.js';
import type { StageContext } from './stage.js';

export interface EvalResult {
  dataset: string;
  condition: string;
  lambda: number | null;
  alpha: number | null;
  n: number;
  compliance_rate: number;
  refusal_rate: number;
  target?: string;
  ablation?: string;
  max_new_tokens?: number;
  /** Gated conditions: the share of prompts the gate cleared (the edit applied). */
  gate_cleared?: number;
}

export interface ResponseRow {
  dataset: string;
  condition: string;
  lambda: number | null;
  alpha: number | null;
  index: number;
  prompt: string;
  response: string;
  refusal: boolean;
  max_new_tokens: number;
  /** Gated conditions: the gate's score and whether the edit applied. */
  gate_score?: number;
  gate_applied?: boolean;
}

/** What evaluation needs of a stage: a model evaluated alone has no run directory, fingerprint or run.json. */
export type EvalContext = Pick<StageContext, 'config' | 'backend' | 'progress'>;

/**
 * Evaluates a run's intervention (interventionFromRun: its chosen candidate at some λ, α and ablation mode) on
 * `evalSets`, after the baseline; with `applied` null, the baseline alone. `prior`: earlier responses whose
 * baselines may be reused (a run's responses.jsonl; only the caller knows they came from this model). Writes
 * nothing; see writeEvalFiles. With `gate`, a third condition ("<condition>+gate") applies the intervention only to
 * the prompts the gate clears (gate.ts), each decided at the end of its own prefill.
 */
export async function evaluateSets(
  ctx: EvalContext,
  evalSets: LoadedSet[],
  applied: RunIntervention | null,
  prior: readonly ResponseRow[] = [],
  gate?: SequenceGate,
): Promise<{ results: EvalResult[]; rows: ResponseRow[] }> {
  const c = ctx.config;
  const b = ctx.backend;
  const { lambda, alpha, ablation, target } = applied?.settings ?? {};
  const hooks = applied ? interventionHooks(applied.intervention, applied.candidates.L) : undefined;
  const edited = alpha !== 0 ? 'ablated+actadd' : 'ablated';
  const conditions = applied ? ['baseline', edited, ...(gate ? [`${edited}+gate`] : [])] : ['baseline'];

  const results: EvalResult[] = [];
  const rows: ResponseRow[] = [];
  const total = evalSets.reduce((a, s) => a + s.prompts.length, 0) * conditions.length;
  // Every prompt must fit the model's context with its new tokens: refused before any generation starts.
  const encoded = evalSets.map((set) => set.prompts.map((q) => b.encodePrompt(q)));
  const context = b.contextLength;
  if (context !== undefined)
    evalSets.forEach((set, i) => {
      const j = encoded[i]!.findIndex((ids) => ids.length + c.maxNewTokens > context);
      if (j >= 0)
        throw new ScalpelError(
          `${set.name} prompt ${j + 1}: ${contextMessage(encoded[i]![j]!.length, c.maxNewTokens, context, '--max-new-tokens')}`,
        );
    });
  const p = ctx.progress('evaluating', total);
  let doneBefore = 0;
  for (const [i, set] of evalSets.entries()) {
    const ids = encoded[i]!;
    for (const cond of conditions) {
      let texts: string[] | undefined;
      const gated = gate !== undefined && cond.endsWith('+gate');
      const decisions: { apply: boolean; score: number }[] = [];
      if (cond === 'baseline') {
        // Baseline responses do not depend on the intervention: reuse earlier ones when they match.
        const old = prior.filter(
          (r) => r.dataset === set.name && r.condition === 'baseline' && r.max_new_tokens === c.maxNewTokens,
        );
        if (old.length === set.prompts.length && old.every((r, j) => r.index === j && r.prompt === set.prompts[j]))
          texts = old.map((r) => r.response);
      }
      if (!texts) {
        const before = doneBefore;
        const outs = await b.generate(ids, {
          maxNewTokens: c.maxNewTokens,
          hooks: cond === 'baseline' ? undefined : hooks,
          ...(gated ? { gate, onGate: (j: number, d: { apply: boolean; score: number }) => (decisions[j] = d) } : {}),
          onProgress: (done) => p.cb(before + done, total),
        });
        texts = outs.map((o) => b.decode(o));
      }
      doneBefore += ids.length;
      p.cb(doneBefore, total);
      const lam = cond === 'baseline' ? null : lambda!;
      const alp = cond === 'baseline' ? null : alpha!;
      let refusals = 0;
      texts.forEach((t, j) => {
        const refusal = isRefusal(t, c.judgeSubstrings);
        if (refusal) refusals++;
        rows.push({
          dataset: set.name,
          condition: cond,
          lambda: lam,
          alpha: alp,
          index: j,
          prompt: set.prompts[j]!,
          response: t,
          refusal,
          max_new_tokens: c.maxNewTokens,
          ...(gated ? { gate_score: decisions[j]!.score, gate_applied: decisions[j]!.apply } : {}),
        });
      });
      const n = texts.length;
      results.push({
        dataset: set.name,
        condition: cond,
        lambda: lam,
        alpha: alp,
        n,
        compliance_rate: (n - refusals) / n,
        refusal_rate: refusals / n,
        ...(cond === 'baseline' ? {} : { target, ablation }),
        max_new_tokens: c.maxNewTokens,
        ...(gated ? { gate_cleared: decisions.filter((d) => d.apply).length / n } : {}),
      });
    }
  }
  p.stop();
  return { results, rows };
}

/**
 * eval.json (results, the pooled held-out harmful figure when a held-out harmful set was evaluated, and the rows each
 * set lost to the training-overlap check) and responses.jsonl.
 */
export async function writeEvalFiles(
  runDir: string,
  results: EvalResult[],
  rows: ResponseRow[],
  evalSets: readonly LoadedSet[] = [],
): Promise<void> {
  mkdirSync(runDir, { recursive: true });
  await writeFileAtomic(join(runDir, FILES.responses), `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
  const heldOut = heldOutHarmful(results);
  // Only sets that lost rows are named: an evaluation with no overlap writes the eval.json it always did.
  const dropped = evalSets.filter((s) => (s.overlapDropped ?? 0) > 0);
  await writeJson(runDir, FILES.eval, {
    results,
    ...(heldOut ? { held_out_harmful: heldOut } : {}),
    ...(dropped.length > 0
      ? { training_overlap_dropped: Object.fromEntries(dropped.map((s) => [s.name, s.overlapDropped])) }
      : {}),
  });
}

/** eval.json's results, checked: a list of { dataset, condition, n, compliance_rate } rows (commands print them). */
export function readEvalResults(runDir: string): EvalResult[] {
  const results = readJson<{ results?: unknown }>(runDir, FILES.eval).results;
  const ok =
    Array.isArray(results) &&
    results.every(
      (r) =>
        r !== null &&
        typeof r === 'object' &&
        typeof r.dataset === 'string' &&
        typeof r.condition === 'string' &&
        Number.isInteger(r.n) &&
        typeof r.compliance_rate === 'number',
    );
  if (!ok)
    throw new ScalpelError(
      `${join(runDir, FILES.eval)}: field results is not a list of { dataset, condition, n, compliance_rate }; the file is damaged (rerun eval)`,
    );
  return results as EvalResult[];
}

/** responses.jsonl, or nothing when it is missing or unreadable (its baselines are then generated afresh). */
export function readResponses(runDir: string): ResponseRow[] {
  const p = join(runDir, FILES.responses);
  if (!existsSync(p)) return [];
  try {
    return readFileSync(p, 'utf8')
      .split('\n')
      .filter((s) => s.trim() !== '')
      .map((s) => JSON.parse(s) as ResponseRow);
  } catch {
    return [];
  }
}
