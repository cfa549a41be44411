// The bake as a rank-1 LoRA adapter, for engines that apply adapters to an unchanged base model: every
// residual-stream writer W (token embedding, each o_proj and down_proj) becomes W' = W + B·A with B = −ŵ (out × 1)
// and A = ŵᵀW (1 × in), which is exactly W − ŵŵᵀW, the edit `bake` writes into the weights. Two layouts:
// - PEFT (`adapter_config.json` + `adapter_model.safetensors`): r = 1, lora_alpha = 1 (scaling 1); the embedding as
//   PEFT's LoRA embedding (lora_embedding_A [1, vocab] = (E ŵ)ᵀ, lora_embedding_B [width, 1] = −ŵ), which adds
//   its delta to the looked-up row only, so a tied output head keeps reading the original embedding, as after bake.
// - llama.cpp (a GGUF with general.type = adapter): tensors `<llama.cpp name>.lora_a` / `.lora_b`; for token_embd
//   llama.cpp gathers rows of lora_a and multiplies them by the untransposed lora_b, so lora_a is [vocab, 1]. The
//   scale given at load time multiplies B·A (alpha 1 / rank 1), so it is the share of the projection removed.
// Both are refused where the bake is not a LoRA: sandwich norms (the bake's own rule), a bias on a writer (an
// adapter has no bias term) and, for llama.cpp, a tied output head (llama.cpp applies a token_embd adapter to the
// tied output head too, whose shapes it does not fit).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Tensor } from '../tensor.js';
import { ScalpelError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { toFloat32 } from '../io/dtype.js';
import { gguf, writeGguf, type GgufTensor, type GgufValue } from '../io/gguf.js';
import { llamaCppArch, llamaCppTensorName } from '../model/llamacpp.js';
import { openSafetensors, readSafetensorsHeader, writeSafetensors } from '../io/safetensors.js';
import { findWeightFiles } from '../model/files.js';
import { checkOutDir, readBakeableConfig, unitDirection } from './bake.js';

const EMBED = 'model.embed_tokens.weight';
const HEAD = 'lm_head.weight';
const WRITER = /^model\.layers\.(\d+)\.(self_attn\.o_proj|mlp\.down_proj)\.(weight|bias)$/;

/** One edited matrix as a rank-1 update W + b·aᵀ (b over W's output rows, a over its input columns). */
export interface RankOneEdit {
  /** The Hugging Face tensor name (model.embed_tokens.weight, model.layers.N.self_attn.o_proj.weight, …). */
  name: string;
  /** Embeddings are looked up, not multiplied: their "input" is the token id, their output the row. */
  kind: 'linear' | 'embedding';
  /** ŵᵀW for a linear [width, in] (length in); E ŵ for an embedding [vocab, width] (length vocab). */
  a: Float32Array;
  /** −ŵ, over the residual stream (length width). */
  b: Float32Array;
}

export interface RankOneAdapter {
  edits: RankOneEdit[];
  /** config.json's model_type. */
  modelType: string;
  /** The output head is the embedding (tie_word_embeddings and no lm_head.weight in the checkpoint). */
  tiedHead: boolean;
  numLayers: number;
  width: number;
}

/** The rank-1 factors of the bake of `direction` on every residual-stream writer of `modelDir`. */
export async function rankOneAdapter(modelDir: string, direction: ArrayLike<number>): Promise<RankOneAdapter> {
  const { config, args } = readBakeableConfig(modelDir);
  const d = unitDirection(direction, args.width, 'adapter');
  const b = Float32Array.from(d, (v) => -v);
  const { files } = findWeightFiles(modelDir);
  const edits: RankOneEdit[] = [];
  let hasHead = false;
  for (const file of files) {
    const header = await readSafetensorsHeader(file);
    const bias = [...header.entries.keys()].find((n) => WRITER.test(n) && n.endsWith('.bias'));
    if (bias)
      throw new ScalpelError(
        `${file}: tensor ${bias} is a bias, whose edit a LoRA adapter cannot carry; use bake --format hf for this model`,
      );
    hasHead ||= header.entries.has(HEAD);
    const src = await openSafetensors(file);
    try {
      for (const name of header.entries.keys()) {
        if (name === EMBED) edits.push({ name, kind: 'embedding', a: rowsDot(await src.read(name), d), b });
        else if (WRITER.test(name)) edits.push({ name, kind: 'linear', a: dotColumns(await src.read(name), d), b });
      }
    } finally {
      await src.close();
    }
  }
  const expected = 1 + 2 * args.numLayers;
  if (edits.length !== expected || !edits.some((e) => e.name === EMBED))
    throw new ScalpelError(
      `${modelDir}: found ${edits.length} of the ${expected} residual-stream writers under their standard names; cannot write an adapter for this checkpoint's naming`,
    );
  edits.sort((x, y) => order(x.name) - order(y.name));
  return {
    edits,
    modelType: String(config['model_type']),
    tiedHead: args.tieEmbeddings && !hasHead,
    numLayers: args.numLayers,
    width: args.width,
  };
}

/** Embedding first, then layer by layer (o_proj before down_proj): the order files list them in. */
function order(name: string): number {
  const m = WRITER.exec(name);
  return m ? 1 + 2 * Number(m[1]) + (m[2] === 'mlp.down_proj' ? 1 : 0) : 0;
}

/** dᵀW for W [width, cols], accumulated in float64. */
function dotColumns(t: Tensor, d: Float64Array): Float32Array {
  const [rows, cols] = t.shape as [number, number];
  const w = toFloat32(t);
  const u = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const dr = d[r]!;
    const o = r * cols;
    for (let c = 0; c < cols; c++) u[c]! += dr * w[o + c]!;
  }
  return Float32Array.from(u);
}

