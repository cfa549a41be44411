// The KV cache: keys and values of every layer for `slots` sequences of up to `capacity` positions.
// Layout per layer: [slot][kv head][position][head dim], so one head's keys are contiguous for the attention loop.
import type { ModelArgs } from './args.js';

export class KVCache {
  readonly k: Float32Array[];
  readonly v: Float32Array[];

  constructor(
    readonly args: ModelArgs,
    readonly slots: number,
    readonly capacity: number,
  ) {
    const size = slots * args.numKvHeads * capacity * args.headDim;
    this.k = Array.from({ length: args.numLayers }, () => new Float32Array(size));
    this.v = Array.from({ length: args.numLayers }, () => new Float32Array(size));
  }

  /** Whether this cache can hold `slots` sequences of `capacity` positions. */
  fits(slots: number, capacity: number): boolean {
    return slots <= this.slots && capacity <= this.capacity;
  }

  /** Offset of (slot, kv head, position 0) in a layer's array. */
  offset(slot: number, head: number): number {
    return (slot * this.args.numKvHeads + head) * this.capacity * this.args.headDim;
  }

  /**
   * Stores k and v [batch, seq, kvHeads·headDim] of one layer at positions start … start+seq−1 of each row's slot.
   */
  write(
    layer: number,
    k: Float32Array,
    v: Float32Array,
    batch: number,
    seq: number,
    start: number,
    slots: Int32Array,
  ): void {
    const { numKvHeads: H, headDim: D } = this.args;
    const K = this.k[layer]!,
      V = this.v[layer]!;
    for (let b = 0; b < batch; b++) {
      for (let i = 0; i < seq; i++) {
        const src = (b * seq + i) * H * D;
        for (let h = 0; h < H; h++) {
          const dst = this.offset(slots[b]!, h) + (start + i) * D;
          K.set(k.subarray(src + h * D, src + (h + 1) * D), dst);
          V.set(v.subarray(src + h * D, src + (h + 1) * D), dst);
        }
      }
    }
  }
}
