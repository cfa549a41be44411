// The pareto pick checked by generation. The search (pareto-search.ts) ranks edits by a first-token proxy of harmful
// refusal (p(refusal tokens) > ½ at the first response token), which costs no generation but is optimistic: at a
// quarter strength it kept every pool prompt "refused" while greedy answers on the test sets lost 6 to 24 points. The
// acceptance is judged on generated answers, so the pick is too: the front points the rule considers
// (pareto.ts ruleCandidates), largest pseudo-harmful gain first, are generated greedily on the harmful-pool prompts
// the search used (the run's --max-new-tokens) and judged by the run's substring judge (judge.ts, the one eval
// uses); the first whose generated refusal stays within the tolerance of the model's own generated refusal is the
// pick, so the cost is a few points × the pool. Checks are stored in pareto.json under a key (the search's key,
// max-new-tokens, the judge's phrases): a rerun with the same key generates nothing.
import { contextMessage } from '../engine/scheduler.js';
import type { HookMap } from '../engine/types.js';
import { ScalpelError } from '../errors.js';
import { sequencePasses } from './backend.js';
import { isRefusal } from './judge.js';
import {
  pickFromChecks,
  ruleCandidates,
  type Edit,
  type GeneratedRefusal,
  type Objectives,
  type Pick,
  type PickRule,
} from './pareto.js';
import type { StageContext } from './stage.js';

/** Forward passes as run.json counts them: one prefill per prompt, one decode step per token after the first. */
export interface GenerationCost {
  forward_passes: number;
  prompt_prefills: number;
  decode_steps: number;
}

/** One front point checked by generation. */
export interface CheckedEdit extends Edit, GenerationCost {
  position: number;
  /** % of the harmful-pool prompts whose greedy answer the judge calls a refusal. */
  harmful_refusal_generated: number;
  /** Within the tolerance of the baseline's generated refusal. */
  passed: boolean;
}

/** pareto.json's record of the check. */
export interface PickCheck {
  /** What the checks depend on: the search's key, max-new-tokens and the judge's phrases. */
  key: string;
  max_new_tokens: number;
  judge_substrings: string[];
  /** Harmful-pool prompts generated per point (the ones the search scored). */
  n: number;
  tolerance: number;
  /** The model's own generated refusal on the same prompts; null when no point passed the first-token screen. */
  baseline: (GenerationCost & { harmful_refusal_generated: number }) | null;
  /** The points checked, in the order checked (largest gain first); the walk stops at the first that passes. */
  checked: CheckedEdit[];
}

type FrontPoint = Edit & Objectives & { position: number };

const editKey = (e: Edit) => `${e.position_index}/${e.layer}/${e.lambda}/${e.ablation}/${e.strength}`;

const isCost = (o: Partial<GenerationCost>) =>
  [o.forward_passes, o.prompt_prefills, o.decode_steps].every((x) => Number.isSafeInteger(x));

/** A stored check whose numbers can be trusted (a damaged one is generated again). */
function usable(stored: unknown, key: string): PickCheck | null {
  const s = stored as Partial<PickCheck> | null | undefined;
  if (!s || s.key !== key || !s.baseline || !Array.isArray(s.checked)) return null;
  const rateOk = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
  if (!isCost(s.baseline) || !rateOk(s.baseline.harmful_refusal_generated)) return null;
  if (!s.checked.every((p) => p && isCost(p) && rateOk(p.harmful_refusal_generated))) return null;
  return s as PickCheck;
}

/**
 * Walks the rule's candidates on `front` until one keeps its generated harmful refusal (or none is left) and returns
 * the pick, the check as pareto.json records it and the forward passes this call spent (0 when all was stored).
 * `harmful`: the encoded harmful-pool prompts the search scored; `hooksFor`: an edit's hooks; `save`: called with the
 * check so far after each generation, so a killed select keeps what it generated.
 */
