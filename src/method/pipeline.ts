// The paper's pipeline as three resumable stages over a run directory, each in its own module:
//   extract (extract.ts): find refusal tokens, score and filter the training prompts, average block inputs at the
//            post-instruction positions, and form the candidates r (harmful − harmless) and w (pseudo − harmless)
//   select (select.ts): ablate each candidate's ŵ and keep the one with the lowest pseudo-harmful refusal score that
//            passes the KL, layer and harm-guard rules (or Arditi et al.'s rule for --target true; and --alpha's actadd)
//   eval (evaluate.ts): greedy generation on evaluation sets, baseline and intervened, judged by substring matching
// This module runs them. Inputs (flags, prompt sets, the run directory's model) are checked before any stage starts.
// Each stage records its settings key, wall time and forward passes in run.json; a rerun skips stages whose key is
// unchanged. It also evaluates a model alone (evaluateModel: the eval stage's baseline, with no run).
import { existsSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ScalpelError } from '../errors.js';
import { PassCounter, counted, type Backend } from './backend.js';
import { validateConfig, type MethodConfig } from './config.js';
import { loadEvalSets, sampleSets, type LoadedSet, type SampledSets } from './datasets.js';
import {
  evaluateSets,
  readEvalResults,
  readResponses,
  writeEvalFiles,
  type EvalResult,
  type ResponseRow,
} from './evaluate.js';
import { extractCandidates } from './extract.js';
import { interventionFromRun, validateSettings, type RunIntervention } from './intervention.js';
import { selectCandidate } from './select.js';
import type { StageContext, StageProgress } from './stage.js';
import { loadGate, writeGateEvalFiles } from './gate.js';
import {
  FILES,
  RUN_FORMAT,
  checkSameModel,
  modelFingerprint,
  readJson,
  readRunJson,
  requireRunJson,
  writeJson,
  type RunJson,
  type SelectionJson,
  type StageRecord,
} from './rundir.js';

// These moved out of this module; the CLI and the tests import them from here.
export { sampleSets } from './datasets.js';
export { scoreAndCapture } from './extract.js';
export type { SelectionJson } from './rundir.js';
export type { EvalResult } from './evaluate.js';

export type Stage = 'extract' | 'select' | 'eval';
export type ProgressFactory = (
  label: string,
  total: number,
) => { update(done: number, total?: number): void; stop(): void };

export interface RunOptions {
  runDir: string;
  modelDir: string;
  /** Where modelDir came from when it is a Hub snapshot; a new run.json keeps it as model.hub. */
  modelHub?: { repo: string; revision: string; commit: string };
  config: MethodConfig;
  dataDir?: string;
  /** The model, or how to load it (only called when some stage must compute). */
  backend: Backend | (() => Promise<Backend>);
  progress?: ProgressFactory;
  log?: (line: string) => void;
  /** Recompute stages even when run.json says they are done with the same settings. */
  force?: boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// Stage keys: the settings each stage depends on (plus its upstream stage's key).

const EXTRACT_FIELDS = [
  'harmfulTrain',
  'harmlessTrain',
  'pseudoTrain',
  'column',
  'nTrain',
  'seed',
  'refusalTokens',
  'probeTokens',
  'refusalTokenMinShare',
  'filter',
  'system',
] as const;
const SELECT_FIELDS = [
  'harmfulVal',
  'harmlessVal',
  'pseudoVal',
  'nVal',
  'lambda',
  'target',
  'ablation',
  'klThreshold',
  'prunePercent',
  'harmGuard',
  'trueKlThreshold',
  'induceThreshold',
  'alpha',
  'actaddKlThreshold',
] as const;
const EVAL_FIELDS = ['evalDatasets', 'maxNewTokens', 'judgeSubstrings'] as const;

function pick(c: MethodConfig, fields: readonly (keyof MethodConfig)[]): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const f of fields) o[f] = c[f] ?? null;
  return o;
}

const samplerName = (c: MethodConfig) => (c.sampler === 'python' ? 'cpython-random' : 'mulberry32');

