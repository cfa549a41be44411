// Conditional ablation (beyond the paper, in the spirit of CAST): a harmfulness gate that decides, once per
// sequence at the end of its prefill, whether the run's edit applies. The gate is a logistic-regression probe on
// the residual stream (a block input, averaged over the last m post-instruction tokens), fitted on training
// activations of harmful vs pseudo-harmful prompts from several sources (gate-data.ts); its layer, m, L2 strength
// and threshold are chosen on validation rows only: the threshold keeps at least FLAGGED of every harmful
// validation source flagged, and the candidate that then clears the most pseudo-harmful validation prompts wins.
// The engine does the per-sequence switching (scheduler.ts SequenceGate); this module fits, stores and loads it.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { SequenceGate } from '../engine/scheduler.js';
import { hookName } from '../engine/types.js';
import { ScalpelError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import type { Backend } from './backend.js';
import { slice } from './candidates.js';
import { scoreAndCapture } from './extract.js';
import { type ConsideredSource, type GateData, type GateSet, loadGateData } from './gate-data.js';
import { dot, norm } from './math.js';
import { fitLogistic, type LinearProbe, probeScore, rocAuc } from './probe.js';
import { loadCandidates } from './candidates.js';
import { f32Tensor, readJson, readTensors, writeJson, writeTensors } from './rundir.js';
import type { StageProgress } from './stage.js';

export const GATE_FILES = {
  json: 'gate.json',
  tensors: 'gate.safetensors',
  /** The last gated evaluation (`eval --gate`): results and responses, in eval.json's and responses.jsonl's shapes. */
  eval: 'gate-eval.json',
  responses: 'gate-responses.jsonl',
} as const;
export const GATE_FORMAT = 'scalpel-gate/1';

/** Default share of every harmful validation source the threshold keeps flagged (the edit is not applied there). */
export const DEFAULT_FLAGGED = 0.95;
const L2_GRID = [1e-3, 1e-2, 1e-1];

/**
 * The parts of the fit a source's rows decide: its training rows the probe's weights (probe); its validation rows the
 * threshold (harmful sources) or, under that threshold, which candidate layer, positions and L2 wins (pseudo-harmful).
 */
export type GateStage = 'probe' | 'threshold' | 'choice';
const STAGES: Record<ConsideredSource['class'], GateStage[]> = {
  harmful: ['probe', 'threshold'],
  pseudo: ['probe', 'choice'],
};

export interface GateJson {
  format: string;
  model_fingerprint: string;
  /** Block input the probe reads: blocks.{layer}.hook_resid_pre, mean of the last `positions` prompt tokens. */
  layer: number;
  positions: number;
  point: string;
  l2: number;
  bias: number;
  /** score = weight · mean + bias (log-odds of harmful); the edit applies when score < threshold. */
  threshold: number;
  flagged_target: number;
  seed: number;
  sources: {
    harmful: { label: string; train: number; val: number; dropped: number; val_flagged: number }[];
    pseudo: { label: string; train: number; val: number; dropped: number; val_cleared: number }[];
    missing: string[];
    /** Every source the gate read or looked for, fitted, missing or left empty, and what its rows fitted. */
    considered: (ConsideredSource & { stages: GateStage[] })[];
  };
  /** Validation figures of every candidate (layer, positions, l2). */
  candidates: { layer: number; positions: number; l2: number; val_cleared: number; val_auc: number }[];
  /** cos(gate weight, r) at the chosen layer and the last post-instruction position: how far from the refusal direction. */
  cos_refusal_direction?: number;
}

export interface FitGateOptions {
  backend: Backend;
  runDir: string;
  fingerprint: string;
  dataDir?: string;
  seed: number;
  flagged?: number;
  /** Rows of the run's own evaluation sets: kept out of the gate's data too. */
  evalRows?: string[][];
  progress: (label: string, total: number) => StageProgress;
  log: (line: string) => void;
}

/** Per prompt: feature vectors by [layer][m index], each the mean block input over the last m prompt tokens. */
type Features = Float32Array[][];

function mValues(k: number): number[] {
  return [...new Set([1, 2, 4, k].filter((m) => m <= k))];
}

async function capture(b: Backend, prompts: string[], k: number, ms: number[], p: StageProgress): Promise<Features[]> {
  const L = b.numLayers;
  const d = b.width;
  const out: Features[] = new Array(prompts.length);
  await scoreAndCapture(
    b,
    prompts.map((q) => b.encodePrompt(q)),
    k,
    [0],
    (i, _score, row) => {
      out[i] = Array.from({ length: L }, (_, l) =>
        ms.map((m) => {
          const f = new Float32Array(d);
          for (let pos = k - m; pos < k; pos++) {
            const src = slice(row, pos, l, L, d);
            for (let j = 0; j < d; j++) f[j]! += src[j]! / m;
          }
          return f;
        }),
      );
    },
    p.cb,
  );
  return out;
}

/** A probe fitted on standardised features, folded back to raw block-input units. */
function fitRaw(rows: Float32Array[], labels: number[], weights: number[], l2s: readonly number[]): LinearProbe[] {
  const d = rows[0]!.length;
  const mu = new Float64Array(d);
  const sd = new Float64Array(d);
  for (const r of rows) for (let j = 0; j < d; j++) mu[j]! += r[j]! / rows.length;
  for (const r of rows) for (let j = 0; j < d; j++) sd[j]! += (r[j]! - mu[j]!) ** 2 / rows.length;
  for (let j = 0; j < d; j++) sd[j] = Math.sqrt(sd[j]!) || 1;
  const z = rows.map((r) => Float64Array.from(r, (x, j) => (x - mu[j]!) / sd[j]!));
  // From the strongest penalty down, each fit starting at the last one's solution (a few Newton steps each).
  const out: LinearProbe[] = [];
  let start: LinearProbe | undefined;
  for (const l2 of [...l2s].sort((a, b) => b - a)) {
    const p = fitLogistic(z, labels, { l2, rowWeights: weights, maxIterations: 30, tolerance: 1e-7, start });
    start = p;
    const w = Float64Array.from(p.weights, (x, j) => x / sd[j]!);
    out[l2s.indexOf(l2)] = { weights: w, bias: p.bias - dot(w, mu) };
  }
  return out;
}

/** The highest threshold that keeps at least `share` of every harmful source's scores at or above it. */
export function flaggingThreshold(harmfulScores: number[][], share: number): number {
  return Math.min(
    ...harmfulScores.map((s) => {
      const sorted = [...s].sort((a, b) => a - b);
      return sorted[Math.floor((1 - share) * sorted.length + 1e-9)]!;
    }),
  );
}

const frac = (xs: number[], pred: (x: number) => boolean) => xs.filter(pred).length / xs.length;

/**
 * Fits the gate for a run's model and writes gate.json and gate.safetensors into the run directory. Returns what
 * gate.json holds.
 */
export async function fitGate(o: FitGateOptions): Promise<GateJson> {
  const b = o.backend;
  const flagged = o.flagged ?? DEFAULT_FLAGGED;
  if (!(flagged > 0 && flagged <= 1)) throw new ScalpelError(`--flagged ${flagged}: expected a share in (0, 1]`);
  const data: GateData = loadGateData(o.dataDir, o.seed, o.evalRows);
  if (data.harmful.length === 0 || data.pseudo.length === 0)
    throw new ScalpelError('gate: no harmful or no pseudo-harmful prompts to learn from (check --data-dir)');
  const k = b.postInstructionTokens().length;
  const ms = mValues(k);
  const sets = [...data.harmful, ...data.pseudo];
  const grab = async (which: 'train' | 'val') => {
    const prompts = sets.flatMap((s) => s[which]);
    const p = o.progress(`reading gate ${which === 'train' ? 'training' : 'validation'} activations`, prompts.length);
    const f = await capture(b, prompts, k, ms, p);
    p.stop();
    // Back into one list per source.
    const out: Features[][] = [];
    let at = 0;
    for (const s of sets) {
      out.push(f.slice(at, at + s[which].length));
      at += s[which].length;
    }
    return out;
  };
  const train = await grab('train');
  const val = await grab('val');
  const nH = data.harmful.length;
  // Each source weighs the same within its class and the classes weigh the same: no one style dominates the fit.
  const labels: number[] = [];
  const weights: number[] = [];
  train.forEach((rows, si) => {
    const harmful = si < nH;
    const classSources = harmful ? nH : sets.length - nH;
    for (let i = 0; i < rows.length; i++) {
      labels.push(harmful ? 1 : 0);
      weights.push(1 / (classSources * rows.length));
    }
  });

  const L = b.numLayers;
  const candidates: GateJson['candidates'] = [];
  let best: { layer: number; mi: number; l2: number; probe: LinearProbe; cleared: number; auc: number } | undefined;
  const p = o.progress('fitting gate probes', (L - 1) * ms.length * L2_GRID.length);
  // Layer 0's block input is the token embedding: the same template tokens for every prompt, nothing to read.
  for (let layer = 1; layer < L; layer++)
    for (const [mi, m] of ms.entries()) {
      const rows = train.flatMap((src) => src.map((f) => f[layer]![mi]!));
      const probes = fitRaw(rows, labels, weights, L2_GRID);
      for (const [li, l2] of L2_GRID.entries()) {
        const probe = probes[li]!;
        const scores = val.map((src) => src.map((f) => probeScore(probe, f[layer]![mi]!)));
        const t = flaggingThreshold(scores.slice(0, nH), flagged);
        const pseudoScores = scores.slice(nH);
        const cleared = pseudoScores.reduce((a, s) => a + frac(s, (x) => x < t), 0) / pseudoScores.length;
        const auc = rocAuc(scores.slice(0, nH).flat(), pseudoScores.flat());
        candidates.push({ layer, positions: m, l2, val_cleared: cleared, val_auc: auc });
        if (!best || cleared > best.cleared + 1e-12 || (Math.abs(cleared - best.cleared) <= 1e-12 && auc > best.auc))
          best = { layer, mi, l2, probe, cleared, auc };
        p.bump();
      }
    }
  p.stop();
  const chosen = best!;
  const probe = chosen.probe;
  const scoreOf = (f: Features) => probeScore(probe, f[chosen.layer]![chosen.mi]!);
  const valScores = val.map((src) => src.map(scoreOf));
  const threshold = flaggingThreshold(valScores.slice(0, nH), flagged);
  const record = (s: GateSet) => ({ label: s.label, train: s.train.length, val: s.val.length, dropped: s.dropped });
  const json: GateJson = {
    format: GATE_FORMAT,
    model_fingerprint: o.fingerprint,
    layer: chosen.layer,
    positions: ms[chosen.mi]!,
    point: hookName(chosen.layer, 'hook_resid_pre'),
    l2: chosen.l2,
    bias: probe.bias,
    threshold,
    flagged_target: flagged,
    seed: o.seed,
    sources: {
      harmful: data.harmful.map((s, i) => ({ ...record(s), val_flagged: frac(valScores[i]!, (x) => x >= threshold) })),
      pseudo: data.pseudo.map((s, i) => ({
        ...record(s),
        val_cleared: frac(valScores[nH + i]!, (x) => x < threshold),
      })),
      missing: data.missing,
      considered: data.considered.map((s) => ({ ...s, stages: s.status === 'fitted' ? STAGES[s.class] : [] })),
    },
    candidates,
  };
  if (existsSync(join(o.runDir, 'candidates.safetensors'))) {
    const c = await loadCandidates(o.runDir);
    const r = slice(c.r, c.k - 1, chosen.layer, c.L, c.d);
    json.cos_refusal_direction = dot(probe.weights, r) / (norm(probe.weights) * norm(r));
  }
  // The weights first, then gate.json: a gate.json always has its tensors beside it.
  await writeTensors(o.runDir, GATE_FILES.tensors, [f32Tensor('gate_weight', [b.width], probe.weights)], {
    format: GATE_FORMAT,
  });
  await writeJson(o.runDir, GATE_FILES.json, json);
  return json;
}

/** A run's gate as the engine's SequenceGate: the edit applies where the probe's score is below the threshold. */
export async function loadGate(
  runDir: string,
  width: number,
  fingerprint?: string,
): Promise<{ gate: SequenceGate; json: GateJson }> {
  if (!existsSync(join(runDir, GATE_FILES.json)) || !existsSync(join(runDir, GATE_FILES.tensors)))
    throw new ScalpelError(`${runDir}: no gate (gate.json); run \`scalpel gate --run ${runDir}\` first`);
  const json = readJson<GateJson>(runDir, GATE_FILES.json);
  const file = join(runDir, GATE_FILES.json);
  if (json.format !== GATE_FORMAT) throw new ScalpelError(`${file}: field format is not "${GATE_FORMAT}"`);
  if (fingerprint !== undefined && json.model_fingerprint !== fingerprint)
    throw new ScalpelError(
      `${file}: the gate was fitted on another model (fingerprint ${String(json.model_fingerprint)}); rerun \`scalpel gate\``,
    );
  for (const f of ['layer', 'positions', 'bias', 'threshold'] as const)
    if (typeof json[f] !== 'number' || !Number.isFinite(json[f]))
      throw new ScalpelError(`${file}: field ${f} is not a number; rerun \`scalpel gate\``);
  if (!Number.isInteger(json.positions) || json.positions < 1)
    throw new ScalpelError(`${file}: field positions is not a positive integer; rerun \`scalpel gate\``);
  const w = (await readTensors(runDir, GATE_FILES.tensors)).get('gate_weight');
  if (!w || w.length !== width)
    throw new ScalpelError(
      `${join(runDir, GATE_FILES.tensors)}: expected a tensor gate_weight of ${width} values (the model's width)`,
    );
  const weights = Float64Array.from(w);
  const { positions, bias, threshold } = json;
  const gate: SequenceGate = {
    point: hookName(json.layer, 'hook_resid_pre'),
    decide(act, ctx) {
      // One sequence's prefill block, [1, seq, width]: the mean of its last `positions` rows.
      const m = Math.min(positions, ctx.seq);
      let score = bias;
      for (let row = ctx.seq - m; row < ctx.seq; row++) {
        const o = row * ctx.width;
        let s = 0;
        for (let j = 0; j < ctx.width; j++) s += weights[j]! * act[o + j]!;
        score += s / m;
      }
      return { apply: score < threshold, score };
    },
  };
  return { gate, json };
}

/** Writes a gated evaluation's results and responses beside the run's own (atomically, rows first). */
export async function writeGateEvalFiles(runDir: string, results: unknown[], rows: unknown[]): Promise<void> {
  await writeFileAtomic(join(runDir, GATE_FILES.responses), `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
  await writeJson(runDir, GATE_FILES.eval, { results });
}