export async function checkPick(
  ctx: StageContext,
  front: readonly FrontPoint[],
  rule: PickRule,
  harmful: number[][],
  key: string,
  stored: unknown,
  hooksFor: (e: Edit) => HookMap,
  save: (check: PickCheck) => Promise<void>,
): Promise<{ pick: Pick; check: PickCheck; spent: number }> {
  const c = ctx.config;
  const b = ctx.backend;
  const context = b.contextLength;
  if (context !== undefined) {
    const j = harmful.findIndex((ids) => ids.length + c.maxNewTokens > context);
    if (j >= 0)
      throw new ScalpelError(
        `${c.harmfulPool} prompt ${j + 1}: ${contextMessage(harmful[j]!.length, c.maxNewTokens, context, '--max-new-tokens')}`,
      );
  }
  const old = usable(stored, key);
  const oldByEdit = new Map((old?.checked ?? []).map((p) => [editKey(p), p]));
  let spent = 0;
  const generate = async (label: string, hooks?: HookMap) => {
    const bar = ctx.progress(label, harmful.length);
    const outs = await b.generate(harmful, {
      maxNewTokens: c.maxNewTokens,
      ...(hooks ? { hooks } : {}),
      onProgress: bar.cb,
    });
    bar.stop();
    const refused = outs.filter((o) => isRefusal(b.decode(o), c.judgeSubstrings)).length;
    const decode = outs.reduce((a, o) => a + sequencePasses(o.length, c.maxNewTokens) - 1, 0);
    const cost = { forward_passes: outs.length + decode, prompt_prefills: outs.length, decode_steps: decode };
    spent += cost.forward_passes;
    return { rate: (100 * refused) / outs.length, cost };
  };

  const order = ruleCandidates(front, rule);
  const checked: CheckedEdit[] = [];
  let baseline = old?.baseline ?? null;
  const record = (): PickCheck => ({
    key,
    max_new_tokens: c.maxNewTokens,
    judge_substrings: [...c.judgeSubstrings],
    n: harmful.length,
    tolerance: rule.tolerance,
    baseline,
    // Stored points this walk has not reached stay in the record: a later walk may need them.
    checked: [...checked, ...[...oldByEdit.values()].filter((p) => !checked.some((q) => editKey(q) === editKey(p)))],
  });
  if (!baseline && order.length > 0) {
    const g = await generate('pareto check: baseline');
    baseline = { harmful_refusal_generated: g.rate, ...g.cost };
    await save(record());
  }
  const baseRate = baseline?.harmful_refusal_generated ?? Number.NaN;
  const results: GeneratedRefusal[] = [];
  for (const index of order) {
    const p = front[index]!;
    const edit: Edit = {
      position_index: p.position_index,
      layer: p.layer,
      lambda: p.lambda,
      ablation: p.ablation,
      strength: p.strength,
    };
    let rate: number;
    let cost: GenerationCost;
    const kept = oldByEdit.get(editKey(edit));
    if (kept) {
      rate = kept.harmful_refusal_generated;
      cost = {
        forward_passes: kept.forward_passes,
        prompt_prefills: kept.prompt_prefills,
        decode_steps: kept.decode_steps,
      };
    } else {
      const g = await generate(`pareto check: front point ${index}`, hooksFor(edit));
      rate = g.rate;
      cost = g.cost;
    }
    const passed = rate >= baseRate - rule.tolerance - 1e-9;
    checked.push({ ...edit, position: p.position, harmful_refusal_generated: rate, passed, ...cost });
    if (!kept) await save(record());
    results.push({ index, generated: rate });
    ctx.log(
      `pareto check: front point ${index} (position ${p.position}, layer ${p.layer}, λ ${p.lambda}, ${p.ablation}, strength ${p.strength}): harmful refused ${rate.toFixed(1)}% generated vs ${baseRate.toFixed(1)}% baseline (first token ${p.harmful_refusal.toFixed(1)}%)${kept ? ', stored' : ''}: ${passed ? 'within' : 'beyond'} ${rule.tolerance} points`,
    );
    if (passed) break;
  }
  const pick = pickFromChecks(front, rule, results, baseRate);
  // The final record is this walk's points only, in the order walked (what the pick was decided on).
  return { pick, check: { ...record(), checked }, spent };
}

/** The forward passes a check records (baseline and every point checked), stored ones included. */
export function checkCost(check: PickCheck): GenerationCost & { points_checked: number } {
  const parts = [...(check.baseline ? [check.baseline] : []), ...check.checked];
  const sum = (f: keyof GenerationCost) => parts.reduce((a, p) => a + p[f], 0);
  return {
    forward_passes: sum('forward_passes'),
    prompt_prefills: sum('prompt_prefills'),
    decode_steps: sum('decode_steps'),
    points_checked: check.checked.length,
  };
}
