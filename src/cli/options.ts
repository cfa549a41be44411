// The flags of the commands that run the method (run, extract, select, eval), each defined once here so their
// names, defaults and help text cannot drift apart between commands.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ScalpelError } from '../errors.js';
import { type ResolvedModel, resolveModel } from '../hub/resolve.js';
import { validateSettings } from '../method/intervention.js';
import { checkSameModel, modelFingerprint, requireRunJson, type RunJson } from '../method/rundir.js';
import { type Progress, logger, progressFactory } from './progress.js';

export interface CommonOpts {
  model?: string;
  out?: string;
  run?: string;
  dataDir?: string;
  quiet?: boolean;
  json?: boolean;
  force?: boolean;
  batchSize?: string;
  [key: string]: unknown;
}

/** Options that set the method's configuration (all stages). */
function addMethodOptions(cmd: Command): Command {
  return cmd
    .option(
      '--data-dir <dir>',
      'folder of public prompt sets (the raw/ layout); default $SCALPEL_DATA, else the built-in sets',
    )
    .option(
      '--paper',
      'the paper code\'s defaults: no harm guard, zero ablation, refusal tokens from the responses "I"/"As", its prompt sampler',
    )
    .option('--harmful-train <set>', 'harmful training prompts: a dataset name or a prompt file')
    .option('--harmful-val <set>', 'harmful validation prompts (harm guard, --target true)')
    .option('--harmless-train <set>', 'harmless training prompts')
    .option('--harmless-val <set>', 'harmless validation prompts (KL)')
    .option('--pseudo-train <set>', 'pseudo-harmful training prompts')
    .option('--pseudo-val <set>', 'pseudo-harmful validation prompts (selection score)')
    .option('--column <name>', 'CSV column / JSON field holding the prompt in user prompt files')
    .option('--n-train <n>', 'prompts sampled from each training set (default 512; --paper 128)')
    .option('--n-val <n>', 'prompts sampled from each validation set (default 32)')
    .option(
      '--val-draws <n>',
      'score selection candidates on this many validation draws of n-val prompts each, on their mean (default 1)',
    )
    .option('--seed <n>', 'seed of the sampling RNG (default 1)')
    .option(
      '--sampler <rng>',
      '"mulberry32" (default) or "python": CPython\'s random.seed + random.sample in the paper code\'s order (--paper sets it)',
    )
    .option(
      '--refusal-tokens <list>',
      '"auto" (default: first tokens of the model\'s refusals to harmful and pseudo-harmful prompts), "auto-harmful" (harmful only), "paper", or a comma list of token ids / response starts',
    )
    .option(
      '--probe-tokens <n>',
      "tokens generated per probed training prompt (harmful, and pseudo-harmful with auto) to find the model's refusals (default 16)",
    )
    .option('--no-filter', 'keep all training prompts (no refusal-score filter)')
    .option('--lambda <x>', 'partial orthogonalization strength λ in [0, 1] (default 1)')
    .option(
      '--target <which>',
      '"false" (default): the false-refusal vector; "true": the true-refusal direction (Arditi et al.)',
    )
    .option('--ablation <mode>', '"zero" (default) or "affine" (set the projection to the harmless mean)')
    .option('--strength <s>', 'ablation strength in [0, 1]: the share of the projection removed (default 1)')
    .option(
      '--objective <rule>',
      '"refusal-score" (default: the paper\'s rule) or "pareto" (search position, layer, λ, mode and strength for the front of pseudo-harmful score, harmful refusal kept and KL; writes pareto.json)',
    )
    .option(
      '--search <how>',
      '"exhaustive" (default: every candidate on every validation prompt) or "halving" (successive halving: the same rule at about a fifth of the forward passes)',
    )
    .option('--pick <n>', "--objective pareto: use point N of pareto.json's front instead of the default pick")
    .option('--harmful-pool <set>', '--objective pareto: harmful validation prompts (default harmful-val-pool)')
    .option('--kl-threshold <x>', 'reject candidates with harmless-val KL above this (default 0.2)')
    .option('--prune <fraction>', 'reject candidates from the last fraction of layers (default 0.2)')
    .option(
      '--no-harm-guard',
      "the paper's rule: do not reject candidates that push the harmful-val refusal score below 0",
    )
    .option('--true-kl-threshold <x>', '--target true: reject candidates with harmless-val KL above this (default 0.1)')
    .option(
      '--induce-threshold <x>',
      '--target true: adding r must raise the harmless-val refusal score above this (default 0)',
    )
    .option('--no-induce-filter', "--target true: skip the induce rule, as the paper's released code does (--paper)")
    .option('--alpha <x>', 'also add α·r of a selected true-refusal candidate at its layer (default 0: off)')
    .option('--actadd-kl-threshold <x>', 'KL threshold when selecting the actadd vector (default 2)')
    .option('--max-new-tokens <n>', 'tokens generated per evaluation prompt (default 64)')
    .option('--refusal-substrings <file>', 'judge phrases, one per line (default: the standard list of 13)')
    .option('--system <text>', 'system prompt for every conversation')
    .option('--batch-size <n>', 'prompts per forward pass')
    .option('--force', 'recompute stages even if the run has them with the same settings')
    .option('--quiet', 'no progress bars or log lines');
}

