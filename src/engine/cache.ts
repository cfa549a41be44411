// The KV cache: keys and values of every layer for `slots` sequences of up to `capacity` positions.
// Layout per layer: [slot][kv head][position][head dim], so one head's keys are contiguous for the attention loop.
// Batched prefill (generate.ts) shares one cache among the rows of a padded batch, one slot each; the scheduler
// (scheduler.ts) gives every sequence a one-slot cache of its own that grows with it and is dropped when it ends.
import type { ModelArgs } from './args.js';

export class KVCache {
  k: Float32Array[];
  v: Float32Array[];
  private cap: number;

  constructor(
    readonly args: ModelArgs,
    readonly slots: number,
    capacity: number,
  ) {
    this.cap = capacity;
    const size = slots * args.numKvHeads * capacity * args.headDim;
    this.k = Array.from({ length: args.numLayers }, () => new Float32Array(size));
    this.v = Array.from({ length: args.numLayers }, () => new Float32Array(size));
  }

  /** Positions per slot. */
  get capacity(): number {
    return this.cap;
  }

  /** Bytes held for keys and values. */
  get bytes(): number {
    return 2 * this.args.numLayers * this.slots * this.args.numKvHeads * this.cap * this.args.headDim * 4;
  }

  /** Bytes one position of one sequence costs: keys and values of every layer and kv head, in f32. */
  static bytesPerPosition(args: ModelArgs): number {
    return 2 * args.numLayers * args.numKvHeads * args.headDim * 4;
  }

  /** Whether this cache can hold `slots` sequences of `capacity` positions. */
  fits(slots: number, capacity: number): boolean {
    return slots <= this.slots && capacity <= this.cap;
  }

  /**
   * Makes room for `positions` positions per slot, keeping what is stored. Grows at least to double the capacity,
   * so a sequence that grows one token at a time is copied O(log n) times.
   */
  reserve(positions: number): void {
    if (positions <= this.cap) return;
    const next = Math.max(positions, 2 * this.cap);
    const { numKvHeads: H, headDim: D } = this.args;
    const grow = (old: Float32Array): Float32Array => {
      const out = new Float32Array(this.slots * H * next * D);
      for (let sh = 0; sh < this.slots * H; sh++)
        out.set(old.subarray(sh * this.cap * D, (sh + 1) * this.cap * D), sh * next * D);
      return out;
    };
    this.k = this.k.map(grow);
    this.v = this.v.map(grow);
    this.cap = next;
  }

  /** Offset of (slot, kv head, position 0) in a layer's array. */
  offset(slot: number, head: number): number {
    return (slot * this.args.numKvHeads + head) * this.cap * this.args.headDim;
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
