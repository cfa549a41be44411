// `scalpel sweep`: a finished run evaluated at many settings (λ × α, one ablation mode) on its evaluation sets, the
// chosen (position, layer) kept fixed or re-selected at each setting by the select stage's own scoring (the paper's
// Figure 3 and 5 curves). Work is shared: the baseline is generated once (or taken from the run's responses),
// settings whose intervention comes out identical are generated once, the run's own eval-stage responses stand for
// the setting they were made at, and every remaining setting's sequences go through ONE scheduler pass, so each
// forward call of the model carries several settings' rows. sweep.json is rewritten (atomically) as each setting
// finishes, so a killed sweep loses only the settings in flight and the same command resumes it.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ScalpelError } from '../errors.js';
import { writeFileAtomicSync } from '../io/atomic.js';
import { PassCounter, counted, sequencePasses, type Backend } from './backend.js';
import { loadCandidates, type Candidates } from './candidates.js';
import { validateConfig, type MethodConfig } from './config.js';
import { loadEvalSets, sampleSets, type LoadedSet, type SampledSets } from './datasets.js';
import { readResponses, type EvalResult, type ResponseRow } from './evaluate.js';
import {
  interventionFromSelection,
  interventionHooks,
  validateSettings,
  type AblationMode,
  type Intervention,
  type RunIntervention,
} from './intervention.js';
import { isRefusal } from './judge.js';
import type { RunOptions } from './pipeline.js';
import {
  FILES,
  checkSameModel,
  modelFingerprint,
  readJson,
  type Chosen,
  type RunJson,
  type SelectionJson,
} from './rundir.js';
import { scoreCandidates } from './select.js';
import {
  type PointAbility,
  type SweepAbilityBaseline,
  type SweepAbilityRequest,
  SweepAbility,
  abilityKey,
} from './sweep-ability.js';
import { type JudgeSummary, type SweepJudgeRequest, judgeGroups, sweepJudgeName } from './sweep-judge.js';

export const SWEEP_FORMAT = 'scalpel-sweep/1';

export interface SweepSite {
  position: number;
  layer: number;
}

/** One evaluated setting. Fields after `forward_passes` are additions to the shared contract. */
export interface SweepPoint {
  lambda: number;
  alpha: number;
  ablation: string;
  reselect: boolean;
  /** The ablated candidate; null when re-selection found none passing the rules (then `results` is empty). */
  site: SweepSite | null;
  /** One per dataset, condition "ablated" or "ablated+actadd", as `scalpel eval --lambda --alpha` reports them. */
  results: EvalResult[];
  /** Wall time from the previous setting's end (or the pass's start) to this one's: the points of a pass share it. */
  seconds: number;
  /** Forward passes spent on this setting (prefills + decode steps; 0 when its responses came from elsewhere). */
  forward_passes: number;
  /** What generating this setting alone costs (what a separate `scalpel eval` spends on it). */
  alone_forward_passes: number;
  /** How its responses were obtained: generated, or the same intervention as another point ('none': no site). */
  source: 'generated' | 'same-intervention' | 'none';
  datasets: string[];
  max_new_tokens: number;
  /** The activation-addition candidate (α ≠ 0). */
  actadd_site?: SweepSite | null;
  /** Why a re-selected point has no site. */
  note?: string;
  /** Hash of what else the responses and judgements depend on (system prompt, refusal substrings). */
  context: string;
  finished_at: string;
  /** `--ability`: general ability under this point's intervention (absent when not asked for, or no site). */
  ability?: PointAbility;
  /** `--judge`: the second judge's rates and agreement with the substring judge, per dataset. */
  judge?: JudgeSummary;
}