export function stageKeys(c: MethodConfig, fingerprint: string, dataDir: string | undefined): Record<Stage, string> {
  // The sampler joins the key only when it is not the default, so runs made before it existed keep their stages.
  const extract = JSON.stringify({
    model: fingerprint,
    dataDir: dataDir ?? null,
    ...pick(c, EXTRACT_FIELDS),
    ...(c.sampler ? { sampler: c.sampler } : {}),
  });
  // A strength other than 1 joins the key (older runs keep theirs). A pareto search chooses λ, the ablation mode and
  // the strength itself and writes its pick into the configuration, so those are its outputs, not part of its key.
  const pareto = c.objective === 'pareto';
  const select = JSON.stringify({
    extract,
    ...pick(
      c,
      SELECT_FIELDS.filter((f) => !pareto || (f !== 'lambda' && f !== 'ablation')),
    ),
    ...(c.induceFilter === false ? { induceFilter: false } : {}),
    ...(c.strength !== 1 && !pareto ? { strength: c.strength } : {}),
    ...(pareto ? { objective: c.objective, pick: c.pick ?? null, harmfulPool: c.harmfulPool } : {}),
    // The pareto pick is checked by greedy generation judged by substrings (pareto-check.ts): both decide it.
    ...(pareto ? { maxNewTokens: c.maxNewTokens, judgeSubstrings: c.judgeSubstrings } : {}),
    ...(c.valDraws > 1 ? { valDraws: c.valDraws } : {}),
    ...(c.search && !pareto ? { search: c.search } : {}),
  });
  const evaluate = JSON.stringify({ select, ...pick(c, EVAL_FIELDS) });
  return { extract, select, eval: evaluate };
}

/** A stage's progress over the caller's progress bars (none when the caller gave no factory). */
export function stageProgress(factory: ProgressFactory | undefined, label: string, total: number): StageProgress {
  const bar = factory?.(label, total);
  let n = 0;
  return {
    cb: (done, t) => bar?.update(done, t),
    bump: () => bar?.update(++n, total),
    stop: () => bar?.stop(),
  };
}

// ---------------------------------------------------------------------------------------------------------------

class Runner {
  readonly counter = new PassCounter();
  private backendInst?: Backend;
  readonly keys: Record<Stage, string>;
  readonly fingerprint: string;
  run: RunJson;
  readonly log: (s: string) => void;

  /** sets: the sampled training/validation prompts; null for `scalpel eval`, which never reads them. */
  constructor(
    readonly o: RunOptions,
    readonly sets: SampledSets | null,
    readonly evalSets: LoadedSet[],
    existing: RunJson | null,
    fingerprint: string,
  ) {
    this.fingerprint = fingerprint;
    this.keys = stageKeys(o.config, fingerprint, o.dataDir);
    this.log = o.log ?? (() => {});
    this.run = existing ?? {
      format: RUN_FORMAT,
      model: { dir: resolve(o.modelDir), fingerprint, ...(o.modelHub ? { hub: o.modelHub } : {}) },
      config: {},
      seeds: { sample: o.config.seed, rng: samplerName(o.config) },
      stages: {},
    };
    this.run.config = { ...o.config, dataDir: o.dataDir ?? null };
    this.run.seeds = { sample: o.config.seed, rng: samplerName(o.config) };
  }

  async backend(): Promise<Backend> {
    if (!this.backendInst) {
      const t0 = performance.now();
      const b = typeof this.o.backend === 'function' ? await this.o.backend() : this.o.backend;
      this.run['model_load_seconds'] = Math.round((performance.now() - t0) / 10) / 100;
      this.backendInst = counted(b, this.counter);
      this.run.model = { ...this.run.model, num_layers: b.numLayers, width: b.width, vocab_size: b.vocabSize };
    }
    return this.backendInst;
  }

  done(stage: Stage, honourForce = true): boolean {
    if (this.o.force && honourForce) return false;
    const rec = this.run.stages[stage];
    if (!rec || rec.key !== this.keys[stage]) return false;
    const files: Record<Stage, string[]> = {
      extract: [FILES.candidates],
      select: [FILES.selection, FILES.vector],
      eval: [FILES.eval, FILES.responses],
    };
    return files[stage].every((f) => existsSync(join(this.o.runDir, f)));
  }

  progress(label: string, total: number): StageProgress {
    return stageProgress(this.o.progress, label, total);
  }

