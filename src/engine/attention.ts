// Causal self-attention over the KV cache for a left-padded batch.
//
// Row b's real tokens start at column firstReal[b]; the query at column c sees the keys at columns j with
// firstReal[b] ≤ j ≤ c (and c − window < j for sliding layers). Padding queries (c < firstReal[b]) output zeros.
// Query head h reads kv head h / (numHeads / numKvHeads) (grouped-query attention).
import type { KVCache } from './cache.js';

export interface AttentionArgs {
  batch: number;
  seq: number;
  /** Column of this call's first position. */
  start: number;
  firstReal: Int32Array;
  slots: Int32Array;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  scale: number;
  softcap: number | null;
  window: number | null;
}

let scores = new Float64Array(0);
let acc = new Float64Array(0);

/** out[b, i, h, :] = Σ_j softmax_j(softcap(q·k_j · scale)) v_j, with q [batch, seq, heads·headDim]. */
export function attention(out: Float32Array, q: Float32Array, cache: KVCache, layer: number, a: AttentionArgs): void {
  const { batch, seq, start, numHeads: H, numKvHeads: Hkv, headDim: D, scale, softcap, window } = a;
  const K = cache.k[layer]!,
    V = cache.v[layer]!;
  const group = H / Hkv;
  if (scores.length < start + seq) scores = new Float64Array(start + seq);
  if (acc.length < D) acc = new Float64Array(D);
  for (let b = 0; b < batch; b++) {
    const first = a.firstReal[b]!;
    for (let h = 0; h < H; h++) {
      const kv = cache.offset(a.slots[b]!, Math.floor(h / group));
      for (let i = 0; i < seq; i++) {
        const c = start + i;
        const qo = ((b * seq + i) * H + h) * D;
        if (c < first) {
          out.fill(0, qo, qo + D);
          continue;
        }
        const lo = window === null ? first : Math.max(first, c - window + 1);
        // scores_j = q · k_j · scale (soft-capped), then softmax over j
        let max = -Infinity;
        for (let j = lo; j <= c; j++) {
          const ko = kv + j * D;
          let s = 0;
          for (let d = 0; d < D; d++) s += q[qo + d]! * K[ko + d]!;
          s = Math.fround(s) * scale;
          if (softcap !== null) s = softcap * Math.tanh(s / softcap);
          scores[j] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let j = lo; j <= c; j++) {
          const e = Math.exp(scores[j]! - max);
          scores[j] = e;
          sum += e;
        }
        // out = Σ_j p_j v_j
        acc.fill(0, 0, D);
        for (let j = lo; j <= c; j++) {
          const p = scores[j]! / sum;
          const vo = kv + j * D;
          for (let d = 0; d < D; d++) acc[d] += p * V[vo + d]!;
        }
        for (let d = 0; d < D; d++) out[qo + d] = acc[d]!;
      }
    }
  }
}
