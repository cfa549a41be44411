// A Hugging Face model directory: config.json, weights (model.safetensors, or model.safetensors.index.json + shards),
// generation_config.json, tokenizer files. Everything is validated here so that later stages can trust it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Tensor } from '../tensor.js';
import { ScalpelError } from '../errors.js';
import { readJsonFile } from '../io/json.js';
import { readSafetensors, readSafetensorsHeader, type SafetensorsEntry } from '../io/safetensors.js';

export { readJsonFile };

export interface ModelFiles {
  dir: string;
  /** config.json as parsed, unvalidated beyond being a JSON object (the architecture module reads it). */
  config: Record<string, unknown>;
  /** generation_config.json, or null when the directory has none. */
  generationConfig: Record<string, unknown> | null;
  /** Every tensor of the checkpoint, in its stored dtype. */
  tensors: Map<string, Tensor>;
  /** Tensor name → the file it came from (for error messages). */
  tensorFiles: Map<string, string>;
  /** Where tokenizer.json / tokenizer_config.json live (the model directory itself). */
  tokenizerDir: string;
}

export interface ReadModelDirOptions {
  /** Load only the tensors for which this returns true (default: all). */
  filter?: (name: string) => boolean;
  /** Told after each tensor how many weight bytes have been read so far, and the total to read. */
  onProgress?: (bytesRead: number, bytesTotal: number) => void;
}

/** Files that hold weights in some format (safetensors, PyTorch pickles, GGUF). */
export const WEIGHT_FILE = /\.(safetensors|bin|pt|pth|gguf)$/;

const SINGLE = 'model.safetensors';
const INDEX = 'model.safetensors.index.json';

function checkDir(dir: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new ScalpelError(`${dir}: model directory does not exist`);
  }
  if (!st.isDirectory()) throw new ScalpelError(`${dir}: expected a model directory, found a file`);
}

/** The weight files of a model directory, each listed once, and (for sharded models) the index's tensor → shard map. */
export function findWeightFiles(dir: string): { files: string[]; weightMap: Map<string, string> | null } {
  // transformers looks for the single file first, then the index.
  const single = path.join(dir, SINGLE);
  if (fs.existsSync(single)) return { files: [single], weightMap: null };
  const indexPath = path.join(dir, INDEX);
  if (fs.existsSync(indexPath)) {
    const index = readJsonFile(indexPath);
    const wm = index['weight_map'];
    if (wm === null || typeof wm !== 'object' || Array.isArray(wm))
      throw new ScalpelError(`${indexPath}: field weight_map is missing or not an object`);
    const weightMap = new Map<string, string>();
    const files: string[] = [];
    for (const [name, shard] of Object.entries(wm as Record<string, unknown>)) {
      if (
        typeof shard !== 'string' ||
        shard.length === 0 ||
        path.isAbsolute(shard) ||
        shard.split(/[\\/]/).includes('..')
      ) {
        throw new ScalpelError(`${indexPath}: weight_map['${name}'] is not a shard file name inside the directory`);
      }
      const shardPath = path.join(dir, shard);
      if (!files.includes(shardPath)) {
        if (!fs.existsSync(shardPath))
          throw new ScalpelError(`${indexPath}: weight_map names shard ${shard}, which does not exist in ${dir}`);
        files.push(shardPath);
      }
      weightMap.set(name, shardPath);
    }
    if (files.length === 0)
      throw new ScalpelError(`${indexPath}: weight_map is empty, expected tensor name → shard file`);
    return { files, weightMap };
  }
  const others = fs.readdirSync(dir).filter((f) => WEIGHT_FILE.test(f));
  const hint =
    others.length > 0
      ? ` (found ${others.slice(0, 3).join(', ')}${others.length > 3 ? ', …' : ''}; Scalpel reads Hugging Face safetensors checkpoints)`
      : '';
  throw new ScalpelError(`${dir}: no weights found, expected ${SINGLE} or ${INDEX}${hint}`);
}

/** Lists every tensor (name, dtype, shape, file) of a model directory from the safetensors headers, reading no data. */
export async function listModelTensors(dir: string): Promise<Map<string, SafetensorsEntry & { file: string }>> {
  checkDir(dir);
  const { files } = findWeightFiles(dir);
  const out = new Map<string, SafetensorsEntry & { file: string }>();
  for (const file of files) {
    for (const [name, e] of (await readSafetensorsHeader(file)).entries) out.set(name, { ...e, file });
  }
  return out;
}

/**
 * Reads and validates a model directory: config.json (required), generation_config.json (optional) and all weights.
 * Shards are read once each; every tensor the index names must be in its shard, and no tensor may appear twice.
 */
export async function readModelDir(dir: string, opts: ReadModelDirOptions = {}): Promise<ModelFiles> {
  checkDir(dir);
  const configPath = path.join(dir, 'config.json');
  if (!fs.existsSync(configPath))
    throw new ScalpelError(`${configPath}: file is missing, expected a Hugging Face model directory with config.json`);
  const config = readJsonFile(configPath);
  const generationConfig = readJsonFile(path.join(dir, 'generation_config.json'), true);
  const { files, weightMap } = findWeightFiles(dir);

  // Validate every header first, so a bad shard fails before gigabytes are read.
  const headers = [];
  for (const file of files) headers.push(await readSafetensorsHeader(file));
  const owner = new Map<string, string>();
  for (const h of headers) {
    for (const name of h.entries.keys()) {
      const other = owner.get(name);
      if (other !== undefined)
        throw new ScalpelError(
          `${h.path}: tensor '${name}' is also in ${path.basename(other)}, expected each tensor once`,
        );
      owner.set(name, h.path);
    }
  }
  if (weightMap) {
    for (const [name, shard] of weightMap) {
      const found = owner.get(name);
      if (found !== shard) {
        throw new ScalpelError(
          `${path.join(dir, INDEX)}: weight_map puts tensor '${name}' in ${path.basename(shard)}, but ${found ? `it is in ${path.basename(found)}` : 'it is not in that shard'}`,
        );
      }
    }
  }

  const wanted = (name: string): boolean => !opts.filter || opts.filter(name);
  let total = 0;
  for (const h of headers) for (const e of h.entries.values()) if (wanted(e.name)) total += e.end - e.begin;
  let before = 0;
  const tensors = new Map<string, Tensor>();
  const tensorFiles = new Map<string, string>();
  for (const h of headers) {
    const got = await readSafetensors(h.path, {
      filter: (name) => wanted(name),
      onProgress: opts.onProgress ? (done) => opts.onProgress!(before + done, total) : undefined,
    });
    for (const [name, t] of got) {
      tensors.set(name, t);
      tensorFiles.set(name, h.path);
      before += t.data.byteLength;
    }
  }
  return { dir, config, generationConfig, tensors, tensorFiles, tokenizerDir: dir };
}
