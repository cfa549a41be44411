// The run directory: run.json, candidates.safetensors, selection.json, vector.safetensors, eval.json,
// responses.jsonl. Every file is written atomically (temp file + rename).
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { ScalpelError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { findWeightFiles } from '../model/files.js';
import type { Tensor } from '../tensor.js';

export const RUN_FORMAT = 'scalpel-run/1';
export const FILES = {
  run: 'run.json',
  candidates: 'candidates.safetensors',
  selection: 'selection.json',
  vector: 'vector.safetensors',
  eval: 'eval.json',
  responses: 'responses.jsonl',
  sweep: 'sweep.json',
  sweepResponses: 'sweep-responses.jsonl',
  ability: 'ability.json',
  abilityItems: 'ability-items.jsonl',
  judge: 'judge.json',
  judgeCache: 'judge-cache.jsonl',
  pareto: 'pareto.json',
  stability: 'stability.json',
} as const;

export interface StageRecord {
  key: string;
  seconds: number;
  forward_passes: number;
  prompt_prefills: number;
  decode_steps: number;
  /** Batched forward calls of the model (each reads the weights once); absent in runs made before it was counted. */
  model_forward_calls?: number;
  finished_at: string;
}

export interface RunJson {
  format: string;
  model: {
    dir: string;
    fingerprint: string;
    /** The Hub repository and commit, when dir is a snapshot in the Hugging Face cache. */
    hub?: { repo: string; revision: string; commit: string };
    num_layers?: number;
    width?: number;
    vocab_size?: number;
  };
  config: Record<string, unknown>;
  seeds: { sample: number; rng: string };
  post_instruction_tokens?: { ids: number[]; text: string[] };
  refusal_tokens?: {
    rule: string;
    ids: number[];
    text: string[];
    first_token_counts?: Record<string, number>;
    first_token_counts_pseudo?: Record<string, number>;
    refusals_found?: number;
    probed?: number;
  };
  data?: Record<string, { ref: string; source: string; available: number; sampled: number; kept?: number }>;
  stages: Partial<Record<'extract' | 'select' | 'eval', StageRecord>>;
  [key: string]: unknown;
}

/** One candidate's scores in selection.json (null: not measured, because an earlier rule rejected it). */
export interface SelectionRow {
  position: number;
  layer: number;
  refusal_score: number | null;
  kl: number | null;
  harmful_score: number | null;
  steering_score?: number | null;
  rejected: string | null;
}

export interface Chosen {
  position: number;
  layer: number;
  /** Index of the position among the post-instruction tokens (0 = first). */
  position_index: number;
  refusal_score: number | null;
  kl: number | null;
  harmful_score: number | null;
}

/** selection.json: written by the select stage, read by everything that applies a run's intervention. */
export interface SelectionJson {
  target: 'false' | 'true';
  lambda: number;
  ablation: string;
  /** Ablation strength of the chosen edit, when not 1 or chosen by a pareto search. */
  strength?: number;
  rules: Record<string, unknown>;
  baseline: { pseudo_val_score: number | null; harmful_val_score: number | null; harmless_val_score: number | null };
  candidates: SelectionRow[];
  chosen: Chosen | null;
  actadd?: { alpha: number; kl_threshold: number; candidates: SelectionRow[]; chosen: Chosen | null };
}

/**
 * A model's identity for "is this RUN from this model?": config.json's bytes, the weight files' names and sizes, and
 * 64 KiB sampled from each weight file (cheap even for large models).
 */
export function modelFingerprint(dir: string): string {
  const h = createHash('sha256');
  const cfg = join(dir, 'config.json');
  if (!existsSync(cfg))
    throw new ScalpelError(`${cfg}: file is missing, expected a Hugging Face model directory with config.json`);
  h.update(readFileSync(cfg));
  for (const f of findWeightFiles(dir).files.slice().sort()) {
    const size = statSync(f).size;
    h.update(`\n${basename(f)}:${size}\n`);
    // 16 samples of 4 KiB spread over the file (header included): retrained weights of the same shapes differ here.
    const fd = openSync(f, 'r');
    try {
      const buf = Buffer.alloc(4096);
      for (let i = 0; i < 16; i++) {
        const at = Math.floor(((size - buf.length) * i) / 15);
        const n = readSync(fd, buf, 0, buf.length, Math.max(0, at));
        h.update(buf.subarray(0, n));
      }
    } finally {
      closeSync(fd);
    }
  }
  return h.digest('hex').slice(0, 16);
}

export function readRunJson(runDir: string): RunJson | null {
  const p = join(runDir, FILES.run);
  if (!existsSync(p)) return null;
  let j: unknown;
  try {
    j = JSON.parse(readFileSync(p, 'utf8'));
  } catch (e) {
    throw new ScalpelError(`${p}: not valid JSON (${(e as Error).message})`);
  }
  if (!j || typeof j !== 'object' || (j as RunJson).format !== RUN_FORMAT)
    throw new ScalpelError(`${p}: not a Scalpel run (expected format ${RUN_FORMAT})`);
  return j as RunJson;
}

/** run.json of a run that a command continues or applies: its absence is the user's to fix, so it says how. */
export function requireRunJson(runDir: string): RunJson {
  const run = readRunJson(runDir);
  if (!run) throw new ScalpelError(`${join(runDir, FILES.run)}: missing; make the run with \`scalpel run\` first`);
  return run;
}

/** Throws unless `runDir`'s run.json was made with the model of this fingerprint. */
export function checkSameModel(run: RunJson, runDir: string, modelDir: string, fingerprint: string): void {
  if (run.model.fingerprint !== fingerprint) {
    throw new ScalpelError(
      `${join(runDir, FILES.run)}: RUN was made with a different model (${run.model.dir}, fingerprint ${run.model.fingerprint}); ${resolve(modelDir)} has fingerprint ${fingerprint}`,
    );
  }
}

export async function writeJson(runDir: string, file: string, value: unknown): Promise<void> {
  await writeFileAtomic(join(runDir, file), `${JSON.stringify(value, null, 2)}\n`);
}

/** A JSON file of the run directory; every one of them holds an object (anything else is a damaged file). */
export function readJson<T>(runDir: string, file: string): T {
  const p = join(runDir, file);
  if (!existsSync(p)) throw new ScalpelError(`${p}: missing; run the stage that makes it first`);
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(p, 'utf8'));
  } catch (e) {
    throw new ScalpelError(`${p}: not valid JSON (${(e as Error).message})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new ScalpelError(`${p}: expected a JSON object; the file is damaged (rerun the stage that makes it)`);
  return value as T;
}

export function f32Tensor(name: string, shape: number[], data: ArrayLike<number>): Tensor {
  return { name, dtype: 'f32', shape, data: data instanceof Float32Array ? data : Float32Array.from(data) };
}

export async function writeTensors(
  runDir: string,
  file: string,
  tensors: Tensor[],
  metadata: Record<string, string>,
): Promise<void> {
  await writeSafetensors(join(runDir, file), tensors, metadata);
}

export async function readTensors(runDir: string, file: string): Promise<Map<string, Float32Array>> {
  const p = join(runDir, file);
  if (!existsSync(p)) throw new ScalpelError(`${p}: missing; run the stage that makes it first`);
  const m = await readSafetensors(p);
  const out = new Map<string, Float32Array>();
  for (const [k, t] of m) {
    if (t.dtype !== 'f32') throw new ScalpelError(`${p}: tensor '${k}' is ${t.dtype}, expected f32`);
    out.set(k, t.data as Float32Array);
  }
  return out;
}
