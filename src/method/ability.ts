// General ability, baseline vs edited, CPU-sized: first-token KL on harmless chat prompts, perplexity on WikiText-2,
// and multiple-choice accuracy by answer log-likelihood on MMLU (5-shot) and ARC-Challenge (0-shot). The inputs are
// tokenized once (prepareAbility) and measured under any hooks (measureAbility), so a sweep can reuse them for
// every setting. ability.json holds the summary, ability-items.jsonl every item's log-likelihoods.
import { lastLogits } from '../engine/generate.js';
import { sequenceLogProbs } from '../engine/logprobs.js';
import type { HookMap } from '../engine/types.js';
import { ScalpelError } from '../errors.js';
import type { LoadedModel } from '../model/load.js';
import { loadArc, loadMmlu, loadWikitext } from './ability-data.js';
import {
  ARC_FORMAT,
  MMLU_CONTINUATIONS,
  MMLU_FORMAT,
  arcContext,
  arcContinuations,
  type McRequest,
  mcRequest,
  mmluContext,
  type PplWindow,
  pplWindows,
} from './ability-format.js';
import { klDivergence, logSoftmax } from './math.js';

export const ABILITY_FORMAT = 'scalpel-ability/1';

/** Defaults sized for minutes on two CPU cores with the project's model (measured in the README). */
export const ABILITY_DEFAULTS = { nMmlu: 200, nArc: 300, nPplDocs: 10, shots: 5, nKl: 200 };

/** Longest perplexity window (prefix included), also when the model's context is longer. */
export const PPL_MAX_WINDOW = 512;

export interface Ability {
  perplexity: { value: number; tokens: number; docs: number; dataset: string; window: number; bos: string } | null;
  mmlu: { accuracy: number; n: number; shots: number; format: string; truncated: number } | null;
  arc_challenge: { accuracy: number; acc_norm: number; n: number; shots: number; format: string } | null;
}

export interface AbilityJson {
  format: typeof ABILITY_FORMAT;
  model_fingerprint: string;
  /** The run's intervention (null for `scalpel ability --model`: no edit). */
  settings: {
    lambda: number;
    alpha: number;
    ablation: string;
    target: string;
    site: { position: number; layer: number };
  } | null;
  conditions: { baseline: Ability; edited: Ability | null };
  kl: { n: number; first_token_mean: number; first_token_p95: number; dataset: string } | null;
  sizes: { n_mmlu: number; n_arc: number; n_ppl_docs: number; shots: number; n_kl: number };
  seconds: number;
}

/** One line of ability-items.jsonl: an item's log-likelihoods (choices) or a document's summed token log-probs. */
export type AbilityItem =
  | {
      condition: string;
      task: 'mmlu' | 'arc_challenge';
      id: string;
      answer: number;
      loglik: number[];
      pred: number;
      pred_norm: number;
      truncated: number;
    }
  | { condition: string; task: 'wikitext2'; id: string; tokens: number; logprob_sum: number };

export interface AbilitySizes {
  /** MMLU test items (interleaved by subject, so a prefix covers all five); 0 skips MMLU. */
  nMmlu: number;
  nArc: number;
  nPplDocs: number;
  /** MMLU shots from the subject's dev questions (0 to 5). */
  shots: number;
}

/** Everything measureAbility runs, as token ids: made once per model. */
export interface AbilityInputs {
  sizes: AbilitySizes;
  mmlu: McRequest[];
  arc: McRequest[];
  ppl: { windows: PplWindow[]; docs: { title: string; tokens: number }[]; window: number; bos: string };
}

/** The model's context length from config.json (Gemma 3 keeps it in text_config), when it states one. */
export function contextLength(m: LoadedModel): number | undefined {
  const c = m.model.config;
  const text = c['text_config'] as Record<string, unknown> | undefined;
  const v = c['max_position_embeddings'] ?? text?.['max_position_embeddings'];
  return typeof v === 'number' && Number.isInteger(v) && v > 1 ? v : undefined;
}

function checkSizes(s: AbilitySizes): void {
  for (const [k, flag] of [
    ['nMmlu', '--n-mmlu'],
    ['nArc', '--n-arc'],
    ['nPplDocs', '--n-ppl-docs'],
  ] as const)
    if (!Number.isInteger(s[k]) || s[k] < 0) throw new ScalpelError(`${flag} ${s[k]}: expected an integer ≥ 0`);
  if (!Number.isInteger(s.shots) || s.shots < 0 || s.shots > 5)
    throw new ScalpelError(
      `--shots ${s.shots}: expected an integer from 0 to 5 (MMLU has 5 dev questions per subject)`,
    );
}