export interface SweepJson {
  format: typeof SWEEP_FORMAT;
  model_fingerprint: string;
  /** Of the latest request; each point and baseline row carries its own. */
  max_new_tokens: number;
  /** Every dataset any point covers, in first-seen order. */
  datasets: string[];
  /** Condition "baseline", one per (dataset, max_new_tokens). */
  baseline: EvalResult[];
  points: SweepPoint[];
  cost: {
    /** All forward passes this file's points and baselines cost (prefills + decode steps, as run.json counts). */
    forward_passes: number;
    /** The same settings as separate `scalpel eval --lambda --alpha` calls (each reusing the run's baselines). */
    separate_eval_forward_passes_estimate: number;
    /** Of `forward_passes`, what generating baselines cost (0 when they came from the run's responses). */
    baseline_forward_passes: number;
    /** Of `forward_passes`, what --reselect's scoring of the candidates cost (prompt prefills). */
    reselect_forward_passes?: number;
    /** Batched forward calls of the model in the generation passes (each reads the weights once for all its rows). */
    model_forward_calls: number;
    /** `--ability`: sequences run to measure ability (baseline and points; one prefill each), apart from the above. */
    ability_forward_passes?: number;
    /** `--judge`: requests sent to the judge (cached answers cost none). */
    judge_requests?: number;
    /** Generation passes so far and the sequences each ran together. */
    passes: { sequences: number; width: number; model_forward_calls: number; seconds: number }[];
  };
  /** The run's select stage these points were made from; a re-selected run starts a new sweep. */
  select_key: string;
  /** `--ability`: the unedited model's figures, measured once for every point with the same sizes (`key`). */
  ability_baseline?: SweepAbilityBaseline;
  /** `--judge`: the second judge on the baseline rows of `datasets` at `max_new_tokens`. */
  baseline_judge?: JudgeSummary & { max_new_tokens: number };
}

export interface SweepRequest {
  lambdas: number[];
  alphas: number[];
  ablation: AblationMode;
  reselect: boolean;
  /** Evaluation sets; default the run's. */
  datasets?: string[];
  run: RunJson;
  /** Sequences generated together in the shared pass (default: the backend's batch size × settings, at most 64). */
  passWidth?: number;
  /** Also measure general ability at every setting (the baseline once). */
  ability?: SweepAbilityRequest;
  /** Also label every response with this second judge (its model already known). */
  judge?: SweepJudgeRequest;
}

/** A response row of sweep-responses.jsonl: eval's row, with the point's mode and re-selection. */
export interface SweepResponseRow extends ResponseRow {
  ablation?: string;
  reselect?: boolean;
}

const round2 = (x: number) => Math.round(x * 100) / 100;
const sameList = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
const hash = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 16);

/** One setting of the request. */
interface Setting {
  lambda: number;
  alpha: number;
  ablation: AblationMode;
  reselect: boolean;
}

function matches(p: SweepPoint, s: Setting, datasets: string[], maxNewTokens: number, context: string): boolean {
  return (
    p.lambda === s.lambda &&
    p.alpha === s.alpha &&
    p.ablation === s.ablation &&
    p.reselect === s.reselect &&
    sameList(p.datasets, datasets) &&
    p.max_new_tokens === maxNewTokens &&
    p.context === context
  );
}

/** An intervention's identity: two settings with the same key give the same responses. */
function interventionKey(iv: Intervention): string {
  if (iv.kind === 'none') return 'none';
  const h = createHash('sha256');
  const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  if (iv.kind === 'ablate') {
    h.update(`ablate ${iv.scale} ${JSON.stringify(iv.mode)}`);
    h.update(bytes(iv.direction));
  }
  const add = iv.add;
  if (add && add.alpha !== 0) {
    h.update(`add ${add.layer} ${add.alpha}`);
    h.update(bytes(add.vector));
  }
  return h.digest('hex');
}

function readSweep(runDir: string): SweepJson | null {
  if (!existsSync(join(runDir, FILES.sweep))) return null;
  const j = readJson<SweepJson>(runDir, FILES.sweep);
  if (j?.format !== SWEEP_FORMAT || !Array.isArray(j.points) || !Array.isArray(j.baseline))
    throw new ScalpelError(`${join(runDir, FILES.sweep)}: not a Scalpel sweep (expected format ${SWEEP_FORMAT})`);
  return j;
}

