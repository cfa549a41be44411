// The shared vocabulary of the engine: weight matrices, kernels, hooks and batches.
// Every other module builds on these types; change them only with care.
import type { AttentionArgs } from './attention.js';
import type { KVCache } from './cache.js';
import type { Activation } from './args.js';
import type { WeightDType } from '../tensor.js';

/** A weight matrix in torch nn.Linear layout: [rows = out features, cols = in features], row-major. */
export interface Matrix {
  dtype: WeightDType;
  rows: number;
  cols: number;
  data: Float32Array | Uint16Array;
}

/** One block of attention for Kernels.attentionMany. */
export interface AttentionCall {
  out: Float32Array;
  q: Float32Array;
  cache: KVCache;
  layer: number;
  args: AttentionArgs;
}

/** The one entry point for heavy numeric work (llama2.c's matmul): speed it up and everything speeds up. */
export interface Kernels {
  /** e.g. 'native-avx512', 'native-avx2', 'js'. */
  readonly name: string;
  /** y[m, n] = x[m, k] · Wᵀ (+ bias[n]); W is [n, k]; x and y are f32 row-major. */
  matmul(y: Float32Array, x: Float32Array, w: Matrix, m: number, bias?: Float32Array): void;
  /** Optional faster twin of engine/attention.ts attention() (same semantics); the engine's own runs otherwise. */
  attention?(out: Float32Array, q: Float32Array, cache: KVCache, layer: number, a: AttentionArgs): void;
  /**
   * Optional: attention() of many one-sequence blocks (batch 1, no padding, slot 0 of each block's own cache) in one
   * threaded call, as the scheduler's decode steps need; same results as one attention() per block.
   */
  attentionMany?(calls: readonly AttentionCall[]): void;
  /** Optional faster twin of engine/ops.ts gatedAct(): gate ← act(gate) ⊙ up. */
  gatedAct?(gate: Float32Array, up: Float32Array, act: Activation): void;
}

/**
 * What a hook is told about the activation block it sees.
 * The block is [batch, seq, width] f32 row-major; rows of left padding have valid = 0.
 */
export interface HookContext {
  /** Full hook name, e.g. 'blocks.3.hook_resid_pre' or 'hook_embed'. */
  name: string;
  /** Layer index, or -1 for hook_embed. */
  layer: number;
  batch: number;
  /** Number of token positions in this call: the padded prompt length at prefill, 1 per decode step. */
  seq: number;
  width: number;
  /** Index of this call's first position in the padded sequence (0 at prefill, grows during decode). */
  start: number;
  /** [batch * seq] position id of each row (-1 on padding). */
  positions: Int32Array;
  /** [batch * seq] 1 for real tokens, 0 for left padding. */
  valid: Uint8Array;
}

/** Reads or edits (in place) an activation block. */
export type Hook = (act: Float32Array, ctx: HookContext) => void;

/** Hook name → hooks, run in order. Names: hook_embed, blocks.{l}.hook_resid_pre|hook_resid_mid|hook_resid_post|hook_attn_out|hook_mlp_out. */
export type HookMap = Map<string, Hook[]>;

export const HOOK_POINTS = [
  'hook_resid_pre',
  'hook_attn_out',
  'hook_resid_mid',
  'hook_mlp_out',
  'hook_resid_post',
] as const;
export type HookPoint = (typeof HOOK_POINTS)[number];
export const hookName = (layer: number, point: HookPoint): string => `blocks.${layer}.${point}`;