/** Loads the samples (only those asked for) and turns them into token ids for this model. */
export function prepareAbility(m: LoadedModel, sizes: AbilitySizes, dataDir: string | undefined): AbilityInputs {
  checkSizes(sizes);
  const encode = (t: string) => m.tokenizer.encode(t, { addSpecialTokens: false });
  const bos = m.tokenizer.bosTokenId;
  const prefix = bos === null ? [] : [bos];
  const maxLen = contextLength(m) ?? Number.MAX_SAFE_INTEGER;

  let mmlu: McRequest[] = [];
  if (sizes.nMmlu > 0) {
    const sample = loadMmlu(dataDir);
    mmlu = sample.items.slice(0, sizes.nMmlu).map((item) =>
      mcRequest(encode, prefix, maxLen, {
        id: item.id,
        answer: item.answer,
        context: mmluContext(item, sample.dev.get(item.subject!)!.slice(0, sizes.shots)),
        continuations: MMLU_CONTINUATIONS,
        choices: ['A', 'B', 'C', 'D'],
      }),
    );
  }
  const arc =
    sizes.nArc > 0
      ? loadArc(dataDir)
          .slice(0, sizes.nArc)
          .map((item) =>
            mcRequest(encode, prefix, maxLen, {
              id: item.id,
              answer: item.answer,
              context: arcContext(item),
              continuations: arcContinuations(item),
              choices: item.choices,
            }),
          )
      : [];

  const window = Math.min(maxLen, PPL_MAX_WINDOW);
  let ppl: AbilityInputs['ppl'] = { windows: [], docs: [], window, bos: '' };
  if (sizes.nPplDocs > 0) {
    const docs = loadWikitext(dataDir).slice(0, sizes.nPplDocs);
    const ids = docs.map((d) => encode(d.text));
    const pre = bos ?? m.eosTokenIds[0];
    if (pre === undefined) throw new ScalpelError(`${m.dir}: the tokenizer has neither a BOS nor an EOS token`);
    ppl = {
      windows: pplWindows(ids, pre, window),
      docs: docs.map((d, i) => ({ title: d.title, tokens: ids[i]!.length })),
      window,
      bos: bos !== null ? 'BOS before each window' : 'EOS before each window (the model has no BOS)',
    };
  }
  return { sizes, mmlu, arc, ppl };
}

export interface MeasureOptions {
  hooks?: HookMap;
  batchSize?: number;
  /** Label of this condition in ability-items.jsonl. */
  condition?: string;
  onProgress?: (done: number, total: number) => void;
}

function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}

/** How many forward rows (sequences) measureAbility runs for these inputs: what its progress counts. */
export function abilityWork(inputs: AbilityInputs): number {
  const mc = (rs: McRequest[]) =>
    rs.reduce((n, r) => n + (r.continuations.every((c) => c.length === 1) ? 1 : r.continuations.length), 0);
  return mc(inputs.mmlu) + mc(inputs.arc) + inputs.ppl.windows.length;
}

/**
 * Per choice, the summed log-likelihood of its continuation after the context. Items whose continuations are all
 * one token (MMLU's " A" … " D") take one prefill of the context and read the next-token distribution; the others
 * run one sequence per choice.
 */
function mcLogLikelihoods(m: LoadedModel, reqs: McRequest[], o: MeasureOptions, tick: (n: number) => void): number[][] {
  const out: number[][] = reqs.map((r) => new Array(r.continuations.length).fill(Number.NEGATIVE_INFINITY));
  const single = reqs.map((_, i) => i).filter((i) => reqs[i]!.continuations.every((c) => c.length === 1));
  const multi = reqs.map((_, i) => i).filter((i) => !single.includes(i));
  if (single.length > 0) {
    const logits = lastLogits(
      m.model,
      single.map((i) => reqs[i]!.context),
      { hooks: o.hooks, batchSize: o.batchSize, onProgress: (d) => tick(d) },
    );
    single.forEach((i, k) => {
      const lp = logSoftmax(logits[k]!);
      out[i] = reqs[i]!.continuations.map((c) => lp[c[0]!]!);
    });
  }
  const seqs: { item: number; choice: number; ids: number[]; from: number }[] = [];
  for (const i of multi)
    reqs[i]!.continuations.forEach((c, choice) => {
      if (c.length > 0) seqs.push({ item: i, choice, ids: [...reqs[i]!.context, ...c], from: reqs[i]!.context.length });
    });
  if (seqs.length > 0) {
    const base = single.length;
    const lps = sequenceLogProbs(m.model, seqs, {
      hooks: o.hooks,
      batchSize: o.batchSize,
      onProgress: (d) => tick(base + d),
    });
    seqs.forEach((s, k) => {
      out[s.item]![s.choice] = lps[k]!.reduce((a, b) => a + b, 0);
    });
  }
  return out;
}

