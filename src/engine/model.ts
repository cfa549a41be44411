// The model: its args, its weights (views into the checkpoint, stored dtype) and one forward pass that reads top to
// bottom (llama2.c style). Every architecture runs through this one forward; the ModelArgs switch on the few
// differences (norm offset, sandwich norms, q/k norms, soft-capping, sliding windows, biases).
//
// Hook points (TransformerLens names), each seeing the whole [batch, seq, width] block, editable in place:
//   hook_embed                  the (scaled) token embeddings
//   blocks.{l}.hook_resid_pre   the residual stream entering layer l (= hook_embed / resid_post of layer l−1)
//   blocks.{l}.hook_attn_out    what attention adds to the stream (after o_proj and, in Gemma, its output norm)
//   blocks.{l}.hook_resid_mid   resid_pre + attn_out
//   blocks.{l}.hook_mlp_out     what the MLP adds to the stream (Gemma: after its output norm)
//   blocks.{l}.hook_resid_post  resid_mid + mlp_out
import type { ModelArgs, RopeSpec } from './args.js';
import { getKernels } from './kernels/index.js';
import type { AttentionCall, HookContext, HookMap, Kernels, Matrix } from './types.js';
import { hookName } from './types.js';
import type { KVCache } from './cache.js';
import { attention, type AttentionArgs } from './attention.js';
import { addInPlace, applyRope, embed, gatedAct, rmsnorm, ropeTables, softcap } from './ops.js';

/** One decoder layer's weights. Norm weights are f32 with the architecture's offset (Gemma: 1 + w) folded in. */
export interface LayerWeights {
  attnNorm: Float32Array;
  q: Matrix;
  k: Matrix;
  v: Matrix;
  o: Matrix;
  qBias?: Float32Array;
  kBias?: Float32Array;
  vBias?: Float32Array;
  oBias?: Float32Array;
  /** Per-head RMSNorm of queries and keys (Qwen3, Gemma 3). */
  qNorm?: Float32Array;
  kNorm?: Float32Array;
  /** Gemma 2/3: norm of the attention output before the residual add (post_attention_layernorm). */
  attnOutNorm?: Float32Array;
  mlpNorm: Float32Array;
  gate: Matrix;
  up: Matrix;
  down: Matrix;
  gateBias?: Float32Array;
  upBias?: Float32Array;
  downBias?: Float32Array;
  /** Gemma 2/3: norm of the MLP output before the residual add (post_feedforward_layernorm). */
  mlpOutNorm?: Float32Array;
}

export interface Weights {
  embed: Matrix;
  layers: LayerWeights[];
  finalNorm: Float32Array;
  /** The unembedding; the embedding matrix itself when tied. */
  lmHead: Matrix;
}

/** One call of the forward pass: `seq` new positions for each of `batch` rows. */
export interface Step {
  /** [batch · seq] token ids (any valid id on padding). */
  tokens: Int32Array;
  batch: number;
  seq: number;
  /** Column of this call's first position in the padded sequence (0 at prefill). */
  start: number;
  /** [batch] column of each row's first real token (left padding before it). */
  firstReal: Int32Array;
  /** [batch] KV-cache slot of each row. */
  slots: Int32Array;
  cache: KVCache;
  hooks?: HookMap;
}

/** Activation buffers, allocated once and reused while batch · seq fits. */
class Buffers {
  readonly x: Float32Array;
  readonly xn: Float32Array;
  readonly q: Float32Array;
  readonly k: Float32Array;
  readonly v: Float32Array;
  readonly att: Float32Array;
  readonly o: Float32Array;
  readonly gate: Float32Array;
  readonly up: Float32Array;
  readonly positions: Int32Array;
  readonly valid: Uint8Array;
  /** cos / sin tables [rows, headDim/2] per distinct RoPE. */
  readonly cos: Float32Array[];
  readonly sin: Float32Array[];

