// Portable kernels in plain TypeScript: correct first; the native addon is the fast path.
import type { Kernels, Matrix } from '../types.js';

/** bf16 → f32: the bf16 bits are the top half of an f32. */
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
export function bf16ToF32(bits: number): number {
  u32[0] = bits << 16;
  return f32[0]!;
}

function matmul(y: Float32Array, x: Float32Array, w: Matrix, m: number, bias?: Float32Array): void {
  if (w.dtype !== 'f32') throw new Error(`js matmul: ${w.dtype} not yet supported`);
  const { rows: n, cols: k } = w;
  const wd = w.data as Float32Array;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = bias ? bias[j]! : 0;
      for (let t = 0; t < k; t++) s += x[i * k + t]! * wd[j * k + t]!;
      y[i * n + j] = s;
    }
  }
}

export const jsKernels: Kernels = { name: 'js', matmul };
