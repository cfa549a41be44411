// What the export tests share for llama.cpp: an f32, untied copy of a model folder (the form in which a weight edit
// and an adapter can be compared exactly), its base GGUF written by src/model/gguf-export.ts, and
// greedy tokens from llama.cpp itself through node-llama-cpp (CPU prebuilt binary, never built here, loaded once).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Llama, LlamaContextSequence } from 'node-llama-cpp';
import { toFloat32 } from '../../src/io/dtype.js';
import { writeModelGguf } from '../../src/model/gguf-export.js';
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

/** The base model as a llama.cpp GGUF, f32, written by the project's own exporter (`bake --format gguf` uses it). */
export async function writeBaseGguf(dir: string, file: string): Promise<void> {
  await writeModelGguf(dir, file, { dtype: 'f32' });
}

let llamaPromise: Promise<Llama> | undefined;

/** llama.cpp's CPU prebuilt binary (never built here, no GPU, only errors logged), loaded once per process. */
export function cpuLlama(): Promise<Llama> {
  llamaPromise ??= import('node-llama-cpp').then(({ getLlama, LlamaLogLevel }) =>
    getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error }),
  );
  return llamaPromise;
}

/** llama.cpp's greedy continuation of a prompt (token ids) on a cleared sequence: n tokens, EOS not special. */
export async function greedyOnSequence(sequence: LlamaContextSequence, prompt: number[], n: number): Promise<number[]> {
  await sequence.clearHistory();
  const tokens: number[] = [];
  for await (const t of sequence.evaluate(prompt as never, { temperature: 0, yieldEogToken: true })) {
    tokens.push(t as number);
    if (tokens.length === n) break;
  }
  return tokens;
}

/** llama.cpp's greedy continuation (n tokens, EOS not special) of each token sequence, with LoRA adapters. */
export async function llamaCppGreedy(
  modelPath: string,
  prompts: number[][],
  n: number,
  adapters: Array<{ filePath: string; scale: number }> = [],
): Promise<number[][]> {
  const model = await (await cpuLlama()).loadModel({ modelPath, gpuLayers: 0 });
  try {
    const context = await model.createContext({
      contextSize: 128,
      threads: 1,
      ...(adapters.length > 0 ? { lora: { adapters } } : {}),
    });
    const seq = context.getSequence();
    const out: number[][] = [];
    for (const prompt of prompts) out.push(await greedyOnSequence(seq, prompt, n));
    await context.dispose();
    return out;
  } finally {
    await model.dispose();
  }
}