/** E d for E [rows, width]: each row's projection on d. */
function rowsDot(t: Tensor, d: Float64Array): Float32Array {
  const width = d.length;
  const x = toFloat32(t);
  const out = new Float32Array(x.length / width);
  for (let r = 0, o = 0; r < out.length; r++, o += width) {
    let p = 0;
    for (let j = 0; j < width; j++) p += x[o + j]! * d[j]!;
    out[r] = p;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// PEFT

/** PEFT's module name of a writer (the part of the HF name before .weight). */
const moduleOf = (name: string) => name.replace(/\.weight$/, '');

/** PEFT's tensors: lora_A [1, in] / lora_B [out, 1] for linears, lora_embedding_A [1, vocab] / _B [width, 1]. */
export function peftTensors(ad: RankOneAdapter): Tensor[] {
  const out: Tensor[] = [];
  for (const e of ad.edits) {
    const key = `base_model.model.${moduleOf(e.name)}`;
    const [aName, bName] =
      e.kind === 'embedding' ? ['lora_embedding_A', 'lora_embedding_B'] : ['lora_A.weight', 'lora_B.weight'];
    out.push({ name: `${key}.${aName}`, dtype: 'f32', shape: [1, e.a.length], data: e.a });
    out.push({ name: `${key}.${bName}`, dtype: 'f32', shape: [e.b.length, 1], data: e.b });
  }
  return out;
}

export interface AdapterWriteOptions {
  /** The base model as the adapter names it (base_model_name_or_path). */
  baseModel: string;
  /** Provenance, kept in scalpel_adapter.json (PEFT) or as scalpel.* metadata (GGUF). */
  provenance: Record<string, string>;
  /** The unit direction, recorded beside the adapter so the edit can be recomputed independently. */
  direction: ArrayLike<number>;
  /**
   * Ablation strength s (default 1), written as the adapter's own scale: lora_alpha (PEFT's scaling is alpha / r) and
   * adapter.lora.alpha (llama.cpp's), so B·A stays the full edit and the loader scales it.
   */
  strength?: number;
}

/** Writes a PEFT LoRA adapter directory (a new or empty one; written under a temporary name, then renamed). */
export async function writePeftAdapter(ad: RankOneAdapter, outDir: string, o: AdapterWriteOptions): Promise<void> {
  checkOutDir(outDir);
  const config = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: o.baseModel,
    r: 1,
    lora_alpha: o.strength ?? 1,
    lora_dropout: 0,
    target_modules: ['embed_tokens', 'o_proj', 'down_proj'],
    fan_in_fan_out: false,
    bias: 'none',
    use_rslora: false,
    use_dora: false,
    modules_to_save: null,
    init_lora_weights: true,
    inference_mode: true,
  };
  const tmp = `${outDir.replace(/[\\/]+$/, '')}.writing-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  try {
    await writeSafetensors(path.join(tmp, 'adapter_model.safetensors'), peftTensors(ad), { format: 'pt' });
    await writeFileAtomic(path.join(tmp, 'adapter_config.json'), `${JSON.stringify(config, null, 2)}\n`);
    await writeFileAtomic(path.join(tmp, 'scalpel_adapter.json'), provenanceJson(ad, o));
    if (fs.existsSync(outDir)) fs.rmdirSync(outDir); // checked empty above
    fs.renameSync(tmp, outDir);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (e instanceof ScalpelError) throw e;
    throw new ScalpelError(`${outDir}: could not write the adapter (${(e as Error).message})`);
  }
}

function provenanceJson(ad: RankOneAdapter, o: AdapterWriteOptions): string {
  return `${JSON.stringify({
    format: 'scalpel-adapter/1',
    ...o.provenance,
    edit: 'W + B A = W - d d^T W for the token embedding, every self_attn.o_proj and mlp.down_proj weight',
    tied_output_head: ad.tiedHead,
    edited_tensors: ad.edits.map((e) => e.name),
    direction: Array.from(o.direction, (v) => Math.fround(v)),
  })}\n`;
}

// ---------------------------------------------------------------------------------------------------------------
// llama.cpp

/** The adapter's tensors under llama.cpp's names and shapes (PyTorch order; the file stores them reversed). */
export function llamaCppLoraTensors(ad: RankOneAdapter): GgufTensor[] {
  const out: GgufTensor[] = [];
  for (const e of ad.edits) {
    const name = llamaCppTensorName(e.name);
    if (!name) throw new ScalpelError(`adapter: no llama.cpp name for tensor ${e.name}`);
    // token_embd: llama.cpp gathers rows of lora_a ([vocab, r]); other weights: lora_a is [r, in].
    const aShape = e.kind === 'embedding' ? [e.a.length, 1] : [1, e.a.length];
    out.push({ name: `${name}.lora_a`, dtype: 'f32', shape: aShape, data: e.a });
    out.push({ name: `${name}.lora_b`, dtype: 'f32', shape: [e.b.length, 1], data: e.b });
  }
  return out;
}

/** llama.cpp reads adapter.lora.alpha 0 as "not set" (scale 1), so strength 0 cannot be written there. */
function loraAlpha(strength = 1): number {
  if (strength === 0)
    throw new ScalpelError(
      'strength 0: llama.cpp reads adapter.lora.alpha 0 as unset (full strength); nothing to export',
    );
  return strength;
}

/** Writes the adapter as a llama.cpp LoRA GGUF (alpha 1, rank 1: the load-time scale is the ablation strength). */
export async function writeGgufLora(
  ad: RankOneAdapter,
  file: string,
  o: AdapterWriteOptions & { configPath: string },
): Promise<void> {
  if (ad.tiedHead)
    throw new ScalpelError(
      `${o.configPath}: the output head is tied to the token embedding, and llama.cpp would apply a token_embd adapter to the tied head too (where its shapes do not fit), so the bake cannot be a llama.cpp LoRA for this model; use bake --format gguf or hf`,
    );
  const metadata: Array<[string, GgufValue]> = [
    ['general.architecture', gguf.str(llamaCppArch(ad.modelType, o.configPath))],
    ['general.type', gguf.str('adapter')],
    ['general.name', gguf.str(`${path.basename(o.baseModel)}-scalpel-ablation`)],
    ['adapter.type', gguf.str('lora')],
    ['adapter.lora.alpha', gguf.f32(loraAlpha(o.strength))],
    ...Object.entries(o.provenance).map(([k, v]): [string, GgufValue] => [
      `scalpel.${k.replace(/^scalpel_/, '')}`,
      gguf.str(v),
    ]),
  ];
  await writeGguf(file, metadata, llamaCppLoraTensors(ad));
}
