// Batch entry points over token-id prompts. lastLogits sorts prompts by length and packs them into left-padded
// batches (every prompt ends at the last column); greedyGenerate runs them through the scheduler (scheduler.ts).
// Results come back in the caller's order.
import { ScalpelError } from '../errors.js';
import { KVCache } from './cache.js';
import { type GateDecision, Scheduler, type SequenceGate } from './scheduler.js';
import type { Model } from './model.js';
import type { HookMap } from './types.js';

export interface RunOptions {
  hooks?: HookMap;
  /** Prompts per forward pass (default 16). */
  batchSize?: number;
  /** Told after each batch how many prompts are done. */
  onProgress?: (done: number, total: number) => void;
}

export interface GenerateOptions extends RunOptions {
  maxNewTokens: number;
  /** Generation of a row stops at any of these (the EOS itself is not returned). */
  eosTokenIds: readonly number[];
  /** Each prompt's own hooks (replacing `hooks`): settings with different interventions share one scheduler pass. */
  promptHooks?: readonly (HookMap | undefined)[];
  /** Told each prompt's new tokens as soon as it is done (index in the caller's order). */
  onResult?: (index: number, tokens: number[]) => void;
  /** Every prompt's hooks apply only where this gate clears it (scheduler.ts SequenceGate). */
  gate?: SequenceGate;
  /** Told each gated prompt's decision when it is done (index in the caller's order). */
  onGate?: (index: number, decision: GateDecision) => void;
  /** Told at the end how many forward calls the scheduler made (each reads the weights once for all its rows). */
  onForwardCalls?: (calls: number) => void;
}

export const DEFAULT_BATCH_SIZE = 16;

/** A left-padded batch ready for prefill. */
export interface PackedBatch {
  tokens: Int32Array;
  batch: number;
  seq: number;
  firstReal: Int32Array;
  slots: Int32Array;
}

/** Left-pads prompts into one [batch, seq] block; padding columns hold the row's first token. */
export function pack(prompts: readonly (readonly number[])[]): PackedBatch {
  const batch = prompts.length;
  const seq = Math.max(...prompts.map((p) => p.length));
  const tokens = new Int32Array(batch * seq);
  const firstReal = new Int32Array(batch);
  for (let b = 0; b < batch; b++) {
    const p = prompts[b]!;
    firstReal[b] = seq - p.length;
    tokens.fill(p[0]!, b * seq, b * seq + firstReal[b]!);
    tokens.set(p, b * seq + firstReal[b]!);
  }
  return { tokens, batch, seq, firstReal, slots: Int32Array.from({ length: batch }, (_, b) => b) };
}

function checkPrompts(model: Model, prompts: readonly (readonly number[])[]): void {
  for (const [i, p] of prompts.entries()) {
    if (p.length === 0) throw new ScalpelError(`prompt ${i} is empty; every prompt needs at least one token`);
    for (const t of p)
      if (!Number.isInteger(t) || t < 0 || t >= model.vocabSize)
        throw new ScalpelError(`prompt ${i}: token id ${t} is outside the vocabulary [0, ${model.vocabSize})`);
  }
}

/** Indices of prompts sorted by length (stable), cut into batches of at most batchSize. */
function batches(prompts: readonly (readonly number[])[], batchSize: number): number[][] {
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new ScalpelError(`batchSize must be a positive integer, got ${batchSize}`);
  const order = prompts.map((_, i) => i).sort((a, b) => prompts[a]!.length - prompts[b]!.length || a - b);
  const out: number[][] = [];
  for (let i = 0; i < order.length; i += batchSize) out.push(order.slice(i, i + batchSize));
  return out;
}

/** A KV cache kept between calls and reused while it is big enough. */
const caches = new WeakMap<Model, KVCache>();
function cacheFor(model: Model, slots: number, capacity: number): KVCache {
  let c = caches.get(model);
  if (!c?.fits(slots, capacity)) {
    caches.delete(model); // let the old one go before allocating the new one
    c = new KVCache(model.args, slots, capacity);
    caches.set(model, c);
  }
  return c;
}

/** Frees the KV cache kept for this model (it is rebuilt on the next call). */
export function releaseCache(model: Model): void {
  caches.delete(model);
}

/** The logits at the last position of every prompt ([vocab] each), in the caller's order. */
export function lastLogits(
  model: Model,
  prompts: readonly (readonly number[])[],
  opts: RunOptions = {},
): Float32Array[] {
  checkPrompts(model, prompts);
  const V = model.vocabSize;
  const out: Float32Array[] = new Array(prompts.length);
  let done = 0;
  for (const idx of batches(prompts, opts.batchSize ?? DEFAULT_BATCH_SIZE)) {
    const p = pack(idx.map((i) => prompts[i]!));
    const logits = new Float32Array(p.batch * V);
    const cache = cacheFor(model, p.batch, p.seq);
    model.forward({ ...p, start: 0, cache, hooks: opts.hooks }, logits);
    for (const [b, i] of idx.entries()) out[i] = logits.slice(b * V, (b + 1) * V);
    done += idx.length;
    opts.onProgress?.(done, prompts.length);
  }
  return out;
}

/**
 * Greedy continuation of every prompt: up to maxNewTokens new ids each, stopping a row at its first EOS (not
 * included). Runs on the scheduler: batchSize sequences at a time, a finished one making room for the next.
 */
export function greedyGenerate(
  model: Model,
  prompts: readonly (readonly number[])[],
  opts: GenerateOptions,
): number[][] {
  checkPrompts(model, prompts);
  const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new ScalpelError(`batchSize must be a positive integer, got ${batchSize}`);
  const { maxNewTokens } = opts;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0)
    throw new ScalpelError(`maxNewTokens must be a non-negative integer, got ${maxNewTokens}`);
  if (opts.promptHooks && opts.promptHooks.length !== prompts.length)
    throw new ScalpelError(`promptHooks has ${opts.promptHooks.length} entries for ${prompts.length} prompts`);
  const scheduler = new Scheduler(model, { maxSequences: batchSize });
  const out: number[][] = prompts.map(() => []);
  let done = 0;
  prompts.forEach((prompt, i) => {
    scheduler.submit({
      prompt,
      maxNewTokens,
      stopTokenIds: opts.eosTokenIds,
      hooks: opts.promptHooks ? opts.promptHooks[i] : opts.hooks,
      ...(opts.gate ? { gate: opts.gate } : {}),
      // Tokens are collected as they come, so the results are complete when drain() returns.
      onToken: (t) => out[i]!.push(t),
      onDone: (result) => {
        if (result.gate) opts.onGate?.(i, result.gate);
        opts.onResult?.(i, out[i]!);
        opts.onProgress?.(++done, prompts.length);
      },
    });
  });
  // drain(), counting its steps: a step with any sequence live or waiting runs one forward call.
  let calls = 0;
  while (scheduler.running + scheduler.waiting > 0) {
    scheduler.step();
    calls++;
  }
  opts.onForwardCalls?.(calls);
  return out;
}
