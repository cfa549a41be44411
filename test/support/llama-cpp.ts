// What the export tests share for llama.cpp: an f32, untied copy of a model folder (the form in which a weight edit
// and an adapter can be compared exactly), its base GGUF written with src/io/gguf.ts as bench/run.mjs does, and
// greedy tokens from llama.cpp itself through node-llama-cpp (CPU prebuilt binary, never built here).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { toFloat32 } from '../../src/io/dtype.js';
import {
  gpt2TokenizerMetadata,
  llamaCppTensors,
  llamaFamilyMetadata,
  writeGguf,
  type GgufTensor,
} from '../../src/io/gguf.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import type { Tensor } from '../../src/tensor.js';

type Json = Record<string, unknown>;
const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8')) as Json;

/**
 * Copies a single-file model folder with every tensor widened to f32 and, when tied, an explicit lm_head (a copy of
 * the embedding) and tie_word_embeddings false: the same function, in the dtype and layout the comparisons need.
 */
export async function f32UntiedCopy(src: string, out: string): Promise<string> {
  fs.mkdirSync(out, { recursive: true });
  const tensors = await readSafetensors(path.join(src, 'model.safetensors'));
  const wide = new Map<string, Tensor>();
  for (const [name, t] of tensors) wide.set(name, { ...t, dtype: 'f32', data: toFloat32(t) });
  const config = readJson(path.join(src, 'config.json'));
  if (!wide.has('lm_head.weight')) {
    const e = wide.get('model.embed_tokens.weight')!;
    wide.set('lm_head.weight', { ...e, name: 'lm_head.weight', data: e.data.slice() });
  }
  await writeSafetensors(path.join(out, 'model.safetensors'), wide);
  for (const f of fs.readdirSync(src))
    if (f !== 'model.safetensors' && f !== 'config.json') fs.copyFileSync(path.join(src, f), path.join(out, f));
  const dtype = { torch_dtype: 'float32', ...('dtype' in config ? { dtype: 'float32' } : {}) };
  fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify({ ...config, ...dtype, tie_word_embeddings: false }));
  return out;
}

/** The base model as a llama.cpp GGUF (llama / qwen2 family, f32), tokenizer included (tests feed token ids). */
export async function writeBaseGguf(dir: string, file: string): Promise<void> {
  const c = readJson(path.join(dir, 'config.json'));
  const num = (k: string) => c[k] as number;
  const rope = (c['rope_theta'] ?? (c['rope_parameters'] as Json | undefined)?.['rope_theta'] ?? 10000) as number;
  const architecture = c['model_type'] === 'qwen2' ? 'qwen2' : 'llama';
  const tensors = await readSafetensors(path.join(dir, 'model.safetensors'));
  const tok = readJson(path.join(dir, 'tokenizer.json'));
  const metadata = [
    ...llamaFamilyMetadata({
      architecture,
      name: path.basename(dir),
      hidden_size: num('hidden_size'),
      num_hidden_layers: num('num_hidden_layers'),
      intermediate_size: num('intermediate_size'),
      num_attention_heads: num('num_attention_heads'),
      num_key_value_heads: num('num_key_value_heads'),
      max_position_embeddings: num('max_position_embeddings'),
      rms_norm_eps: num('rms_norm_eps'),
      rope_theta: rope,
      dtype: 'f32',
    }),
    ...gpt2TokenizerMetadata(tok, { vocabSize: num('vocab_size'), pre: 'default', addBos: false }),
  ];
  if (architecture === 'llama') {
    for (const [key, heads] of [
      ['q_proj', num('num_attention_heads')],
      ['k_proj', num('num_key_value_heads')],
    ] as const)
      for (let l = 0; l < num('num_hidden_layers'); l++) {
        const t = tensors.get(`model.layers.${l}.self_attn.${key}.weight`)!;
        tensors.set(t.name, { ...t, data: interleaveRope(t.data as Float32Array, heads, t.shape[1]!) });
      }
  }
  const extra = llama3RopeFactors(c, rope);
  await writeGguf(file, metadata, [...llamaCppTensors(tensors.values()), ...extra]);
}

/** Llama 3 RoPE scaling as llama.cpp takes it: per-frequency divisors in a rope_freqs tensor (its converter's rule). */
function llama3RopeFactors(c: Json, base: number): GgufTensor[] {
  const s = c['rope_scaling'] as Json | undefined;
  if (s?.['rope_type'] !== 'llama3') return [];
  const dim =
    (c['head_dim'] as number | undefined) ?? (c['hidden_size'] as number) / (c['num_attention_heads'] as number);
  const [factor, low, high, old] = [
    'factor',
    'low_freq_factor',
    'high_freq_factor',
    'original_max_position_embeddings',
  ].map((k) => s[k] as number) as [number, number, number, number];
  const data = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const wavelen = (2 * Math.PI) / (1 / base ** ((2 * i) / dim));
    if (wavelen < old / high) data[i] = 1;
    else if (wavelen > old / low) data[i] = factor;
    else {
      const smooth = (old / wavelen - low) / (high - low);
      data[i] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  return [{ name: 'rope_freqs.weight', dtype: 'f32', shape: [dim / 2], data }];
}

/**
 * llama.cpp's llama graph rotates adjacent pairs (x0, x1), Hugging Face's Llama the two halves of each head, so its
 * converter reorders each head's q/k rows from [first half, second half] to interleaved pairs; so does this.
 * (The full-model GGUF export will own this mapping; the test only needs a faithful base model.)
 */
function interleaveRope(w: Float32Array, heads: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const hd = w.length / cols / heads;
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < hd / 2; i++)
      for (let j = 0; j < 2; j++) {
        const from = (h * hd + j * (hd / 2) + i) * cols;
        out.set(w.subarray(from, from + cols), (h * hd + 2 * i + j) * cols);
      }
  return out;
}

/** llama.cpp's greedy continuation (n tokens, EOS not special) of each token sequence, with LoRA adapters. */
export async function llamaCppGreedy(
  modelPath: string,
  prompts: number[][],
  n: number,
  adapters: Array<{ filePath: string; scale: number }> = [],
): Promise<number[][]> {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  try {
    const context = await model.createContext({
      contextSize: 128,
      threads: 1,
      ...(adapters.length > 0 ? { lora: { adapters } } : {}),
    });
    const seq = context.getSequence();
    const out: number[][] = [];
    for (const prompt of prompts) {
      await seq.clearHistory();
      const tokens: number[] = [];
      for await (const t of seq.evaluate(prompt as never, { temperature: 0, yieldEogToken: true })) {
        tokens.push(t as number);
        if (tokens.length === n) break;
      }
      out.push(tokens);
    }
    await context.dispose();
    return out;
  } finally {
    await model.dispose();
  }
}
