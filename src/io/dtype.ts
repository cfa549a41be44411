// Conversions between f32 and the two 16-bit float formats that checkpoints use.
// Weights stay in their stored width (raw bits in a Uint16Array); these helpers widen or narrow on demand.
import type { Tensor, WeightDType } from '../tensor.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Bytes per element of each weight dtype. */
export const DTYPE_BYTES: Record<WeightDType, number> = { f32: 4, f16: 2, bf16: 2 };

/** bf16 bits → f32 value (bf16 is the top half of an f32). */
export function bf16ToF32(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0]!;
}

/** f32 value → bf16 bits, rounding to nearest even; NaN stays a (quiet) NaN. */
export function f32ToBf16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x0040) & 0xffff; // NaN
  const rounded = x + 0x7fff + ((x >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** f16 (IEEE half) bits → f32 value, including subnormals, infinities and NaN. */
export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** f32 value → f16 bits, rounding to nearest even; overflow goes to ±Infinity. */
export function f32ToF16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf / NaN
  const e = exp - 127 + 15; // rebiased exponent
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    // Subnormal half (or zero): shift the full mantissa (with its implicit 1) into place.
    if (e < -10) return sign; // too small: ±0
    mant |= 0x800000;
    const shift = 14 - e; // 14..24
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++; // may carry into the exponent: still correct
  return sign | half;
}

/** A tensor's values widened to f32 (a copy for f16/bf16; the same array for f32). */
export function toFloat32(t: Pick<Tensor, 'dtype' | 'data'>): Float32Array {
  if (t.dtype === 'f32') return t.data as Float32Array;
  const src = t.data as Uint16Array;
  const out = new Float32Array(src.length);
  if (t.dtype === 'bf16') {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
  } else {
    for (let i = 0; i < src.length; i++) out[i] = f16ToF32(src[i]!);
  }
  return out;
}

/** f32 values narrowed (or copied) to the given dtype's storage array. */
export function fromFloat32(values: Float32Array, dtype: WeightDType): Float32Array | Uint16Array {
  if (dtype === 'f32') return new Float32Array(values);
  const out = new Uint16Array(values.length);
  const conv = dtype === 'bf16' ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < values.length; i++) out[i] = conv(values[i]!);
  return out;
}