  constructor(
    a: ModelArgs,
    readonly rows: number,
  ) {
    const qw = a.numHeads * a.headDim;
    const kvw = a.numKvHeads * a.headDim;
    this.x = new Float32Array(rows * a.width);
    this.xn = new Float32Array(rows * a.width);
    this.q = new Float32Array(rows * qw);
    this.k = new Float32Array(rows * kvw);
    this.v = new Float32Array(rows * kvw);
    this.att = new Float32Array(rows * qw);
    this.o = new Float32Array(rows * a.width);
    this.gate = new Float32Array(rows * a.intermediate);
    this.up = new Float32Array(rows * a.intermediate);
    this.positions = new Int32Array(rows);
    this.valid = new Uint8Array(rows);
    const ropes = new Set(a.layers.map((l) => l.rope)).size;
    this.cos = Array.from({ length: ropes }, () => new Float32Array((rows * a.headDim) / 2));
    this.sin = Array.from({ length: ropes }, () => new Float32Array((rows * a.headDim) / 2));
  }
}

export class Model {
  readonly numLayers: number;
  /** d_model, the width of the residual stream. */
  readonly width: number;
  readonly vocabSize: number;
  private buffers: Buffers | undefined;
  /** Distinct RoPEs (Gemma 3 has two), each with its own cos/sin tables per call. */
  private readonly ropes: RopeSpec[];

  constructor(
    readonly args: ModelArgs,
    readonly weights: Weights,
    /** config.json as read. */
    readonly config: Record<string, unknown>,
    readonly kernels: Kernels = getKernels(),
  ) {
    this.numLayers = args.numLayers;
    this.width = args.width;
    this.vocabSize = args.vocabSize;
    this.ropes = [...new Set(args.layers.map((l) => l.rope))];
  }

  private buffersFor(rows: number): Buffers {
    if (!this.buffers || this.buffers.rows < rows) this.buffers = new Buffers(this.args, rows);
    return this.buffers;
  }

  /**
   * Runs `step` through the model, filling the KV cache at its columns. When `logits` is given, writes the logits
   * of each row's last position into it ([batch, vocab]).
   */
  forward(step: Step, logits?: Float32Array): void {
    this.forwardMany([step], logits);
  }

