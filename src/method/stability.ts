// `scalpel stability`: how much the method's outcome hinges on which prompts were drawn. Each draw re-samples the
// training and validation prompts from the same pools (without replacement, as the run itself does, with seed =
// the run's seed + d; draw 0 is the run's own sample), re-extracts the candidates, re-selects with the run's
// configuration and evaluates the chosen edit on the run's evaluation sets. This is re-sampling of the n_train /
// n_val prompts from larger pools, not a bootstrap with replacement: a repeated prompt would weigh twice in the
// difference in means, which the method never does.
//
// Every draw is a small run directory of its own (RUN/stability/<study>/draw-<seed>/), so an interrupted study
// resumes per draw and per stage; baselines are generated once (the run's own, else the first draw's) and shared.
// stability.json (rewritten atomically after every draw) holds each draw's site and figures and the spread.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ScalpelError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import type { Backend } from './backend.js';
import type { MethodConfig } from './config.js';
import { readResponses, type EvalResult, type ResponseRow } from './evaluate.js';
import { heldOutHarmful } from './heldout.js';
import { runPipeline, type RunOptions } from './pipeline.js';
import { FILES, readJson, readTensors, writeJson, type RunJson, type SelectionJson } from './rundir.js';

export const STABILITY_FORMAT = 'scalpel-stability/1';

export interface DrawRecord {
  draw: number;
  seed: number;
  /** null when no candidate passed selection on this draw (then no results). */
  site: { position: number; layer: number } | null;
  validation: { refusal_score: number | null; kl: number | null; harmful_score: number | null } | null;
  results: EvalResult[];
  /** Pooled held-out harmful refusal (heldout.ts), edited; null without held-out harmful sets. */
  held_out_harmful_refusal: number | null;
  seconds: number;
  forward_passes: number;
  note?: string;
}

export interface Spread {
  n: number;
  min: number;
  max: number;
  /** max − min, in rate units (0.1 = 10 points). */
  range: number;
  mean: number;
  /** Sample standard deviation (n − 1); 0 for one draw. */
  sd: number;
}

export interface StudyJson {
  /** Which selection settings this study used, beyond the run's own ("as-run", or e.g. "val-draws-4"). */
  study: string;
  draws_requested: number;
  resampling: string;
  settings: { n_train: number; n_val: number; val_draws: number; seed: number; lambda: number; ablation: string };
  eval_datasets: string[];
  baseline: EvalResult[];
  draws: DrawRecord[];
  spread: {
    sites: Record<string, number>;
    distinct_sites: number;
    /** Share of draws on the most frequent site. */
    modal_site_share: number;
    /** Edited compliance per dataset across draws (the baseline is the same for every draw, so this is also the gain's spread). */
    compliance: Record<string, Spread>;
    /** Edited − baseline compliance per dataset. */
    gain: Record<string, Spread>;
    held_out_harmful_refusal: Spread | null;
    /**
     * Cosine between the chosen ablation directions of every two draws (training and validation data only, no test
     * figure): how far the edit itself moves with the draw, whether or not the site does.
     */
    direction_cosine: Spread | null;
  };
}

export interface StabilityJson {
  format: string;
  model_fingerprint: string;
  studies: StudyJson[];
}

export interface StabilityRequest {
  draws: number;
  /** Evaluation sets; default: the run's. */
  datasets?: string[];
  /** The run's run.json. */
  run: RunJson;
  /** Study label; default from the settings that differ from the run's ("as-run" when none do). */
  study?: string;
}

/** A study's name from the selection settings that differ from the run's stored configuration. */
export function studyName(config: MethodConfig, stored: Record<string, unknown>): string {
  const parts: string[] = [];
  if (config.valDraws !== (stored['valDraws'] ?? 1)) parts.push(`val-draws-${config.valDraws}`);
  if (config.nVal !== stored['nVal']) parts.push(`n-val-${config.nVal}`);
  if (config.nTrain !== stored['nTrain']) parts.push(`n-train-${config.nTrain}`);
  return parts.length > 0 ? parts.join('-') : 'as-run';
}

export function spreadOf(values: readonly number[]): Spread | null {
  const n = values.length;
  if (n === 0) return null;
  const min = Math.min(...values);
  const max = Math.max(...values);
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1)) : 0;
  return { n, min, max, range: max - min, mean, sd };
}

