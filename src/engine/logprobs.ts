// Log-probabilities of given tokens at every position of a sequence, which multiple-choice scoring and perplexity
// need (lastLogits gives only the last position). The forward pass is the usual batched prefill; a hook appended
// after any others on the last layer's hook_resid_post keeps the final residual stream of every position, and the
// forward pass's own tail (final norm, unembedding, soft-capping) is applied to the positions asked for.
import { ScalpelError } from '../errors.js';
import { KVCache } from './cache.js';
import { DEFAULT_BATCH_SIZE, pack, type RunOptions } from './generate.js';
import type { Model } from './model.js';
import { rmsnorm, softcap } from './ops.js';
import { type HookMap, hookName } from './types.js';

/** A token sequence whose tokens ids[from], ids[from+1], … are scored, each given the ones before it. */
export interface ScoredSequence {
  ids: readonly number[];
  /** First scored position, at least 1 (the first token has nothing to be predicted from). */
  from: number;
}

/** Unembedded rows per matmul: bounds the logits buffer at ROWS · vocab floats (large vocabularies). */
const ROWS = 64;

function check(model: Model, seqs: readonly ScoredSequence[]): void {
  for (const [i, s] of seqs.entries()) {
    if (!Number.isInteger(s.from) || s.from < 1 || s.from >= s.ids.length)
      throw new ScalpelError(`sequence ${i}: from = ${s.from} must be in [1, ${s.ids.length}) (its length)`);
    for (const t of s.ids)
      if (!Number.isInteger(t) || t < 0 || t >= model.vocabSize)
        throw new ScalpelError(`sequence ${i}: token id ${t} is outside the vocabulary [0, ${model.vocabSize})`);
  }
}

/** Natural-log softmax of one row at `target`, summed in float64. */
function logProbAt(row: Float32Array, target: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  return row[target]! - max - Math.log(sum);
}

/**
 * For every sequence, log p(ids[t] | ids[<t]) for t = from … length−1 (natural log, float64), in the caller's order.
 * Sequences are sorted by length and packed into left-padded batches of `batchSize` (one forward pass each), so a
 * batch's results equal each sequence run alone. `hooks` (an intervention) act as in lastLogits.
 */
export function sequenceLogProbs(model: Model, seqs: readonly ScoredSequence[], opts: RunOptions = {}): Float64Array[] {
  check(model, seqs);
  const a = model.args;
  const D = model.width;
  const V = model.vocabSize;
  const W = model.weights;
  const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new ScalpelError(`batchSize must be a positive integer, got ${batchSize}`);
  const order = seqs.map((_, i) => i).sort((x, y) => seqs[x]!.ids.length - seqs[y]!.ids.length || x - y);
  const out: Float64Array[] = new Array(seqs.length);
  const hidden = new Float32Array(ROWS * D);
  const logits = new Float32Array(ROWS * V);
  let done = 0;
  let cache: KVCache | undefined;
  for (let i = 0; i < order.length; i += batchSize) {
    const idx = order.slice(i, i + batchSize);
    const p = pack(idx.map((j) => seqs[j]!.ids));
    // The final residual stream of the whole block, as the forward pass's tail would read it (after every other
    // hook at that point, so an intervention there has acted).
    let last: Float32Array | undefined;
    const hooks: HookMap = new Map([...(opts.hooks ?? new Map())].map(([k, v]) => [k, [...v]]));
    const name = hookName(model.numLayers - 1, 'hook_resid_post');
    hooks.set(name, [...(hooks.get(name) ?? []), (act) => (last = act.slice())]);
    // One cache for the call, grown when a batch needs more (batches come shortest first).
    if (!cache?.fits(p.batch, p.seq)) cache = new KVCache(a, p.batch, p.seq);
    model.forward({ ...p, start: 0, cache, hooks });
    if (!last) throw new Error('internal: the final residual stream was not seen');
    for (const [b, j] of idx.entries()) {
      const { ids, from } = seqs[j]!;
      const result = new Float64Array(ids.length - from);
      // Token t is predicted at the column of token t−1: firstReal + t − 1 in this row.
      const col0 = p.firstReal[b]! + from - 1;
      for (let r0 = 0; r0 < result.length; r0 += ROWS) {
        const rows = Math.min(ROWS, result.length - r0);
        const base = (b * p.seq + col0 + r0) * D;
        const h = hidden.subarray(0, rows * D);
        h.set(last.subarray(base, base + rows * D));
        // logits = softcap(rmsnorm(h) · W_lmᵀ), as at the end of Model.forwardMany
        rmsnorm(h, h, W.finalNorm, rows, D, a.normEps);
        const lg = logits.subarray(0, rows * V);
        model.kernels.matmul(lg, h, W.lmHead, rows);
        if (a.finalSoftcap !== null) softcap(lg, a.finalSoftcap);
        for (let r = 0; r < rows; r++) result[r0 + r] = logProbAt(lg.subarray(r * V, (r + 1) * V), ids[from + r0 + r]!);
      }
      out[j] = result;
    }
    done += idx.length;
    opts.onProgress?.(done, seqs.length);
  }
  return out;
}
