// A Hugging Face model directory → a runnable model with its tokenizer, chat template and EOS ids.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findArchitecture, parseConfig } from '../arch/index.js';
import { Model } from '../engine/model.js';
import { buildWeights } from '../engine/weights.js';
import type { Kernels } from '../engine/types.js';
import { ChatTemplate } from '../tokenizer/chat.js';
import { TextTokenizer } from '../tokenizer/tokenizer.js';
import { readJsonFile } from '../io/json.js';
import { readModelDir, type ModelFiles, type ReadModelDirOptions } from './files.js';
import { checkMemory } from './memory.js';

export interface LoadedModel {
  dir: string;
  model: Model;
  tokenizer: TextTokenizer;
  /** The chat template, or null when the model has none. */
  chat: ChatTemplate | null;
  /** Generation stops at these: generation_config.json's eos_token_id, else config.json's, else the tokenizer's. */
  eosTokenIds: number[];
}

export interface LoadModelOptions {
  /** Told while weights are read. */
  onProgress?: ReadModelDirOptions['onProgress'];
  /** Kernels to run on (default: the process-wide choice, native when available). */
  kernels?: Kernels;
}

function idList(v: unknown): number[] | null {
  if (typeof v === 'number' && Number.isInteger(v)) return [v];
  if (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number' && Number.isInteger(x)))
    return v as number[];
  return null;
}

/** The model alone (config.json and weights, no tokenizer): what engine tests and benchmarks need. */
export async function loadEngineModel(dir: string, opts: LoadModelOptions = {}): Promise<Model> {
  const configPath = path.join(dir, 'config.json');
  if (fs.existsSync(configPath)) {
    // Fail before reading weights: an unsupported architecture, or not enough memory for them.
    checkMemory(dir, parseConfig(readJsonFile(configPath), configPath).args);
  }
  return (await readModel(dir, opts)).model;
}

/** Loads config, weights (stored dtype, views into the files' buffers), tokenizer and chat template. */
export async function loadModel(dir: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  // Config and tokenizer first, so that an unsupported architecture or a bad tokenizer fails before gigabytes of
  // weights are read (a missing config.json or directory is reported by readModelDir).
  const configPath = path.join(dir, 'config.json');
  let early: { tokenizer: TextTokenizer; chat: ChatTemplate | null } | undefined;
  if (fs.existsSync(configPath)) {
    checkMemory(dir, parseConfig(readJsonFile(configPath), configPath).args);
    early = { tokenizer: TextTokenizer.load(dir), chat: ChatTemplate.load(dir) };
  }
  const { model, files } = await readModel(dir, opts);
  const { tokenizer, chat } = early ?? {
    tokenizer: TextTokenizer.load(files.tokenizerDir),
    chat: ChatTemplate.load(files.tokenizerDir),
  };
  const textConfig = files.config['text_config'] as Record<string, unknown> | undefined;
  const eosTokenIds =
    idList(files.generationConfig?.['eos_token_id']) ??
    idList(files.config['eos_token_id']) ??
    idList(textConfig?.['eos_token_id']) ??
    (tokenizer.eosTokenId !== null ? [tokenizer.eosTokenId] : []);
  return { dir, model, tokenizer, chat, eosTokenIds };
}

/** config.json → architecture → only the tensors it uses, read and mapped to the engine's weights. */
async function readModel(dir: string, opts: LoadModelOptions): Promise<{ model: Model; files: ModelFiles }> {
  const configPath = path.join(dir, 'config.json');
  const config = fs.existsSync(configPath) ? readJsonFile(configPath) : null;
  const filter = config ? findArchitecture(config, configPath).keep : undefined;
  const files = await readModelDir(dir, { onProgress: opts.onProgress, filter });
  const { arch, args } = parseConfig(files.config, configPath);
  const tensors = arch.sanitize ? arch.sanitize(files.tensors, args) : files.tensors;
  const weights = buildWeights({ dir: files.dir, tensors, tensorFiles: files.tensorFiles }, args);
  return { model: new Model(args, weights, files.config, opts.kernels), files };
}