/** The spread of a study's finished draws. */
export function summarise(
  draws: readonly DrawRecord[],
  baseline: readonly EvalResult[],
  directions: readonly Float32Array[] = [],
): StudyJson['spread'] {
  const sites: Record<string, number> = {};
  for (const d of draws) {
    const key = d.site ? `${d.site.position}/${d.site.layer}` : 'none';
    sites[key] = (sites[key] ?? 0) + 1;
  }
  const withSite = draws.filter((d) => d.site !== null);
  const datasets = [...new Set(withSite.flatMap((d) => d.results.map((r) => r.dataset)))];
  const compliance: Record<string, Spread> = {};
  const gain: Record<string, Spread> = {};
  for (const ds of datasets) {
    const edited = withSite.flatMap((d) =>
      d.results.filter((r) => r.dataset === ds && r.condition !== 'baseline').map((r) => r.compliance_rate),
    );
    const base = baseline.find((r) => r.dataset === ds)?.compliance_rate;
    const s = spreadOf(edited);
    if (s) compliance[ds] = s;
    const g = base === undefined ? null : spreadOf(edited.map((v) => v - base));
    if (g) gain[ds] = g;
  }
  const counts = Object.values(sites);
  return {
    sites,
    distinct_sites: Object.keys(sites).length,
    modal_site_share: draws.length > 0 ? Math.max(...counts) / draws.length : 0,
    compliance,
    gain,
    held_out_harmful_refusal: spreadOf(
      withSite.map((d) => d.held_out_harmful_refusal).filter((x): x is number => x !== null),
    ),
    direction_cosine: spreadOf(pairwiseCosines(directions)),
  };
}

/** Cosines of every pair of directions (i < j). */
export function pairwiseCosines(directions: readonly Float32Array[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < directions.length; i++)
    for (let j = i + 1; j < directions.length; j++) {
      const a = directions[i]!;
      const b = directions[j]!;
      let ab = 0;
      let aa = 0;
      let bb = 0;
      for (let k = 0; k < a.length; k++) {
        ab += a[k]! * b[k]!;
        aa += a[k]! * a[k]!;
        bb += b[k]! * b[k]!;
      }
      out.push(ab / Math.sqrt(aa * bb));
    }
  return out;
}

/** stability.json, when the run has one (a rerun adds to it; the report reads it). */
export function readStability(runDir: string): StabilityJson | null {
  const p = join(runDir, FILES.stability);
  if (!existsSync(p)) return null;
  const doc = readJson<StabilityJson>(runDir, FILES.stability);
  if (doc.format !== STABILITY_FORMAT || !Array.isArray(doc.studies))
    throw new ScalpelError(
      `${p}: not a ${STABILITY_FORMAT} file (format ${String(doc.format)}); move it away to rerun`,
    );
  return doc;
}

/** A draw's record from its finished run directory. */
function drawRecord(draw: number, seed: number, dir: string): DrawRecord {
  const run = readJson<RunJson>(dir, FILES.run);
  const sel = existsSync(join(dir, FILES.selection)) ? readJson<SelectionJson>(dir, FILES.selection) : null;
  const results = existsSync(join(dir, FILES.eval)) ? readJson<{ results: EvalResult[] }>(dir, FILES.eval).results : [];
  const stages = Object.values(run.stages);
  const ch = sel?.chosen ?? null;
  const held = heldOutHarmful(results)?.pooled.edited?.refusal_rate ?? null;
  return {
    draw,
    seed,
    site: ch ? { position: ch.position, layer: ch.layer } : null,
    validation: ch ? { refusal_score: ch.refusal_score, kl: ch.kl, harmful_score: ch.harmful_score } : null,
    results: results.filter((r) => r.condition !== 'baseline'),
    held_out_harmful_refusal: held,
    seconds: Math.round(stages.reduce((a, s) => a + (s?.seconds ?? 0), 0) * 100) / 100,
    forward_passes: stages.reduce((a, s) => a + (s?.forward_passes ?? 0), 0),
  };
}

/** Baseline rows known so far (the run's, then each finished draw's), by dataset, for the next draws to reuse. */
function baselineRows(dir: string): ResponseRow[] {
  return readResponses(dir).filter((r) => r.condition === 'baseline');
}

