// A Hugging Face model directory → one GGUF file for llama.cpp, streamed tensor by tensor (one tensor in memory at
// a time): llama.cpp's names and row order and the extra tensors it needs (llamacpp.ts), the tokenizer and chat
// template as metadata (llamacpp-vocab.ts), each matrix in the chosen storage type (f32 / f16 / bf16, or ggml's
// Q8_0 blocks) and every vector (norms, biases) in f32, as llama.cpp's own converter writes them. An optional
// `edit` changes tensors on the way (the bake uses it); nothing here knows what the edit is.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseConfig } from '../arch/index.js';
import { ScalpelError } from '../errors.js';
import type { Tensor, WeightDType } from '../tensor.js';
import { fromFloat32, toFloat32 } from '../io/dtype.js';
import { Q8_0_BLOCK, quantizeQ8_0 } from '../io/ggml-quant.js';
import {
  gguf,
  LLAMA_FILE_TYPES,
  writeGgufStreaming,
  type GgmlType,
  type GgufTensor,
  type GgufTensorSpec,
  type GgufValue,
} from '../io/gguf.js';
import { readJsonFile } from '../io/json.js';
import { openSafetensors, type SafetensorsEntry, type SafetensorsFile } from '../io/safetensors.js';
import { listModelTensors } from './files.js';
import { llamaCppLayout, llamaCppRows, llamaCppTensorName } from './llamacpp.js';
import { llamaCppVocab } from './llamacpp-vocab.js';

export const GGUF_DTYPES = ['f32', 'f16', 'bf16'] as const;
export const GGUF_QUANTS = ['q8_0'] as const;
export type GgufQuant = (typeof GGUF_QUANTS)[number];

const EMBED = 'model.embed_tokens.weight';
const HEAD = 'lm_head.weight';

