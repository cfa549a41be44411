// The data types every layer shares, from the file readers up to the method: a tensor as stored in a checkpoint and
// its storage width. Part of the ground layer with errors.ts, so it imports nothing.

/** Storage width of a weight tensor. f16/bf16 stay 16-bit in memory (raw bits in a Uint16Array). */
export type WeightDType = 'f32' | 'f16' | 'bf16';

/** A tensor as read from a checkpoint, in its stored dtype, row-major. */
export interface Tensor {
  name: string;
  dtype: WeightDType;
  shape: number[];
  /** f32 → Float32Array; f16 / bf16 → Uint16Array of raw bits. */
  data: Float32Array | Uint16Array;
}