  /** Loads the model if need be, then starts the stage's clock and forward-pass count (model loading is not in them). */
  async startStage(): Promise<{ ctx: StageContext; t0: number }> {
    const backend = await this.backend();
    this.counter.reset();
    const t0 = performance.now();
    const ctx: StageContext = {
      config: this.o.config,
      backend,
      runDir: this.o.runDir,
      fingerprint: this.fingerprint,
      run: this.run,
      progress: (label, total) => this.progress(label, total),
      log: this.log,
    };
    return { ctx, t0 };
  }

  async finishStage(stage: Stage, t0: number): Promise<void> {
    const rec: StageRecord = {
      key: this.keys[stage],
      seconds: Math.round((performance.now() - t0) / 10) / 100,
      ...this.counter.snapshot(),
      finished_at: new Date().toISOString(),
    };
    this.run.stages[stage] = rec;
    // Downstream stages were computed from the old result of this one.
    const order: Stage[] = ['extract', 'select', 'eval'];
    for (const s of order.slice(order.indexOf(stage) + 1)) {
      if (this.run.stages[s] && this.run.stages[s]!.key !== this.keys[s]) delete this.run.stages[s];
    }
    await writeJson(this.o.runDir, FILES.run, this.run);
    this.log(
      `${stage}: ${rec.seconds}s, ${rec.forward_passes} forward passes (${rec.prompt_prefills} prompts, ${rec.decode_steps} decode steps)`,
    );
  }

  private sampled(): SampledSets {
    if (!this.sets) throw new Error('internal: a stage that reads the training sets ran without them');
    return this.sets;
  }

  async extract(): Promise<void> {
    const { ctx, t0 } = await this.startStage();
    await extractCandidates(ctx, this.sampled());
    await this.finishStage('extract', t0);
  }

  async select(): Promise<void> {
    const { ctx, t0 } = await this.startStage();
    await selectCandidate(ctx, this.sampled());
    await this.finishStage('select', t0);
  }

  /**
   * With `write`, this is the eval stage; without, a look at other settings that leaves the run directory alone.
   * `applied`: the intervention to evaluate, else the run's at this configuration.
   */
  async evaluate(
    write: boolean,
    applied?: RunIntervention,
    onRows?: (rows: ResponseRow[]) => void,
    gated = false,
  ): Promise<EvalResult[]> {
    const c = this.o.config;
    const iv =
      applied ??
      (await interventionFromRun(this.o.runDir, {
        lambda: c.lambda,
        alpha: c.alpha,
        ablation: c.ablation,
        strength: c.strength,
      }));
    const { ctx, t0 } = await this.startStage();
    const gate = gated ? (await loadGate(this.o.runDir, ctx.backend.width, this.fingerprint)).gate : undefined;
    const { results, rows } = await evaluateSets(ctx, this.evalSets, iv, readResponses(this.o.runDir), gate);
    onRows?.(rows);
    // A gated evaluation keeps its own files beside the eval stage's (eval.json stays the ungated edit's).
    if (gated) await writeGateEvalFiles(this.o.runDir, results, rows);
    if (write) {
      await writeEvalFiles(this.o.runDir, results, rows, this.evalSets);
      await this.finishStage('eval', t0);
    } else {
      const s = this.counter.snapshot();
      this.log(
        `eval: ${Math.round(performance.now() - t0) / 1000}s, ${s.forward_passes} forward passes, ${s.model_forward_calls} model forward calls`,
      );
    }
    return results;
  }
}

/** Says which evaluation sets lost rows to the training-overlap check (loadEvalSets), and how many. */
export function logOverlaps(evalSets: readonly LoadedSet[], log: ((line: string) => void) | undefined): void {
  for (const s of evalSets)
    if (s.overlapDropped)
      log?.(
        `${s.name}: ${s.overlapDropped} prompt${s.overlapDropped === 1 ? '' : 's'} dropped (also in a training or validation set); n = ${s.prompts.length}`,
      );
}

// ---------------------------------------------------------------------------------------------------------------

export interface PipelineResult {
  runDir: string;
  results?: EvalResult[];
  selection?: SelectionJson;
  run: RunJson;
}

function validateRunDir(runDir: string, modelDir: string, fingerprint: string): RunJson | null {
  if (existsSync(runDir)) {
    const existing = readRunJson(runDir);
    if (existing) {
      checkSameModel(existing, runDir, modelDir, fingerprint);
      return existing;
    }
    const entries = readdirSync(runDir).filter((f) => !f.startsWith('.'));
    if (entries.length > 0)
      throw new ScalpelError(
        `${runDir}: exists and is not a Scalpel run (no run.json); choose an empty or new directory`,
      );
  }
  return null;
}

