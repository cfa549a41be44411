// ggml's Q8_0 block quantization, as llama.cpp stores it in GGUF files: each row is cut into blocks of 32 values;
// a block is its scale d = max|x| / 127 as an f16, then 32 signed bytes q = round(x / d) (half away from zero), so
// x ≈ d · q. 34 bytes per 32 values. The arithmetic follows ggml's reference quantize_row_q8_0_ref (f32 throughout,
// x · (1/d), roundf), so the bytes match what llama-quantize writes for the same f32 input.
import { ScalpelError } from '../errors.js';
import { f16ToF32, f32ToF16 } from './dtype.js';

export const Q8_0_BLOCK = 32;
export const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK;

const fr = Math.fround;

/** C's roundf: to nearest, halves away from zero. */
const roundAway = (x: number): number => (x < 0 ? -Math.round(-x) : Math.round(x));

/** Bytes of `count` values in Q8_0 (count must be a multiple of 32). */
export function q8_0Bytes(count: number): number {
  if (count % Q8_0_BLOCK !== 0) throw new ScalpelError(`Q8_0: ${count} values are not a whole number of 32-blocks`);
  return (count / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES;
}

/** Quantizes f32 values (a multiple of 32, rows laid end to end) to Q8_0 blocks. */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const out = new Uint8Array(q8_0Bytes(x.length));
  const view = new DataView(out.buffer);
  for (let b = 0, o = 0; b < x.length; b += Q8_0_BLOCK, o += Q8_0_BLOCK_BYTES) {
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(x[b + j]!));
    const d = fr(amax / 127);
    const id = d ? fr(1 / d) : 0;
    view.setUint16(o, f32ToF16(d), true);
    for (let j = 0; j < Q8_0_BLOCK; j++) view.setInt8(o + 2 + j, roundAway(fr(x[b + j]! * id)));
  }
  return out;
}

/** Q8_0 blocks back to f32 values (d · q), for checks and tests. */
export function dequantizeQ8_0(bytes: Uint8Array): Float32Array {
  if (bytes.length % Q8_0_BLOCK_BYTES !== 0)
    throw new ScalpelError(`Q8_0: ${bytes.length} bytes are not a whole number of 34-byte blocks`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array((bytes.length / Q8_0_BLOCK_BYTES) * Q8_0_BLOCK);
  for (let o = 0, i = 0; o < bytes.length; o += Q8_0_BLOCK_BYTES) {
    const d = f16ToF32(view.getUint16(o, true));
    for (let j = 0; j < Q8_0_BLOCK; j++) out[i++] = d * view.getInt8(o + 2 + j);
  }
  return out;
}
