// Portable kernels in plain TypeScript: exact first, reasonably fast second; the native addon is the fast path.
//
// matmul computes y[m, n] = x[m, k] · Wᵀ (+ bias) for W in torch nn.Linear layout [n, k]. Weights stay in their
// stored dtype: a block of W rows is widened once into f32 scratch rows, then every x row is dotted against the
// whole block (x is read once per block, not once per W row). Sums run in f64 (JS numbers) and are rounded to f32
// when stored.
import type { Kernels, Matrix } from '../types.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bf16 → f32: the bf16 bits are the top half of an f32. */
export function bf16ToF32(bits: number): number {
  u32[0] = bits << 16;
  return f32[0]!;
}

/** f16 → f32 for every 16-bit pattern (subnormals, inf and NaN included), built once. */
let f16Table: Float32Array | undefined;
export function f16Lookup(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24;
    else if (exp === 31) t[h] = frac ? NaN : sign * Infinity;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  f16Table = t;
  return t;
}

const BLOCK = 4; // W rows per block
let scratch = new Float32Array(0);
let scratchBits = new Uint32Array(0); // the same memory, for writing widened bf16 bits

/** Widens W rows [row, row + count) into the scratch rows (bf16: shift into the top half; f16: table). */
function widenToScratch(w: Matrix, row: number, count: number): void {
  const len = count * w.cols;
  const off = row * w.cols;
  const src = w.data as Uint16Array;
  if (w.dtype === 'bf16') {
    const out = scratchBits;
    for (let t = 0; t < len; t++) out[t] = src[off + t]! << 16;
  } else {
    const table = f16Lookup();
    const out = scratch;
    for (let t = 0; t < len; t++) out[t] = table[src[off + t]!]!;
  }
}

function matmul(y: Float32Array, x: Float32Array, w: Matrix, m: number, bias?: Float32Array): void {
  const { rows: n, cols: k } = w;
  if (scratch.length < BLOCK * k) {
    scratch = new Float32Array(BLOCK * k);
    scratchBits = new Uint32Array(scratch.buffer);
  }
  const k4 = k & ~3;
  for (let j0 = 0; j0 < n; j0 += BLOCK) {
    const nb = Math.min(BLOCK, n - j0);
    let wb: Float32Array;
    if (w.dtype === 'f32') wb = (w.data as Float32Array).subarray(j0 * k, (j0 + nb) * k);
    else {
      widenToScratch(w, j0, nb);
      wb = scratch;
    }
    if (nb === BLOCK) {
      const b0 = bias ? bias[j0]! : 0;
      const b1 = bias ? bias[j0 + 1]! : 0;
      const b2 = bias ? bias[j0 + 2]! : 0;
      const b3 = bias ? bias[j0 + 3]! : 0;
      for (let i = 0; i < m; i++) {
        const xo = i * k;
        let s0 = 0,
          s1 = 0,
          s2 = 0,
          s3 = 0;
        let t = 0;
        for (; t < k4; t += 4) {
          const x0 = x[xo + t]!,
            x1 = x[xo + t + 1]!,
            x2 = x[xo + t + 2]!,
            x3 = x[xo + t + 3]!;
          s0 += x0 * wb[t]! + x1 * wb[t + 1]! + x2 * wb[t + 2]! + x3 * wb[t + 3]!;
          s1 += x0 * wb[k + t]! + x1 * wb[k + t + 1]! + x2 * wb[k + t + 2]! + x3 * wb[k + t + 3]!;
          s2 += x0 * wb[2 * k + t]! + x1 * wb[2 * k + t + 1]! + x2 * wb[2 * k + t + 2]! + x3 * wb[2 * k + t + 3]!;
          s3 += x0 * wb[3 * k + t]! + x1 * wb[3 * k + t + 1]! + x2 * wb[3 * k + t + 2]! + x3 * wb[3 * k + t + 3]!;
        }
        for (; t < k; t++) {
          const xv = x[xo + t]!;
          s0 += xv * wb[t]!;
          s1 += xv * wb[k + t]!;
          s2 += xv * wb[2 * k + t]!;
          s3 += xv * wb[3 * k + t]!;
        }
        const yo = i * n + j0;
        y[yo] = s0 + b0;
        y[yo + 1] = s1 + b1;
        y[yo + 2] = s2 + b2;
        y[yo + 3] = s3 + b3;
      }
    } else {
      for (let r = 0; r < nb; r++) {
        const wo = r * k;
        const b = bias ? bias[j0 + r]! : 0;
        for (let i = 0; i < m; i++) {
          const xo = i * k;
          let s0 = 0,
            s1 = 0,
            s2 = 0,
            s3 = 0;
          let t = 0;
          for (; t < k4; t += 4) {
            s0 += x[xo + t]! * wb[wo + t]!;
            s1 += x[xo + t + 1]! * wb[wo + t + 1]!;
            s2 += x[xo + t + 2]! * wb[wo + t + 2]!;
            s3 += x[xo + t + 3]! * wb[wo + t + 3]!;
          }
          for (; t < k; t++) s0 += x[xo + t]! * wb[wo + t]!;
          y[i * n + j0 + r] = s0 + s1 + s2 + s3 + b;
        }
      }
    }
  }
}

export const jsKernels: Kernels = { name: 'js', matmul };