function readSweepRows(runDir: string): SweepResponseRow[] {
  const p = join(runDir, FILES.sweepResponses);
  if (!existsSync(p)) return [];
  try {
    return readFileSync(p, 'utf8')
      .split('\n')
      .filter((s) => s.trim() !== '')
      .map((s) => JSON.parse(s) as SweepResponseRow);
  } catch {
    return []; // unreadable: its baselines are generated afresh, its points' rows are rewritten from now on
  }
}

/** Stored responses to `set` that are this request's (same prompts in order and token limit), or undefined. */
function storedTexts(
  rows: readonly ResponseRow[],
  set: LoadedSet,
  maxNewTokens: number,
  pick: (r: ResponseRow) => boolean,
): string[] | undefined {
  const old = rows.filter((r) => r.dataset === set.name && r.max_new_tokens === maxNewTokens && pick(r));
  if (old.length === set.prompts.length && old.every((r, j) => r.index === j && r.prompt === set.prompts[j]))
    return old.map((r) => r.response);
  return undefined;
}

/** Judges one set's responses: the EvalResult and response rows `scalpel eval` writes for them. */
function judged(
  set: LoadedSet,
  texts: string[],
  c: MethodConfig,
  cond: { condition: string; lambda: number | null; alpha: number | null; extra?: Partial<EvalResult> },
  rowExtra: Partial<SweepResponseRow>,
): { result: EvalResult; rows: SweepResponseRow[] } {
  let refusals = 0;
  const rows = texts.map((t, j) => {
    const refusal = isRefusal(t, c.judgeSubstrings);
    if (refusal) refusals++;
    return {
      dataset: set.name,
      condition: cond.condition,
      lambda: cond.lambda,
      alpha: cond.alpha,
      index: j,
      prompt: set.prompts[j]!,
      response: t,
      refusal,
      max_new_tokens: c.maxNewTokens,
      ...rowExtra,
    };
  });
  const n = texts.length;
  const result: EvalResult = {
    dataset: set.name,
    condition: cond.condition,
    lambda: cond.lambda,
    alpha: cond.alpha,
    n,
    compliance_rate: (n - refusals) / n,
    refusal_rate: refusals / n,
    ...cond.extra,
    max_new_tokens: c.maxNewTokens,
  };
  return { result, rows };
}

/** A setting to evaluate, with its intervention once built. */
interface Pending {
  setting: Setting;
  applied: RunIntervention | null;
  site: SweepSite | null;
  actaddSite: SweepSite | null;
  note?: string;
  key: string;
}

/**
 * Runs the sweep on `o.runDir` (a finished run) and returns sweep.json as written. Settings already in sweep.json
 * with the same datasets, token limit and judge are skipped; new ones are appended.
 */
