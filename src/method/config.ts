// The method's settings: every constant of the paper is a default here and a flag on the command line.
import { ScalpelError } from '../errors.js';
import { INTERVENTION_DEFAULTS, validateSettings, type AblationMode, type Target } from './intervention.js';
import { DEFAULT_REFUSAL_SUBSTRINGS } from './judge.js';

// The intervention's dials (λ, α, ablation mode) are defined and checked with the intervention.
export type { AblationMode, Target } from './intervention.js';
/**
 * 'auto': first tokens of the model's own refusals to the harmful and the pseudo-harmful training prompts (the
 * pseudo-harmful score is what selection minimises, so the openings of over-refusals must count);
 * 'auto-harmful': the harmful prompts only (the method issue's literal rule); 'paper': the response starts "I" and
 * "As" (the paper code's refusal tokens); or an explicit list (token ids or response starts).
 */
export type RefusalTokenRule = 'auto' | 'auto-harmful' | 'paper' | (number | string)[];

export interface MethodConfig {
  harmfulTrain: string;
  harmfulVal: string;
  harmlessTrain: string;
  harmlessVal: string;
  pseudoTrain: string;
  pseudoVal: string;
  /** CSV column / JSON field of user prompt files. */
  column?: string;
  nTrain: number;
  nVal: number;
  /**
   * Validation draws: each validation set is sampled this many times (n_val each, seeds drawSeed(seed, j)) and
   * selection scores every candidate on all of them, i.e. on the mean of the draws' means (1: the paper's one draw).
   */
  valDraws: number;
  seed: number;
  /**
   * How prompts are sampled from each set. Absent: Scalpel's own (mulberry32, train and val from one shuffle when they
   * share a source). 'python': the paper code's draw: CPython's random.seed(seed), then random.sample for
   * pseudo-harmful, harmless, harmful training sets and then the same three validation sets, from one generator.
   */
  sampler?: 'python';
  refusalTokens: RefusalTokenRule;
  /** Tokens generated per probed training prompt to find the model's refusals (refusalTokens 'auto*'). */
  probeTokens: number;
  /** Minimum share of one set's refusals that a first token must start to count as a refusal token ('auto*'). */
  refusalTokenMinShare: number;
  filter: boolean;
  lambda: number;
  target: Target;
  ablation: AblationMode;
  /** Ablation strength s in [0, 1]: the share of the projection step taken (1 = the full ablation). */
  strength: number;
  /**
   * How select picks. Absent: the paper's rule (lowest pseudo-harmful score under the KL, layer and harm-guard rules).
   * 'pareto': a successive-halving search over (position, layer, λ, ablation mode, strength) for the Pareto front of
   * (pseudo-harmful score ↓, harmful refusal kept ↑, harmless KL ↓), written to pareto.json (pareto.ts).
   */
  objective?: 'pareto';
  /**
   * How the paper's rule finds its candidate. Absent: every candidate on every validation prompt (the paper's sweep).
   * 'halving': successive halving (select-halving.ts), about a fifth of the forward passes at n-val 32.
   */
  search?: 'halving';
  /** --objective pareto: the front point to use (its index in pareto.json's front); absent = the default pick rule. */
  pick?: number;
  /** --objective pareto: the harmful validation set whose refusal the pick must keep (default harmful-val-pool). */
  harmfulPool: string;
  /** Reject candidates whose harmless-val KL exceeds this (false-refusal target). */
  klThreshold: number;
  /** Reject candidates with layer ≥ floor((1 − prune) · L). */
  prunePercent: number;
  harmGuard: boolean;
  /** --target true: KL threshold and the induce-refusal threshold of Arditi et al. */
  trueKlThreshold: number;
  induceThreshold: number;
  /** --target true: apply the induce rule at all (Arditi et al. do; the false-refusal paper's released code does not). */
  induceFilter: boolean;
  /** Activation addition coefficient (0 = off) and its KL threshold in selection. */
  alpha: number;
  actaddKlThreshold: number;
  evalDatasets: string[];
  maxNewTokens: number;
  judgeSubstrings: string[];
  system?: string;
}

export const BUILTIN_SETS = {
  harmfulTrain: 'builtin-harmful-train',
  harmfulVal: 'builtin-harmful-val',
  harmlessTrain: 'builtin-harmless-train',
  harmlessVal: 'builtin-harmless-val',
  pseudoTrain: 'builtin-pseudo-harmful-train',
  pseudoVal: 'builtin-pseudo-harmful-val',
  evalDatasets: ['builtin-pseudo-harmful-test', 'builtin-harmful-test', 'builtin-harmless-test'],
  harmfulPool: 'builtin-harmful-val',
};

export const PAPER_SETS = {
  harmfulTrain: 'harmful-train',
  harmfulVal: 'harmful-val',
  harmlessTrain: 'harmless-train',
  harmlessVal: 'harmless-val',
  pseudoTrain: 'or-bench-hard-train',
  pseudoVal: 'or-bench-hard-val',
  evalDatasets: [
    'xstest-safe',
    'xstest-unsafe',
    'or-bench-hard-test',
    'oktest',
    'jbb-harmful',
    'or-bench-toxic-test',
    'alpaca-test:100',
    // The rest of the held-out harmful sets (kind 'harmful' in datasets.ts; pooled in eval.json). StrongREJECT (313)
    // and CoCoNot's safety requests (394 under 600 characters) are capped at 150 each, spread over their categories: every set keeps
    // n ≥ 100 (one prompt moves a rate by under a point) while a default run evaluates 300 prompts fewer.
    'harmbench-test',
    'strongreject:150',
    'coconot-safety:150',
  ],
  harmfulPool: 'harmful-val-pool',
};