/**
 * Runs the given stages (default: all) on a run directory, resuming stages that are already done with the same
 * settings. Inputs are checked before anything is written: bad flags, unknown datasets, unreadable prompt files and
 * a RUN from another model fail with one line and leave RUN as it was.
 */
export async function runPipeline(
  o: RunOptions,
  stages: Stage[] = ['extract', 'select', 'eval'],
): Promise<PipelineResult> {
  validateConfig(o.config);
  const fingerprint = modelFingerprint(o.modelDir);
  const existing = validateRunDir(o.runDir, o.modelDir, fingerprint);
  const sets = sampleSets(o.config, o.dataDir);
  const evalSets = stages.includes('eval') ? loadEvalSets(o.config, o.dataDir) : [];
  logOverlaps(evalSets, o.log);
  const runner = new Runner(o, sets, evalSets, existing, fingerprint);
  const createdDir = !existsSync(o.runDir);
  try {
    const out: PipelineResult = { runDir: o.runDir, run: runner.run };
    for (const stage of (['extract', 'select', 'eval'] as const).filter((s) => stages.includes(s))) {
      if (runner.done(stage)) {
        runner.log(`${stage}: already done with these settings (resumed)`);
        continue;
      }
      // A stage can only run on a finished upstream stage with the same settings.
      const upstream: Record<Stage, Stage | null> = { extract: null, select: 'extract', eval: 'select' };
      const up = upstream[stage];
      if (up && !stages.includes(up) && !runner.done(up, false)) {
        throw new ScalpelError(
          `${stage}: ${o.runDir} has no finished ${up} stage with these settings; run \`scalpel ${up}\` (or \`scalpel run\`) first`,
        );
      }
      if (stage === 'extract') await runner.extract();
      else if (stage === 'select') await runner.select();
      else out.results = await runner.evaluate(true);
    }
    if (stages.includes('eval') && !out.results) out.results = readEvalResults(o.runDir);
    if (existsSync(join(o.runDir, FILES.selection))) out.selection = readJson<SelectionJson>(o.runDir, FILES.selection);
    return out;
  } catch (e) {
    if (createdDir && existsSync(o.runDir) && readdirSync(o.runDir).length === 0) rmdirSync(o.runDir);
    throw e;
  }
}

/**
 * `scalpel eval --lambda L --alpha A --dataset …`: evaluates the run's chosen (position, layer) with ŵ recomputed
 * from the stored w and r at this λ (default: the configuration's), without touching the run directory (baseline
 * responses are reused when the run has them). With no overrides it is the eval stage and writes eval.json and
 * responses.jsonl. `request.run`: run.json, when the caller has read it already.
 */
export async function evaluateRun(
  o: RunOptions,
  request: {
    lambda?: number;
    alpha?: number;
    datasets?: string[];
    run?: RunJson;
    /** Apply the edit only to the prompts the run's gate clears (gate.ts), as a third condition. */
    gate?: boolean;
    /** Given the response rows when they are generated (not when the eval stage is resumed: responses.jsonl has them). */
    onRows?: (rows: ResponseRow[]) => void;
  },
): Promise<EvalResult[]> {
  validateConfig(o.config);
  validateSettings({ lambda: request.lambda, alpha: request.alpha });
  const fingerprint = modelFingerprint(o.modelDir);
  const stored = request.run ?? requireRunJson(o.runDir);
  checkSameModel(stored, o.runDir, o.modelDir, fingerprint);
  // The runner records its stages into this object; the caller's copy stays as it was read.
  const existing: RunJson = { ...stored, stages: { ...stored.stages } };
  const applied = await interventionFromRun(o.runDir, {
    lambda: request.lambda ?? o.config.lambda,
    alpha: request.alpha ?? o.config.alpha,
    ablation: o.config.ablation,
    strength: o.config.strength,
  });
  const config = { ...o.config, ...(request.datasets ? { evalDatasets: request.datasets } : {}) };
  // Eval reads only the evaluation sets: a training prompt file deleted since the run must not stop it.
  const evalSets = loadEvalSets(config, o.dataDir);
  logOverlaps(evalSets, o.log);
  const runner = new Runner({ ...o, config }, null, evalSets, existing, fingerprint);
  const stock =
    (request.lambda === undefined || request.lambda === o.config.lambda) &&
    (request.alpha === undefined || request.alpha === o.config.alpha) &&
    !request.datasets &&
    !request.gate &&
    runner.run.stages.select?.key === runner.keys.select;
  if (stock && runner.done('eval')) {
    runner.log('eval: already done with these settings (resumed)');
    return readEvalResults(o.runDir);
  }
  return await runner.evaluate(stock, applied, request.onRows, !!request.gate);
}