export async function runSweep(o: RunOptions, req: SweepRequest): Promise<SweepJson> {
  const log = o.log ?? (() => {});
  const datasets = req.datasets ?? o.config.evalDatasets;
  const config: MethodConfig = { ...o.config, evalDatasets: datasets, ablation: req.ablation };
  validateConfig(config);
  if (req.lambdas.length === 0) throw new ScalpelError('--lambda: expected at least one value');
  if (req.alphas.length === 0) throw new ScalpelError('--alpha: expected at least one value');
  for (const lambda of req.lambdas) validateSettings({ lambda });
  for (const alpha of req.alphas) validateSettings({ alpha });
  validateSettings({ ablation: req.ablation });
  const fingerprint = modelFingerprint(o.modelDir);
  const run = req.run;
  checkSameModel(run, o.runDir, o.modelDir, fingerprint);
  const selectKey = run.stages.select?.key;
  if (!selectKey || !existsSync(join(o.runDir, FILES.selection)) || !existsSync(join(o.runDir, FILES.candidates)))
    throw new ScalpelError(`${o.runDir}: no finished select stage; run \`scalpel run\` (or \`scalpel select\`) first`);
  const selection = readJson<SelectionJson>(o.runDir, FILES.selection);
  if (!selection.chosen)
    throw new ScalpelError(`${join(o.runDir, FILES.selection)}: no chosen candidate; rerun select`);
  if (!req.reselect && req.alphas.some((a) => a !== 0) && !selection.actadd?.chosen)
    throw new ScalpelError(
      `${join(o.runDir, FILES.selection)}: no actadd vector was selected; rerun select with --alpha, or sweep with --reselect`,
    );
  const evalSets = loadEvalSets(config, o.dataDir);
  const maxNew = config.maxNewTokens;
  const context = hash(JSON.stringify({ system: config.system ?? null, judge: config.judgeSubstrings }));

  // The file so far: a sweep of an older selection is started afresh (its points describe another vector).
  const old = readSweep(o.runDir);
  const stale = old !== null && old.select_key !== hash(selectKey);
  if (stale) log(`sweep: ${FILES.sweep} was made from an earlier selection; starting a new sweep`);
  const sweep: SweepJson =
    old && !stale
      ? old
      : {
          format: SWEEP_FORMAT,
          model_fingerprint: fingerprint,
          max_new_tokens: maxNew,
          datasets: [],
          baseline: [],
          points: [],
          cost: {
            forward_passes: 0,
            separate_eval_forward_passes_estimate: 0,
            baseline_forward_passes: 0,
            model_forward_calls: 0,
            passes: [],
          },
          select_key: hash(selectKey),
        };
  sweep.max_new_tokens = maxNew;
  for (const d of datasets) if (!sweep.datasets.includes(d)) sweep.datasets.push(d);
  const settings: Setting[] = [];
  for (const lambda of req.lambdas)
    for (const alpha of req.alphas) settings.push({ lambda, alpha, ablation: req.ablation, reselect: req.reselect });
  // --force: the requested settings are computed again (their old points and rows go).
  if (o.force)
    sweep.points = sweep.points.filter((p) => !settings.some((t) => matches(p, t, datasets, maxNew, context)));
  // Rows of points and baselines that sweep.json records (a kill between the two writes leaves extra rows).
  const isRecorded = (r: SweepResponseRow) =>
    r.condition === 'baseline'
      ? sweep.baseline.some((b) => b.dataset === r.dataset && b.max_new_tokens === r.max_new_tokens)
      : sweep.points.some(
          (p) =>
            p.lambda === r.lambda &&
            p.alpha === r.alpha &&
            p.ablation === r.ablation &&
            p.reselect === r.reselect &&
            p.max_new_tokens === r.max_new_tokens &&
            p.datasets.includes(r.dataset),
        );
  const rows: SweepResponseRow[] = stale ? [] : readSweepRows(o.runDir).filter(isRecorded);

  const write = () => {
    // Separate evals: each setting's generation alone, plus the baseline each time when the sweep had to generate it
    // (eval reuses only the run's baselines).
    const c = sweep.cost;
    c.baseline_forward_passes ??= 0; // files from before this field
    c.separate_eval_forward_passes_estimate = sweep.points.reduce(
      (n, p) => n + p.alone_forward_passes + (p.results.length > 0 ? c.baseline_forward_passes : 0),
      0,
    );
    writeFileAtomicSync(join(o.runDir, FILES.sweepResponses), rows.map((r) => `${JSON.stringify(r)}\n`).join(''));
    writeFileAtomicSync(join(o.runDir, FILES.sweep), `${JSON.stringify(sweep, null, 2)}\n`);
  };

  const unique = settings.filter(
    (s, i) => settings.findIndex((t) => t.lambda === s.lambda && t.alpha === s.alpha) === i,
  );
  const pointOf = (s: Setting) => sweep.points.find((p) => matches(p, s, datasets, maxNew, context));
  const todo = unique.filter((s) => !pointOf(s));
  const runRows = readResponses(o.runDir);
  const baselineTodo = evalSets.filter(
    (set) => !sweep.baseline.some((b) => b.dataset === set.name && b.max_new_tokens === maxNew),
  );
  // --ability and --judge on points made earlier without them (or with other sizes, another judge).
  const aKey = req.ability ? abilityKey(req.ability) : null;
  const abilityOld = unique.filter((s) => {
    const p = pointOf(s);
    return aKey !== null && p !== undefined && p.results.length > 0 && p.ability?.key !== aKey;
  });
  const abilityBaselineTodo = aKey !== null && (o.force || sweep.ability_baseline?.key !== aKey);
  const jName = req.judge ? sweepJudgeName(req.judge) : null;
  const bj = sweep.baseline_judge;
  const judgeBaselineTodo =
    jName !== null &&
    (o.force || bj?.judge !== jName || bj.max_new_tokens !== maxNew || !datasets.every((d) => d in bj.agreement));
  const judgeOld = unique.some((s) => {
    const p = pointOf(s);
    return jName !== null && p !== undefined && p.results.length > 0 && p.judge?.judge !== jName;
  });
  if (todo.length < settings.length) log(`sweep: ${settings.length - todo.length} settings already done (resumed)`);
  const extraWork = abilityOld.length > 0 || abilityBaselineTodo || judgeBaselineTodo || judgeOld;
  if (todo.length === 0 && baselineTodo.length === 0 && !extraWork) {
    if (!existsSync(join(o.runDir, FILES.sweep))) write();
    return sweep;
  }

  // The model, counted. Interventions are built before any generation, so a re-selection failing its rules shows
  // before the long part.
  const counter = new PassCounter();
  const loaded = typeof o.backend === 'function' ? await o.backend() : o.backend;
  const backend: Backend = counted(loaded, counter);
  const cand = await loadCandidates(o.runDir);
  const pending = await buildInterventions(o, config, backend, cand, selection, run, todo, log);
  const pendingOld = await buildInterventions(o, config, backend, cand, selection, run, abilityOld, () => {});
  const scoring = counter.snapshot().forward_passes;
  if (scoring > 0) {
    sweep.cost.reselect_forward_passes = (sweep.cost.reselect_forward_passes ?? 0) + scoring;
    sweep.cost.forward_passes += scoring;
  }

  // Baselines: the sweep's own, else the run's responses, else generated in the pass.
  const prior: ResponseRow[] = [...rows, ...runRows];
  const baseTexts = new Map<string, string[]>();
  for (const set of baselineTodo) {
    const t = storedTexts(prior, set, maxNew, (r) => r.condition === 'baseline');
    if (t) baseTexts.set(set.name, t);
  }
  const alone = new Map<string, number>(); // intervention key → passes of generating it alone
  const textsOf = new Map<string, Map<string, string[]>>(); // intervention key → dataset → texts

  const started = performance.now();
  let lastEnd = started;
  const made = new Map<Pending, SweepPoint>();
  const finishPoint = (pd: Pending, source: SweepPoint['source'], passes: number) => {
    const s = pd.setting;
    const results: EvalResult[] = [];
    const cond = s.alpha !== 0 ? 'ablated+actadd' : 'ablated';
    if (pd.applied) {
      const texts = textsOf.get(pd.key)!;
      for (const set of evalSets) {
        const j = judged(
          set,
          texts.get(set.name)!,
          config,
          {
            condition: cond,
            lambda: s.lambda,
            alpha: s.alpha,
            extra: { target: pd.applied.settings.target, ablation: s.ablation },
          },
          { ablation: s.ablation, reselect: s.reselect },
        );
        results.push(j.result);
        rows.push(...j.rows);
      }
    }
    const now = performance.now();
    const point: SweepPoint = {
      lambda: s.lambda,
      alpha: s.alpha,
      ablation: s.ablation,
      reselect: s.reselect,
      site: pd.site,
      results,
      seconds: round2((now - lastEnd) / 1000),
      forward_passes: passes,
      alone_forward_passes: alone.get(pd.key) ?? 0,
      source,
      datasets: [...datasets],
      max_new_tokens: maxNew,
      ...(s.alpha !== 0 ? { actadd_site: pd.actaddSite } : {}),
      ...(pd.note ? { note: pd.note } : {}),
      context,
      finished_at: new Date().toISOString(),
    };
    sweep.points.push(point);
    made.set(pd, point);
    lastEnd = now;
    sweep.cost.forward_passes += passes;
    write();
  };
  const finishBaseline = (set: LoadedSet, texts: string[]) => {
    const j = judged(set, texts, config, { condition: 'baseline', lambda: null, alpha: null }, {});
    sweep.baseline.push(j.result);
    rows.push(...j.rows);
  };

  // What needs no generation: no site, or an intervention another point generates.
  const generate: Pending[] = [];
  const waitingOn = new Map<string, Pending[]>();
  for (const pd of pending) {
    if (!pd.applied) continue;
    if (waitingOn.has(pd.key)) waitingOn.get(pd.key)!.push(pd);
    else {
      generate.push(pd);
      waitingOn.set(pd.key, [pd]);
    }
  }
  for (const set of baselineTodo) if (baseTexts.has(set.name)) finishBaseline(set, baseTexts.get(set.name)!);
  for (const pd of pending) {
    if (!pd.applied) finishPoint(pd, 'none', 0);
  }

  // One scheduler pass for everything left: missing baselines first, then each intervention's sequences in order.
  interface Job {
    kind: 'baseline' | 'point';
    pd?: Pending;
    set?: LoadedSet;
    left: number;
    passes: number;
    texts: Map<string, string[]>;
  }
  const prompts: number[][] = [];
  const hooks: (ReturnType<typeof interventionHooks> | undefined)[] = [];
  const owner: { job: Job; set: LoadedSet; j: number }[] = [];
  const encoded = new Map(evalSets.map((set) => [set.name, set.prompts.map((p) => backend.encodePrompt(p))]));
  const jobs: Job[] = [];
  for (const set of baselineTodo.filter((s) => !baseTexts.has(s.name)))
    jobs.push({ kind: 'baseline', set, left: set.prompts.length, passes: 0, texts: new Map() });
  for (const pd of generate)
    jobs.push({
      kind: 'point',
      pd,
      left: evalSets.reduce((n, s) => n + s.prompts.length, 0),
      passes: 0,
      texts: new Map(),
    });
  for (const job of jobs) {
    const h = job.pd ? interventionHooks(job.pd.applied!.intervention, cand.L) : undefined;
    for (const set of job.set ? [job.set] : evalSets) {
      job.texts.set(set.name, new Array(set.prompts.length));
      encoded.get(set.name)!.forEach((ids, j) => {
        prompts.push(ids);
        hooks.push(h);
        owner.push({ job, set, j });
      });
    }
  }
  if (prompts.length > 0) {
    const settingsInPass = jobs.length;
    const width = req.passWidth ?? Math.min(64, (loaded.batchSize ?? 16) * Math.max(1, settingsInPass));
    log(
      `sweep: generating ${jobs.filter((j) => j.kind === 'point').length} settings${jobs.some((j) => j.kind === 'baseline') ? ' and the baseline' : ''} together (${prompts.length} sequences, ${width} at a time)`,
    );
    const bar = o.progress?.(`sweeping ${settingsInPass} settings`, prompts.length);
    const t0 = performance.now();
    let calls = 0;
    await backend.generate(prompts, {
      maxNewTokens: maxNew,
      promptHooks: hooks,
      batchSize: width,
      onProgress: (done, total) => bar?.update(done, total),
      onForwardCalls: (n) => {
        calls = n;
      },
      onResult: (i, tokens) => {
        const { job, set, j } = owner[i]!;
        job.texts.get(set.name)![j] = loaded.decode(tokens);
        job.passes += sequencePasses(tokens.length, maxNew);
        if (--job.left > 0) return;
        if (job.kind === 'baseline') {
          finishBaseline(set, job.texts.get(set.name)!);
          sweep.cost.forward_passes += job.passes;
          sweep.cost.baseline_forward_passes += job.passes;
          write();
          return;
        }
        const pd = job.pd!;
        textsOf.set(pd.key, job.texts);
        alone.set(pd.key, job.passes);
        const [first, ...twins] = waitingOn.get(pd.key)!;
        finishPoint(first!, 'generated', job.passes);
        for (const t of twins) finishPoint(t, 'same-intervention', 0);
      },
    });
    bar?.stop();
    sweep.cost.model_forward_calls += calls;
    sweep.cost.passes.push({
      sequences: prompts.length,
      width,
      model_forward_calls: calls,
      seconds: round2((performance.now() - t0) / 1000),
    });
  }
  write();
  if (req.ability) {
    // Each intervention measured once (twins share it), in the order of the request.
    const targets: [Pending, SweepPoint][] = [
      ...pendingOld
        .filter((pd) => pd.applied !== null)
        .map((pd) => [pd, pointOf(pd.setting)!] as [Pending, SweepPoint]),
      ...[...made].filter(([pd]) => pd.applied !== null),
    ];
    await measureSweepAbility(req.ability, o, sweep, abilityBaselineTodo, targets, cand.L, write, log);
  }
  if (req.judge) {
    const points = unique
      .map(pointOf)
      .filter((p): p is SweepPoint => p !== undefined && p.results.length > 0 && p.judge?.judge !== jName);
    await judgeSweep(req.judge, sweep, rows, points, judgeBaselineTodo ? datasets : null, maxNew, write, log);
  }
  const s = counter.snapshot();
  log(
    `sweep: ${round2((performance.now() - started) / 1000)}s, ${s.forward_passes} forward passes (${s.prompt_prefills} prompts, ${s.decode_steps} decode steps), ${s.model_forward_calls} model forward calls`,
  );
  return sweep;
}