export const DEFAULTS: Omit<MethodConfig, keyof typeof PAPER_SETS | 'harmfulPool'> = {
  // 512, not the paper's 128: over 5 draws of the training and validation prompts, the OR-Bench-hard *validation*
  // compliance gain of the default edit on the project's model spread 15.9 points at 128 (sd 6.6) and 9.1 at 512
  // (sd 3.8), for a mean gain 1.9 points lower (`scalpel stability`, README "spread over draws"). Sets smaller than
  // n-train are used whole (harmful_train has 260 prompts; the built-in training splits 128). --paper keeps 128.
  nTrain: 512,
  nVal: 32,
  valDraws: 1,
  seed: 1,
  refusalTokens: 'auto',
  probeTokens: 16,
  refusalTokenMinShare: 0.05,
  filter: true,
  lambda: INTERVENTION_DEFAULTS.lambda,
  target: 'false',
  ablation: INTERVENTION_DEFAULTS.ablation,
  strength: INTERVENTION_DEFAULTS.strength,
  klThreshold: 0.2,
  prunePercent: 0.2,
  harmGuard: true,
  trueKlThreshold: 0.1,
  induceThreshold: 0,
  induceFilter: true,
  alpha: INTERVENTION_DEFAULTS.alpha,
  actaddKlThreshold: 2,
  maxNewTokens: 64,
  judgeSubstrings: [...DEFAULT_REFUSAL_SUBSTRINGS],
};

/** --paper: the paper code's choices (no harmful guard, zero ablation, its refusal-token rule, its sampler, no induce rule). */
export const PAPER_OVERRIDES: Partial<MethodConfig> = {
  nTrain: 128,
  harmGuard: false,
  ablation: 'zero',
  refusalTokens: 'paper',
  sampler: 'python',
  induceFilter: false,
  // The paper's selection rule at the paper's full ablation, whatever the run was searched with before.
  objective: undefined,
  pick: undefined,
  search: undefined,
  strength: 1,
};

/** Full defaults: public datasets when a data directory is known, the built-in prompt sets otherwise. */
export function defaultConfig(haveDataDir: boolean, paper = false): MethodConfig {
  return {
    ...DEFAULTS,
    ...(haveDataDir ? PAPER_SETS : BUILTIN_SETS),
    evalDatasets: [...(haveDataDir ? PAPER_SETS : BUILTIN_SETS).evalDatasets],
    ...(paper ? PAPER_OVERRIDES : {}),
  };
}

export function validateConfig(c: MethodConfig): void {
  const int = (v: number, name: string, min: number) => {
    if (!Number.isInteger(v) || v < min) throw new ScalpelError(`--${name} ${v}: expected an integer ≥ ${min}`);
  };
  int(c.nTrain, 'n-train', 1);
  int(c.nVal, 'n-val', 1);
  int(c.valDraws, 'val-draws', 1);
  if (c.valDraws > 1 && c.sampler === 'python')
    throw new ScalpelError("--val-draws: the python sampler (--paper) draws the paper code's one sample; expected 1");
  int(c.seed, 'seed', 0);
  if (c.sampler !== undefined && c.sampler !== 'python')
    throw new ScalpelError(`--sampler ${String(c.sampler)}: expected mulberry32 or python`);
  int(c.probeTokens, 'probe-tokens', 1);
  int(c.maxNewTokens, 'max-new-tokens', 1);
  validateSettings({ lambda: c.lambda });
  if (!(c.prunePercent >= 0 && c.prunePercent < 1))
    throw new ScalpelError(`--prune ${c.prunePercent}: expected a fraction in [0, 1)`);
  for (const [v, n] of [
    [c.klThreshold, 'kl-threshold'],
    [c.trueKlThreshold, 'true-kl-threshold'],
    [c.actaddKlThreshold, 'actadd-kl-threshold'],
  ] as const) {
    if (!(v >= 0)) throw new ScalpelError(`--${n} ${v}: expected a number ≥ 0`);
  }
  validateSettings({ alpha: c.alpha });
  validateSettings({ strength: c.strength });
  if (c.objective !== undefined && c.objective !== 'pareto')
    throw new ScalpelError(`--objective ${String(c.objective)}: expected refusal-score or pareto`);
  if (c.search !== undefined && c.search !== 'halving')
    throw new ScalpelError(`--search ${String(c.search)}: expected exhaustive or halving`);
  if (c.search === 'halving' && c.target !== 'false')
    throw new ScalpelError(
      '--search halving: ranks candidates by the pseudo-harmful score; use it with --target false',
    );
  if (c.pick !== undefined) {
    if (c.objective !== 'pareto') throw new ScalpelError(`--pick ${c.pick}: only --objective pareto takes --pick`);
    int(c.pick, 'pick', 0);
  }
  if (c.target !== 'false' && c.target !== 'true')
    throw new ScalpelError(`--target ${String(c.target)}: expected false or true`);
  validateSettings({ ablation: c.ablation });
  if (c.judgeSubstrings.length === 0) throw new ScalpelError('--refusal-substrings: expected at least one phrase');
  if (c.evalDatasets.length === 0) throw new ScalpelError('--eval: expected at least one dataset');
  if (Array.isArray(c.refusalTokens) && c.refusalTokens.length === 0)
    throw new ScalpelError('--refusal-tokens: expected at least one token');
}

/** First layer that selection prunes: floor((1 − prune) · L), i.e. floor(0.8 L) by default. */
export function pruneLayer(numLayers: number, prunePercent: number): number {
  return Math.floor((1 - prunePercent) * numLayers + 1e-9);
}