// ---------------------------------------------------------------------------------------------------------------
// A model alone: the baseline rows of the eval stage, with no run.

export interface ModelEvalOptions {
  /** Only the evaluation settings apply: evalDatasets, maxNewTokens, judgeSubstrings, system, column. */
  config: MethodConfig;
  dataDir?: string;
  /** The model, or how to load it (called after the prompt sets and `outDir` are checked). */
  backend: Backend | (() => Promise<Backend>);
  /** Folder for responses.jsonl and eval.json (the run's file formats, but no run.json); nothing written without it. */
  outDir?: string;
  progress?: ProgressFactory;
  log?: (line: string) => void;
  /** Given the response rows (what responses.jsonl holds), e.g. for a second judge. */
  onRows?: (rows: ResponseRow[]) => void;
}

/** The files a model evaluation writes: a folder holding only these is an earlier evaluation, which a new one replaces. */
const MODEL_EVAL_FILES: readonly string[] = [FILES.eval, FILES.responses, FILES.judge, FILES.judgeCache];

/**
 * `--out DIR` of a model evaluation: new, empty, or an earlier model evaluation. A run is refused because its
 * eval.json belongs to its eval stage (run.json's key says which settings made it); any other folder because its
 * files are not ours to mix with.
 */
function checkModelEvalDir(outDir: string): void {
  if (!existsSync(outDir)) return;
  if (!statSync(outDir).isDirectory()) throw new ScalpelError(`--out ${outDir}: exists and is not a directory`);
  if (existsSync(join(outDir, FILES.run)))
    throw new ScalpelError(
      `--out ${outDir}: is a Scalpel run; evaluate it with --run, or choose a new directory for the model's evaluation`,
    );
  const foreign = readdirSync(outDir).filter((f) => !f.startsWith('.') && !MODEL_EVAL_FILES.includes(f));
  if (foreign.length > 0)
    throw new ScalpelError(
      `--out ${outDir}: holds files other than eval.json and responses.jsonl (${foreign[0]}); choose an empty or new directory`,
    );
}

/**
 * `scalpel eval --model M`: the baseline rates of any model (a Hugging Face folder, a folder written by `scalpel
 * bake`) on the evaluation sets, with no run. The same backend and judge as the eval stage, so a model's rows equal
 * the baseline rows of `scalpel run` on the same sets and settings (a baked folder's equal the run's ablated rows).
 * Baselines are always generated afresh: earlier responses in `outDir` may come from another model.
 */
export async function evaluateModel(o: ModelEvalOptions): Promise<EvalResult[]> {
  validateConfig(o.config);
  const evalSets = loadEvalSets(o.config, o.dataDir);
  logOverlaps(evalSets, o.log);
  if (o.outDir !== undefined) checkModelEvalDir(o.outDir);
  const log = o.log ?? (() => {});
  const counter = new PassCounter();
  const loaded = typeof o.backend === 'function' ? await o.backend() : o.backend;
  const t0 = performance.now();
  const ctx = {
    config: o.config,
    backend: counted(loaded, counter),
    progress: (label: string, total: number) => stageProgress(o.progress, label, total),
  };
  const { results, rows } = await evaluateSets(ctx, evalSets, null);
  if (o.outDir !== undefined) await writeEvalFiles(o.outDir, results, rows, evalSets);
  o.onRows?.(rows);
  const seconds = Math.round(performance.now() - t0) / 1000;
  // A remote backend's cost is its requests and the tokens its server reports, not forward passes counted here.
  const u = loaded.usage?.();
  if (u) log(`eval: ${seconds}s, ${u}`);
  else log(`eval: ${seconds}s, ${counter.snapshot().forward_passes} forward passes`);
  return results;
}