/** A stage-style progress (select's scoring) over the caller's bars. */
function scoringProgress(o: RunOptions) {
  return (label: string, total: number) => {
    const bar = o.progress?.(label, total);
    let n = 0;
    return {
      cb: (done: number, t: number) => bar?.update(done, t),
      bump: () => bar?.update(++n, total),
      stop: () => bar?.stop(),
    };
  };
}

const siteOf = (c: Chosen | null | undefined): SweepSite | null =>
  c ? { position: c.position, layer: c.layer } : null;

/**
 * Each setting's intervention: the run's chosen site at that λ, α and mode, or with `reselect` the site the select
 * stage's scoring picks at that setting (on the run's validation sets, with its rules and refusal tokens).
 */
async function buildInterventions(
  o: RunOptions,
  config: MethodConfig,
  backend: Backend,
  cand: Candidates,
  selection: SelectionJson,
  run: RunJson,
  todo: Setting[],
  log: (line: string) => void,
): Promise<Pending[]> {
  let sampled: SampledSets | undefined;
  const out: Pending[] = [];
  for (const s of todo) {
    const settings = { lambda: s.lambda, alpha: s.alpha, ablation: s.ablation, strength: config.strength };
    let sel = selection;
    if (s.reselect) {
      sampled ??= sampleSets(config, o.dataDir);
      const ctx = {
        config: { ...config, ...settings },
        backend,
        runDir: o.runDir,
        run,
        progress: scoringProgress(o),
        log,
      };
      sel = (await scoreCandidates(ctx, sampled, cand)).sel;
      const label = `λ = ${s.lambda}, α = ${s.alpha}`;
      if (!sel.chosen || (s.alpha !== 0 && !sel.actadd?.chosen)) {
        const what = sel.chosen ? 'no actadd candidate' : 'no candidate';
        log(`sweep: ${label}: ${what} passes the select rules; recorded without results`);
        out.push({
          setting: s,
          applied: null,
          site: siteOf(sel.chosen),
          actaddSite: siteOf(sel.actadd?.chosen),
          note: `${what} passes the select rules at this setting`,
          key: '',
        });
        continue;
      }
      log(`sweep: ${label}: re-selected position ${sel.chosen.position}, layer ${sel.chosen.layer}`);
    }
    const applied = interventionFromSelection(sel, cand, settings);
    out.push({
      setting: s,
      applied,
      site: siteOf(sel.chosen),
      actaddSite: siteOf(sel.actadd?.chosen),
      key: interventionKey(applied.intervention),
    });
  }
  return out;
}