type RunDirFlag = 'out' | 'run';

/** --model's help, the same in every command. */
export const MODEL_HELP =
  'Hugging Face model folder, or a Hub repo id org/name[@revision] (downloaded into the HF cache)';

/**
 * --model as a local folder: a path as given, or a Hub model (`org/name[@revision]`) fetched into the Hugging Face
 * cache ($HF_ENDPOINT, $HF_TOKEN, $HF_HUB_CACHE, $HF_HUB_OFFLINE), with a progress bar while it downloads.
 */
export async function resolveModelFlag(ref: string, quiet?: boolean): Promise<ResolvedModel> {
  let bar: Progress | undefined;
  // Whole units on the bar (the bar's total is at least 1): MB, or kB for a small model.
  let unit = { name: 'MB', bytes: 1e6 };
  try {
    return await resolveModel(ref, {
      log: logger(quiet),
      onProgress: (done, total) => {
        if (!bar) {
          if (total < 1e7) unit = { name: 'kB', bytes: 1e3 };
          bar = progressFactory({ quiet })(`downloading ${ref} (${unit.name})`, Math.round(total / unit.bytes));
        }
        bar.update(Math.round(done / unit.bytes), Math.round(total / unit.bytes));
      },
    });
  } finally {
    bar?.stop();
  }
}

/**
 * The model a run was made with: its folder, or when that is gone (a cleared cache, another machine) and it came
 * from the Hub, the same commit from the Hub again.
 */
export function storedModelRef(run: RunJson): string {
  const hub = run.model.hub;
  return !existsSync(run.model.dir) && hub ? `${hub.repo}@${hub.commit}` : run.model.dir;
}

/** Where a command keeps its run, and the help text its flag shows in that command's --help. */
export interface RunDirOption {
  /**
   * 'out' for a command that makes a run from a model, so --model is required; 'run' for one that continues a run,
   * so --model defaults to the model the run was made with.
   */
  flag: RunDirFlag;
  help: string;
  required?: boolean;
  /** Also accept the other flag name for the same directory, so `--out` and `--run` both work. */
  alias?: boolean;
  /** --model's note in --help when the command may also go without a run (default: the usual one for `flag`). */
  modelNote?: string;
}

export interface StageCommand {
  name: string;
  description: string;
  runDir: RunDirOption;
  /** The command's own flags as [flags, help], listed in --help between the run directory and the method options. */
  options: [flags: string, help: string][];
}

const otherFlag = (flag: RunDirFlag): RunDirFlag => (flag === 'out' ? 'run' : 'out');

function addRunDirOptions(cmd: Command, runDir: RunDirOption): void {
  if (runDir.flag === 'out') cmd.requiredOption('--model <model>', MODEL_HELP);
  else cmd.option('--model <model>', `${MODEL_HELP} (${runDir.modelNote ?? "default: the run's"})`);
  if (runDir.required) cmd.requiredOption(`--${runDir.flag} <dir>`, runDir.help);
  else cmd.option(`--${runDir.flag} <dir>`, runDir.help);
  if (runDir.alias) cmd.option(`--${otherFlag(runDir.flag)} <dir>`, `run directory (same as --${runDir.flag})`);
}

/** A method command with its flags in --help order: model and run directory, its own flags, the method options. */
export function defineStageCommand(program: Command, spec: StageCommand): Command {
  const cmd = program.command(spec.name).description(spec.description);
  addRunDirOptions(cmd, spec.runDir);
  for (const [flags, help] of spec.options) cmd.option(flags, help);
  return addMethodOptions(cmd);
}

/** The run directory given under either flag name, preferring `flag`; a command cannot go on without one. */
export function runDirOf(opts: CommonOpts, flag: RunDirFlag): string {
  const runDir = opts[flag] ?? opts[otherFlag(flag)];
  if (!runDir) throw new ScalpelError(`--${flag} RUN is required`);
  return runDir;
}

/** A finished run for a command that applies its intervention (eval, generate, bake), checked to belong to the model. */
export async function openRun(
  runFlag: string,
  modelFlag?: string,
  quiet?: boolean,
): Promise<{ runDir: string; run: RunJson; modelDir: string }> {
  const runDir = resolve(runFlag);
  const run = requireRunJson(runDir);
  const modelDir = (await resolveModelFlag(modelFlag ?? storedModelRef(run), quiet)).dir;
  checkSameModel(run, runDir, modelDir, modelFingerprint(modelDir));
  return { runDir, run, modelDir };
}

/** --strength as given, checked; undefined when absent (the run's strength then applies). */
export function strengthFlag(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const strength = text.trim() === '' ? Number.NaN : Number(text);
  validateSettings({ strength }, () => `--strength ${text}`);
  return strength;
}

/** --lambda as given, checked; undefined when absent (the run's λ then applies). */
export function lambdaFlag(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const lambda = text.trim() === '' ? Number.NaN : Number(text);
  validateSettings({ lambda }, () => `--lambda ${text}`);
  return lambda;
}