export async function runStability(o: RunOptions, req: StabilityRequest): Promise<StabilityJson> {
  if (!Number.isInteger(req.draws) || req.draws < 1)
    throw new ScalpelError(`--draws ${req.draws}: expected an integer ≥ 1`);
  const base = o.config;
  const evalDatasets = req.datasets ?? base.evalDatasets;
  const study = req.study ?? studyName(base, req.run.config);
  const log = o.log ?? (() => {});
  // A damaged stability.json is refused before any work (the read before each write would fail the same way).
  readStability(o.runDir);
  // One model for every draw: the backend is loaded on first use and shared.
  let loaded: Backend | undefined;
  const backend = async () => {
    loaded ??= typeof o.backend === 'function' ? await o.backend() : o.backend;
    return loaded;
  };

  const shared = new Map<string, ResponseRow[]>();
  const addBaselines = (rows: ResponseRow[]) => {
    for (const r of rows) {
      const key = `${r.dataset}\t${r.max_new_tokens}`;
      const list = shared.get(key) ?? [];
      if (!list.some((x) => x.index === r.index)) list.push(r);
      shared.set(key, list);
    }
  };
  addBaselines(baselineRows(o.runDir));

  const draws: DrawRecord[] = [];
  const directions: Float32Array[] = [];
  let baseline: EvalResult[] = [];
  let out: StabilityJson | undefined;
  const t0 = performance.now();
  for (let d = 0; d < req.draws; d++) {
    const seed = base.seed + d;
    const dir = join(o.runDir, 'stability', study, `draw-${seed}`);
    const config: MethodConfig = { ...base, seed, evalDatasets };
    // Each stage's bar says which draw it belongs to; the line after each draw gives the study's ETA.
    const tag = `draw ${d + 1}/${req.draws} (seed ${seed})`;
    const progress = o.progress ? (label: string, total: number) => o.progress!(`${tag}: ${label}`, total) : undefined;
    const sub: RunOptions = { ...o, runDir: dir, config, backend, force: false, ...(progress ? { progress } : {}) };
    let note: string | undefined;
    try {
      await runPipeline(sub, ['extract', 'select']);
      // The baselines do not depend on the draw: the eval stage reuses rows it finds in the draw's responses.jsonl.
      const responses = join(dir, FILES.responses);
      if (!existsSync(responses) && shared.size > 0) {
        const rows = [...shared.values()].flat();
        await writeFileAtomic(responses, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
      }
      await runPipeline(sub, ['eval']);
      addBaselines(baselineRows(dir));
      const ev = readJson<{ results: EvalResult[] }>(dir, FILES.eval).results;
      if (baseline.length === 0) baseline = ev.filter((r) => r.condition === 'baseline');
    } catch (e) {
      // A draw where no candidate passes is a finding about the draw, not a failure of the study.
      if (!(e instanceof ScalpelError) || !/^select: no candidate passes/.test(e.message)) throw e;
      note = e.message;
    }
    const rec = drawRecord(d, seed, dir);
    if (note) rec.note = note;
    else directions.push((await readTensors(dir, FILES.vector)).get('direction')!);
    draws.push(rec);
    const elapsed = (performance.now() - t0) / 1000;
    const eta = (elapsed / (d + 1)) * (req.draws - d - 1);
    log(
      `${tag}: site ${rec.site ? `${rec.site.position}/${rec.site.layer}` : 'none'} (${rec.seconds}s of stages); ${Math.round(elapsed)}s elapsed, ETA ${Math.round(eta)}s`,
    );
    const doc: StudyJson = {
      study,
      draws_requested: req.draws,
      resampling: `each draw samples n_train training and n_val validation prompts without replacement from the run's sets, seed = ${base.seed} + draw (draw 0 is the run's own sample); not a bootstrap`,
      settings: {
        n_train: base.nTrain,
        n_val: base.nVal,
        val_draws: base.valDraws,
        seed: base.seed,
        lambda: base.lambda,
        ablation: base.ablation,
      },
      eval_datasets: evalDatasets,
      baseline,
      draws,
      spread: summarise(draws, baseline, directions),
    };
    // Read again before writing: another study may have finished a draw into the same file meanwhile.
    const others = (readStability(o.runDir)?.studies ?? []).filter((s) => s.study !== study);
    out = { format: STABILITY_FORMAT, model_fingerprint: req.run.model.fingerprint, studies: [...others, doc] };
    await writeJson(o.runDir, FILES.stability, out);
  }
  return out!;
}

const pts = (x: number) => (100 * x).toFixed(1);

/** "seed S: position/layer" for each draw of a study (the CLI's summary and the report's section). */
export function drawSites(s: StudyJson): string[] {
  return s.draws.map((d) => `seed ${d.seed}: ${d.site ? `${d.site.position}/${d.site.layer}` : 'none'}`);
}

/**
 * The spread table's rows: per dataset the gain's mean, min, max, max − min and sd in points, then the pooled
 * held-out harmful refusal (%) under `pooledLabel` when the study has it.
 */
export function spreadRows(s: StudyJson, pooledLabel: string): string[][] {
  const row = (label: string, g: Spread) => [label, pts(g.mean), pts(g.min), pts(g.max), pts(g.range), pts(g.sd)];
  const rows = Object.entries(s.spread.gain).map(([ds, g]) => row(ds, g));
  const h = s.spread.held_out_harmful_refusal;
  if (h) rows.push(row(pooledLabel, h));
  return rows;
}