function scoreMc(
  task: 'mmlu' | 'arc_challenge',
  reqs: McRequest[],
  lls: number[][],
  condition: string,
): { acc: number; accNorm: number; items: AbilityItem[] } {
  let right = 0;
  let rightNorm = 0;
  const items: AbilityItem[] = reqs.map((r, i) => {
    const ll = lls[i]!;
    const pred = argmax(ll);
    const predNorm = argmax(ll.map((x, c) => x / Math.max(1, r.choiceChars[c]!)));
    if (pred === r.answer) right++;
    if (predNorm === r.answer) rightNorm++;
    return {
      condition,
      task,
      id: r.id,
      answer: r.answer,
      loglik: ll,
      pred,
      pred_norm: predNorm,
      truncated: r.truncated,
    };
  });
  return { acc: right / reqs.length, accNorm: rightNorm / reqs.length, items };
}

/** The three checks under `hooks` (none: the baseline). */
export function measureAbility(
  m: LoadedModel,
  inputs: AbilityInputs,
  o: MeasureOptions = {},
): { ability: Ability; items: AbilityItem[] } {
  const condition = o.condition ?? 'baseline';
  const total = abilityWork(inputs);
  let before = 0;
  const tick = (d: number) => o.onProgress?.(before + d, total);
  const items: AbilityItem[] = [];
  const ability: Ability = { perplexity: null, mmlu: null, arc_challenge: null };

  if (inputs.mmlu.length > 0) {
    const s = scoreMc('mmlu', inputs.mmlu, mcLogLikelihoods(m, inputs.mmlu, o, tick), condition);
    items.push(...s.items);
    ability.mmlu = {
      accuracy: s.acc,
      n: inputs.mmlu.length,
      shots: inputs.sizes.shots,
      format: MMLU_FORMAT.replace('5shot', `${inputs.sizes.shots}shot`),
      truncated: inputs.mmlu.filter((r) => r.truncated > 0).length,
    };
  }
  before = abilityWork({ ...inputs, arc: [], ppl: { ...inputs.ppl, windows: [] } });
  if (inputs.arc.length > 0) {
    const s = scoreMc('arc_challenge', inputs.arc, mcLogLikelihoods(m, inputs.arc, o, tick), condition);
    items.push(...s.items);
    ability.arc_challenge = {
      accuracy: s.acc,
      acc_norm: s.accNorm,
      n: inputs.arc.length,
      shots: 0,
      format: ARC_FORMAT,
    };
  }
  before = abilityWork({ ...inputs, ppl: { ...inputs.ppl, windows: [] } });
  const { windows, docs } = inputs.ppl;
  if (windows.length > 0) {
    const lps = sequenceLogProbs(
      m.model,
      windows.map((w) => ({ ids: w.ids, from: 1 })),
      { hooks: o.hooks, batchSize: o.batchSize, onProgress: (d) => tick(d) },
    );
    const perDoc = docs.map(() => 0);
    windows.forEach((w, k) => {
      perDoc[w.doc]! += lps[k]!.reduce((a, b) => a + b, 0);
    });
    const tokens = docs.reduce((n, d) => n + d.tokens, 0);
    const sum = perDoc.reduce((a, b) => a + b, 0);
    for (const [i, d] of docs.entries())
      items.push({ condition, task: 'wikitext2', id: d.title, tokens: d.tokens, logprob_sum: perDoc[i]! });
    ability.perplexity = {
      value: Math.exp(-sum / tokens),
      tokens,
      docs: docs.length,
      dataset: 'wikitext2 (test split, tokenised variant; whole articles)',
      window: inputs.ppl.window,
      bos: inputs.ppl.bos,
    };
  }
  return { ability, items };
}

/** The 95th percentile by linear interpolation between order statistics (numpy's default). */
export function percentile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const at = (q / 100) * (s.length - 1);
  const lo = Math.floor(at);
  const hi = Math.min(s.length - 1, lo + 1);
  return s[lo]! + (s[hi]! - s[lo]!) * (at - lo);
}

/** First-token KL(baseline ‖ edited) over chat prompts (token ids), each prompt's next-token distributions. */
export function firstTokenKl(
  m: LoadedModel,
  prompts: number[][],
  edited: HookMap,
  o: { batchSize?: number; baseline?: HookMap; onProgress?: (done: number, total: number) => void } = {},
): { values: number[]; mean: number; p95: number } {
  const n = prompts.length;
  const tick = (base: number) => (d: number) => o.onProgress?.(base + d, 2 * n);
  const base = lastLogits(m.model, prompts, { hooks: o.baseline, batchSize: o.batchSize, onProgress: tick(0) });
  const ed = lastLogits(m.model, prompts, { hooks: edited, batchSize: o.batchSize, onProgress: tick(n) });
  const values = base.map((b, i) => klDivergence(b, ed[i]!));
  return { values, mean: values.reduce((a, b) => a + b, 0) / Math.max(1, n), p95: percentile(values, 95) };
}