/** `--ability`: the baseline (when its sizes are new) and every target point, sweep.json written after each. */
async function measureSweepAbility(
  req: SweepAbilityRequest,
  o: RunOptions,
  sweep: SweepJson,
  baselineTodo: boolean,
  targets: [Pending, SweepPoint][],
  numLayers: number,
  write: () => void,
  log: (line: string) => void,
): Promise<void> {
  if (!baselineTodo && targets.length === 0) return;
  const sa = await SweepAbility.open(req, o.dataDir, o.progress);
  const charge = (n: number) => {
    sweep.cost.ability_forward_passes = (sweep.cost.ability_forward_passes ?? 0) + n;
  };
  if (baselineTodo) {
    sweep.ability_baseline = sa.baseline();
    charge(sweep.ability_baseline.forward_passes);
    write();
  }
  const byIntervention = new Map<string, PointAbility>();
  for (const [pd, point] of targets) {
    const twin = byIntervention.get(pd.key);
    if (twin) point.ability = { ...twin, forward_passes: 0, seconds: 0 };
    else {
      const label = `λ = ${point.lambda}, α = ${point.alpha}`;
      const a = sa.point(interventionHooks(pd.applied!.intervention, numLayers), label);
      byIntervention.set(pd.key, a);
      point.ability = a;
      charge(a.forward_passes);
      log(
        `sweep: ability at ${label}: KL mean ${a.kl.first_token_mean.toFixed(4)}${a.edited.perplexity ? `, perplexity ${a.edited.perplexity.value.toFixed(2)}` : ''}`,
      );
    }
    write();
  }
}

