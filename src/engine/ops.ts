// The small numeric steps of the forward pass (everything except matmul, which lives in the kernels).
// All activations are f32 row-major; sums run in f64 and are rounded to f32 when stored.
import type { Activation, RopeSpec } from './args.js';
import type { Matrix } from './types.js';
import { f16Lookup } from './kernels/js.js';

/** out[r] = x[r] / sqrt(mean(x[r]²) + eps) · w, for `rows` rows of `dim` (out may be x). */
export function rmsnorm(
  out: Float32Array,
  x: Float32Array,
  w: Float32Array,
  rows: number,
  dim: number,
  eps: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i]! * x[o + i]!;
    const inv = Math.fround(1 / Math.sqrt(Math.fround(Math.fround(ss / dim) + eps)));
    for (let i = 0; i < dim; i++) out[o + i] = w[i]! * Math.fround(x[o + i]! * inv);
  }
}

/** x += y. */
export function addInPlace(x: Float32Array, y: Float32Array): void {
  for (let i = 0; i < x.length; i++) x[i] = x[i]! + y[i]!;
}

/** gate = act(gate) · up (SwiGLU / GeGLU). */
export function gatedAct(gate: Float32Array, up: Float32Array, act: Activation): void {
  const n = gate.length;
  if (act === 'silu') {
    for (let i = 0; i < n; i++) {
      const g = gate[i]!;
      gate[i] = Math.fround(g / (1 + Math.exp(-g))) * up[i]!;
    }
  } else {
    const c = Math.sqrt(2 / Math.PI);
    for (let i = 0; i < n; i++) {
      const g = gate[i]!;
      gate[i] = Math.fround(0.5 * g * (1 + Math.tanh(c * (g + 0.044715 * g * g * g)))) * up[i]!;
    }
  }
}

/** x = cap · tanh(x / cap). */
export function softcap(x: Float32Array, cap: number): void {
  for (let i = 0; i < x.length; i++) x[i] = cap * Math.tanh(x[i]! / cap);
}

/** out[i] = scale · row tokens[i] of the embedding matrix, widened to f32. */
export function embed(out: Float32Array, table: Matrix, tokens: Int32Array, scale: number): void {
  const d = table.cols;
  const f16 = table.dtype === 'f16' ? f16Lookup() : null;
  const u32 = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < tokens.length; i++) {
    const src = tokens[i]! * d;
    const o = i * d;
    if (table.dtype === 'f32') out.set((table.data as Float32Array).subarray(src, src + d), o);
    else if (table.dtype === 'bf16')
      for (let t = 0; t < d; t++) u32[o + t] = (table.data as Uint16Array)[src + t]! << 16;
    else for (let t = 0; t < d; t++) out[o + t] = f16![(table.data as Uint16Array)[src + t]!]!;
    if (scale !== 1) for (let t = 0; t < d; t++) out[o + t] = out[o + t]! * scale;
  }
}

/**
 * cos / sin tables [batch·seq, rotaryDim/2] for the given positions (padding gets position 0). LongRoPE picks its
 * long frequencies per row once the row's sequence is longer than original_max_position_embeddings.
 */
export function ropeTables(
  rope: RopeSpec,
  positions: Int32Array,
  batch: number,
  seq: number,
  cos: Float32Array,
  sin: Float32Array,
): void {
  const half = rope.rotaryDim / 2;
  for (let b = 0; b < batch; b++) {
    const rowLen = positions[(b + 1) * seq - 1]! + 1; // the last column is always a real token
    const inv = rope.long && rowLen > rope.long.originalMax ? rope.long.invFreq : rope.invFreq;
    for (let r = b * seq; r < (b + 1) * seq; r++) {
      const p = Math.max(0, positions[r]!);
      for (let i = 0; i < half; i++) {
        const f = Math.fround(p * inv[i]!);
        cos[r * half + i] = Math.fround(Math.cos(f)) * rope.scaling;
        sin[r * half + i] = Math.fround(Math.sin(f)) * rope.scaling;
      }
    }
  }
}

/**
 * Rotates the first rotaryDim dims of every head (rotate-half convention, as transformers):
 * (x1, x2) → (x1·cos − x2·sin, x2·cos + x1·sin) with x1 = x[i], x2 = x[i + rotaryDim/2].
 */
export function applyRope(
  x: Float32Array,
  rows: number,
  heads: number,
  headDim: number,
  rotaryDim: number,
  cos: Float32Array,
  sin: Float32Array,
): void {
  const half = rotaryDim / 2;
  for (let r = 0; r < rows; r++) {
    const t = r * half;
    for (let h = 0; h < heads; h++) {
      const o = (r * heads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const c = cos[t + i]!,
          s = sin[t + i]!;
        const x1 = x[o + i]!,
          x2 = x[o + half + i]!;
        x[o + i] = Math.fround(x1 * c) - Math.fround(x2 * s);
        x[o + half + i] = Math.fround(x2 * c) + Math.fround(x1 * s);
      }
    }
  }
}

export function argmax(x: Float32Array, from = 0, to = x.length): number {
  let best = from;
  for (let i = from + 1; i < to; i++) if (x[i]! > x[best]!) best = i;
  return best - from;
}