  /**
   * Runs several steps in one pass (the scheduler's rows: a prompt being prefilled next to sequences decoding one
   * token each). Their rows share every matmul, so the weights are read once per pass; positions, RoPE, the KV
   * cache, attention and hooks are each step's own. With `logits`, writes the logits of every row's last position,
   * step after step ([Σ batch, vocab]). A row's result does not depend on the other rows: the kernels compute each
   * output row from its input row alone.
   */
  forwardMany(steps: readonly Step[], logits?: Float32Array): void {
    const a = this.args;
    const W = this.weights;
    const K = this.kernels;
    const D = a.width;
    const qw = a.numHeads * a.headDim;
    const kvw = a.numKvHeads * a.headDim;
    const half = a.headDim / 2;
    // first row of each step in the shared buffers
    const offsets: number[] = [];
    let rows = 0;
    for (const step of steps) {
      const { batch, seq, start, cache } = step;
      if (start + seq > cache.capacity || step.slots.some((s) => s >= cache.slots))
        throw new Error(
          `forward: columns ${start}…${start + seq - 1} or slots [${step.slots}] exceed the KV cache (${cache.slots} × ${cache.capacity})`,
        );
      offsets.push(rows);
      rows += batch * seq;
    }
    const buf = this.buffersFor(rows);
    const x = buf.x.subarray(0, rows * D);
    const xn = buf.xn.subarray(0, rows * D);
    const q = buf.q.subarray(0, rows * qw);
    const k = buf.k.subarray(0, rows * kvw);
    const v = buf.v.subarray(0, rows * kvw);
    const att = buf.att.subarray(0, rows * qw);
    const o = buf.o.subarray(0, rows * D);
    const gate = buf.gate.subarray(0, rows * a.intermediate);
    const up = buf.up.subarray(0, rows * a.intermediate);

    // What each step needs on its own rows: positions, RoPE tables, attention arguments and hook context.
    const parts = steps.map((step, s) => {
      const { batch, seq, start } = step;
      const from = offsets[s]!;
      const n = batch * seq;
      // position of column start+i in row b = start + i − firstReal[b] (−1 on left padding)
      const positions = buf.positions.subarray(from, from + n);
      const valid = buf.valid.subarray(from, from + n);
      for (let b = 0; b < batch; b++)
        for (let i = 0; i < seq; i++) {
          const p = start + i - step.firstReal[b]!;
          positions[b * seq + i] = p >= 0 ? p : -1;
          valid[b * seq + i] = p >= 0 ? 1 : 0;
        }
      // cos/sin(position · invFreq) for each RoPE in use
      const cos = this.ropes.map((_, r) => buf.cos[r]!.subarray(from * half, (from + n) * half));
      const sin = this.ropes.map((_, r) => buf.sin[r]!.subarray(from * half, (from + n) * half));
      for (let r = 0; r < this.ropes.length; r++) ropeTables(this.ropes[r]!, positions, batch, seq, cos[r]!, sin[r]!);
      const attnArgs: AttentionArgs = {
        batch,
        seq,
        start,
        firstReal: step.firstReal,
        slots: step.slots,
        numHeads: a.numHeads,
        numKvHeads: a.numKvHeads,
        headDim: a.headDim,
        scale: a.attnScale,
        softcap: a.attnSoftcap,
        window: null,
      };
      // Hooks: with none registered nothing is called and nothing is allocated.
      const hooks = step.hooks && step.hooks.size > 0 ? step.hooks : undefined;
      return { step, from, n, cos, sin, attnArgs, hooks, info: { batch, seq, width: D, start, positions, valid } };
    });
    const hooked = parts.filter((p) => p.hooks);
    // The scheduler's steps (one unpadded sequence each, its own cache) share one threaded attention call per layer.
    const oneThreadedCall =
      K.attentionMany !== undefined &&
      steps.length > 1 &&
      steps.every((st) => st.batch === 1 && st.firstReal[0] === 0 && st.slots[0] === 0);
    const hook = (name: string, layer: number, act: Float32Array) => {
      for (const p of hooked) runHooks(p.hooks!, name, layer, act.subarray(p.from * D, (p.from + p.n) * D), p.info);
    };

    // x = embed[tokens] · embedScale
    for (const p of parts) embed(x.subarray(p.from * D, (p.from + p.n) * D), W.embed, p.step.tokens, a.embedScale);
    if (hooked.length) hook('hook_embed', -1, x);

    for (let l = 0; l < a.numLayers; l++) {
      const L = W.layers[l]!;
      const layer = a.layers[l]!;
      if (hooked.length) hook(hookName(l, 'hook_resid_pre'), l, x);

      // xn = rmsnorm(x) · w_attn
      rmsnorm(xn, x, L.attnNorm, rows, D, a.normEps);
      // q, k, v = xn · Wqᵀ, xn · Wkᵀ, xn · Wvᵀ (+ biases)
      K.matmul(q, xn, L.q, rows, L.qBias);
      K.matmul(k, xn, L.k, rows, L.kBias);
      K.matmul(v, xn, L.v, rows, L.vBias);
      // q, k = rmsnorm per head (Qwen3, Gemma 3)
      if (L.qNorm) rmsnorm(q, q, L.qNorm, rows * a.numHeads, a.headDim, a.normEps);
      if (L.kNorm) rmsnorm(k, k, L.kNorm, rows * a.numKvHeads, a.headDim, a.normEps);
      const r = this.ropes.indexOf(layer.rope);
      const calls: AttentionCall[] = [];
      for (const p of parts) {
        const qs = q.subarray(p.from * qw, (p.from + p.n) * qw);
        const ks = k.subarray(p.from * kvw, (p.from + p.n) * kvw);
        // q, k = rope(q, k, position)
        applyRope(qs, p.n, a.numHeads, a.headDim, layer.rope.rotaryDim, p.cos[r]!, p.sin[r]!);
        applyRope(ks, p.n, a.numKvHeads, a.headDim, layer.rope.rotaryDim, p.cos[r]!, p.sin[r]!);
        // cache[l] ← k, v at columns start … start+seq−1
        const vs = v.subarray(p.from * kvw, (p.from + p.n) * kvw);
        p.step.cache.write(l, ks, vs, p.step.batch, p.step.seq, p.step.start, p.step.slots);
        // att = softmax(q · Kᵀ · scale, causal + padding (+ window) mask) · V
        p.attnArgs.window = layer.window;
        const out = att.subarray(p.from * qw, (p.from + p.n) * qw);
        if (oneThreadedCall) calls.push({ out, q: qs, cache: p.step.cache, layer: l, args: p.attnArgs });
        else (K.attention ?? attention)(out, qs, p.step.cache, l, p.attnArgs);
      }
      if (oneThreadedCall) K.attentionMany!(calls);
      // o = att · Woᵀ (Gemma: o = rmsnorm(o))
      K.matmul(o, att, L.o, rows, L.oBias);
      if (L.attnOutNorm) rmsnorm(o, o, L.attnOutNorm, rows, D, a.normEps);
      if (hooked.length) hook(hookName(l, 'hook_attn_out'), l, o);
      // x = x + o
      addInPlace(x, o);
      if (hooked.length) hook(hookName(l, 'hook_resid_mid'), l, x);

      // xn = rmsnorm(x) · w_mlp
      rmsnorm(xn, x, L.mlpNorm, rows, D, a.normEps);
      // h = act(xn · Wgᵀ) ⊙ (xn · Wuᵀ)
      K.matmul(gate, xn, L.gate, rows, L.gateBias);
      K.matmul(up, xn, L.up, rows, L.upBias);
      (K.gatedAct ?? gatedAct)(gate, up, a.act);
      // o = h · Wdᵀ (Gemma: o = rmsnorm(o))
      K.matmul(o, gate, L.down, rows, L.downBias);
      if (L.mlpOutNorm) rmsnorm(o, o, L.mlpOutNorm, rows, D, a.normEps);
      if (hooked.length) hook(hookName(l, 'hook_mlp_out'), l, o);
      // x = x + o
      addInPlace(x, o);
      if (hooked.length) hook(hookName(l, 'hook_resid_post'), l, x);
    }

    if (!logits) return;
    // logits[row] = softcap(rmsnorm(x[row, last]) · W_lmᵀ), one row per batch row of every step
    let outRows = 0;
    for (const p of parts)
      for (let b = 0; b < p.step.batch; b++) {
        const last = p.from + (b + 1) * p.step.seq - 1;
        xn.set(x.subarray(last * D, (last + 1) * D), outRows++ * D);
      }
    const lastRows = xn.subarray(0, outRows * D);
    rmsnorm(lastRows, lastRows, W.finalNorm, outRows, D, a.normEps);
    const out = logits.subarray(0, outRows * a.vocabSize);
    K.matmul(out, lastRows, W.lmHead, outRows);
    if (a.finalSoftcap !== null) softcap(out, a.finalSoftcap);
  }
}

/** Calls the hooks registered under `name` on an activation block. */
function runHooks(
  hooks: HookMap,
  name: string,
  layer: number,
  act: Float32Array,
  info: Omit<HookContext, 'name' | 'layer'>,
): void {
  const fns = hooks.get(name);
  if (!fns) return;
  for (const fn of fns) fn(act, { name, layer, ...info });
}