/** The rows of one point in sweep-responses.jsonl (the latest row per dataset and index). */
function pointRows(rows: readonly SweepResponseRow[], p: SweepPoint): SweepResponseRow[] {
  const mine = new Map<string, SweepResponseRow>();
  for (const r of rows)
    if (
      r.condition !== 'baseline' &&
      r.lambda === p.lambda &&
      r.alpha === p.alpha &&
      r.ablation === p.ablation &&
      r.reselect === p.reselect &&
      r.max_new_tokens === p.max_new_tokens &&
      p.datasets.includes(r.dataset)
    )
      mine.set(`${r.dataset}\t${r.index}`, r);
  return [...mine.values()];
}

/** `--judge`: the baseline rows (when `baselineSets` is given) and every point's rows, in one batch of requests. */
async function judgeSweep(
  req: SweepJudgeRequest,
  sweep: SweepJson,
  rows: readonly SweepResponseRow[],
  points: SweepPoint[],
  baselineSets: string[] | null,
  maxNew: number,
  write: () => void,
  log: (line: string) => void,
): Promise<void> {
  const groups: SweepResponseRow[][] = points.map((p) => pointRows(rows, p));
  if (baselineSets)
    groups.push(
      rows.filter((r) => r.condition === 'baseline' && r.max_new_tokens === maxNew && baselineSets.includes(r.dataset)),
    );
  if (groups.length === 0) return;
  const { summaries, usage } = await judgeGroups(groups, req);
  points.forEach((p, i) => {
    p.judge = summaries[i]!;
  });
  if (baselineSets) sweep.baseline_judge = { ...summaries[points.length]!, max_new_tokens: maxNew };
  sweep.cost.judge_requests = (sweep.cost.judge_requests ?? 0) + usage.requests;
  log(
    `sweep: judge: ${groups.reduce((n, g) => n + g.length, 0)} rows, ${usage.cached} from the cache, ${usage.requests} requests`,
  );
  write();
}