export interface ModelGgufOptions {
  /** Storage of the matrices (default: the embedding's dtype in the checkpoint). */
  dtype?: WeightDType;
  /** Q8_0 for every matrix whose rows are a multiple of 32 values (the others keep `dtype`, f16 for f32). */
  quant?: GgufQuant;
  /** Changes a checkpoint tensor (by its Hugging Face name) before it is written; returns it unchanged otherwise. */
  edit?: (t: Tensor) => Tensor;
  /** Write a tied output head as its own output.weight from the unedited embedding (when `edit` changes the embedding). */
  untieHead?: boolean;
  /** More metadata (after the model's own). */
  metadata?: Array<[string, GgufValue]>;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

export interface ModelGgufResult {
  /** llama.cpp architecture written. */
  arch: string;
  /** Checkpoint tensors `edit` changed. */
  changed: string[];
  /** True when a tied head was written as output.weight. */
  untied: boolean;
  /** Token strings by id (for stop tokens). */
  tokens: string[];
  /** generation_config.json's (else config.json's) eos ids. */
  eosTokenIds: number[];
  /** What llama.cpp will do differently from Scalpel, one sentence each. */
  notes: string[];
}

/** The storage type of one tensor. */
function storageOf(shape: readonly number[], dtype: WeightDType, quant: GgufQuant | undefined): GgmlType {
  if (shape.length < 2) return 'f32';
  if (quant === 'q8_0') return (shape.at(-1) ?? 0) % Q8_0_BLOCK === 0 ? 'q8_0' : dtype === 'f32' ? 'f16' : dtype;
  return dtype;
}

/** A tensor's values in the storage type (no copy when it already is). */
function encode(t: Tensor, type: GgmlType): GgufTensor['data'] {
  if (type === t.dtype) return t.data;
  const values = toFloat32(t);
  return type === 'q8_0' ? quantizeQ8_0(values) : fromFloat32(values, type);
}

function eosIds(modelDir: string, config: Record<string, unknown>): number[] {
  const gen = readJsonFile(path.join(modelDir, 'generation_config.json'), true);
  for (const v of [gen?.['eos_token_id'], config['eos_token_id']]) {
    if (typeof v === 'number') return [v];
    if (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number')) return v as number[];
  }
  return [];
}

/** Writes `modelDir` (safetensors, any shards) as the GGUF file `outFile` (atomically; it must not exist). */
export async function writeModelGguf(
  modelDir: string,
  outFile: string,
  o: ModelGgufOptions = {},
): Promise<ModelGgufResult> {
  const configPath = path.join(modelDir, 'config.json');
  if (!fs.existsSync(configPath))
    throw new ScalpelError(`${configPath}: file is missing, expected a Hugging Face model directory with config.json`);
  const config = readJsonFile(configPath);
  const { args } = parseConfig(config, configPath);
  if (fs.existsSync(outFile)) throw new ScalpelError(`${outFile}: exists; choose a new file name for the GGUF model`);
  if (!fs.existsSync(path.dirname(path.resolve(outFile))))
    throw new ScalpelError(`${outFile}: folder ${path.dirname(path.resolve(outFile))} does not exist`);

  const entries = await listModelTensors(modelDir);
  const embed = entries.get(EMBED);
  if (!embed) throw new ScalpelError(`${modelDir}: tensor ${EMBED} not found`);
  for (const e of entries.values())
    if (e.dtype === null)
      throw new ScalpelError(
        `${e.file}: tensor '${e.name}' has dtype ${e.storedDtype}; GGUF export reads F32, F16 and BF16 checkpoints`,
      );
  const dtype = o.dtype ?? embed.dtype!;
  const untied = o.untieHead === true && args.tieEmbeddings && !entries.has(HEAD);
  const layout = llamaCppLayout(config, args);
  const eosTokenIds = eosIds(modelDir, config);
  const vocab = llamaCppVocab(modelDir, args.vocabSize, eosTokenIds);

  // Checkpoint order; a head untied here is read from the original embedding.
  type Source = { spec: GgufTensorSpec; from: SafetensorsEntry & { file: string }; hfName: string };
  const sources: Source[] = [];
  for (const [name, e] of entries) {
    const gname = llamaCppTensorName(name);
    if (gname === undefined) continue;
    sources.push({
      spec: { name: gname, dtype: storageOf(e.shape, dtype, o.quant), shape: e.shape },
      from: e,
      hfName: name,
    });
  }
  if (untied)
    sources.push({
      spec: { name: 'output.weight', dtype: storageOf(embed.shape, dtype, o.quant), shape: embed.shape },
      from: embed,
      hfName: HEAD,
    });
  const specs = [...sources.map((s) => s.spec), ...layout.extraTensors];
  const total = sources.reduce((a, s) => a + (s.from.end - s.from.begin), 0);

  const metadata: Array<[string, GgufValue]> = [
    ['general.architecture', gguf.str(layout.arch)],
    ['general.type', gguf.str('model')],
    ['general.name', gguf.str(path.basename(path.resolve(modelDir)))],
    ['general.file_type', gguf.u32(LLAMA_FILE_TYPES[o.quant ?? dtype])],
    ['general.quantization_version', gguf.u32(2)],
    ...layout.metadata,
    ...vocab.metadata,
    ...(o.metadata ?? []),
  ];

  const open = new Map<string, SafetensorsFile>();
  const changed: string[] = [];
  let done = 0;
  try {
    await writeGgufStreaming(outFile, metadata, specs, async (spec, i) => {
      const src = sources[i];
      if (!src) return layout.extraTensors[i - sources.length]!.data;
      let file = open.get(src.from.file);
      if (!file) {
        file = await openSafetensors(src.from.file);
        open.set(src.from.file, file);
      }
      const t = await file.read(src.from.name);
      const edited = src.hfName === HEAD || !o.edit ? t : o.edit(t);
      if (edited !== t) changed.push(src.hfName);
      done += t.data.byteLength;
      o.onProgress?.(Math.min(done, total), total);
      return encode(llamaCppRows({ ...edited, name: src.hfName }, layout.arch, args), spec.dtype);
    });
  } catch (e) {
    if (e instanceof ScalpelError) throw e;
    throw new ScalpelError(`${outFile}: could not write the GGUF model (${(e as Error).message})`);
  } finally {
    for (const f of open.values()) await f.close();
  }
  return {
    arch: layout.arch,
    changed,
    untied,
    tokens: vocab.tokens,
    eosTokenIds,
    notes: [...layout.notes, ...vocab.notes],
  };
}
