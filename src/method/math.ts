// The numeric core of the method, on plain typed arrays: refusal score, KL divergence, difference in means,
// partial orthogonalization. Everything that accumulates does so in float64.

/** log-softmax of a logit vector, in float64. */
export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i]! - lse;
  return out;
}

export const REFUSAL_EPS = 1e-8;

/**
 * Refusal score of one next-token distribution: P = Σ softmax(logits)[t] over the refusal tokens,
 * score = log(P + 1e-8) − log(1 − P + 1e-8). Positive means the model leans towards refusing.
 */
export function refusalScore(logits: ArrayLike<number>, refusalTokens: readonly number[]): number {
  const lp = logSoftmax(logits);
  let p = 0;
  for (const t of new Set(refusalTokens)) p += Math.exp(lp[t]!);
  p = Math.min(1, Math.max(0, p));
  return Math.log(p + REFUSAL_EPS) - Math.log(1 - p + REFUSAL_EPS);
}

/** KL(P‖Q) in nats for next-token distributions given as logits: Σ p (log p − log q). */
export function klDivergence(logitsP: ArrayLike<number>, logitsQ: ArrayLike<number>): number {
  const lp = logSoftmax(logitsP);
  const lq = logSoftmax(logitsQ);
  let kl = 0;
  for (let i = 0; i < lp.length; i++) {
    const p = Math.exp(lp[i]!);
    if (p > 0) kl += p * (lp[i]! - lq[i]!);
  }
  return Math.max(0, kl);
}

export function mean(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

export function norm(a: ArrayLike<number>): number {
  return Math.sqrt(dot(a, a));
}

/** a − b, element-wise, in float64. */
export function sub(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! - b[i]!;
  return out;
}

/** a / |a| (a zero vector stays zero). */
export function unit(a: ArrayLike<number>): Float64Array {
  const n = norm(a);
  const out = new Float64Array(a.length);
  if (n > 0) for (let i = 0; i < a.length; i++) out[i] = a[i]! / n;
  return out;
}

/**
 * Partial orthogonalization of the false-refusal candidate w against the true-refusal candidate r:
 * w' = w − λ (w·r / (|r|² + 1e-8)) r. λ = 1 removes all of r's component, λ = 0 leaves w as it is.
 */
export function orthogonalize(w: ArrayLike<number>, r: ArrayLike<number>, lambda: number): Float64Array {
  const coef = (lambda * dot(w, r)) / (dot(r, r) + 1e-8);
  const out = new Float64Array(w.length);
  for (let i = 0; i < w.length; i++) out[i] = w[i]! - coef * r[i]!;
  return out;
}

/** ŵ = w'/|w'| with w' the partial orthogonalization above. */
export function ablationDirection(w: ArrayLike<number>, r: ArrayLike<number>, lambda: number): Float64Array {
  return unit(orthogonalize(w, r, lambda));
}

/**
 * Running float64 sums of activations at the last `k` positions of every layer: slot (i, l) is position i
 * (0 = k-th from the end … k−1 = last) at layer l. Feed it [batch, seq, width] blocks; read the means.
 */
export class MeanAccumulator {
  readonly sums: Float64Array;
  readonly counts: Float64Array;
  constructor(
    readonly positions: number,
    readonly layers: number,
    readonly width: number,
  ) {
    this.sums = new Float64Array(positions * layers * width);
    this.counts = new Float64Array(positions * layers);
  }

  /** Adds the last `positions` columns of every valid row of a [batch, seq, width] block at `layer`. */
  addBlock(layer: number, act: Float32Array, batch: number, seq: number, valid?: Uint8Array): void {
    const { positions: k, width: d } = this;
    if (seq < k) throw new Error(`activation block has ${seq} positions, need at least ${k}`);
    for (let b = 0; b < batch; b++) {
      for (let i = 0; i < k; i++) {
        const col = seq - k + i;
        if (valid && !valid[b * seq + col]) continue;
        const src = (b * seq + col) * d;
        const slot = i * this.layers + layer;
        const dst = slot * d;
        for (let j = 0; j < d; j++) this.sums[dst + j]! += act[src + j]!;
        this.counts[slot]! += 1;
      }
    }
  }

  /** Adds one prompt's activations, laid out [positions, layers, width] like the sums. */
  addRow(row: ArrayLike<number>): void {
    for (let j = 0; j < this.sums.length; j++) this.sums[j]! += row[j]!;
    for (let slot = 0; slot < this.counts.length; slot++) this.counts[slot]! += 1;
  }

  /** Mean vectors, [positions, layers, width] in float64. */
  means(): Float64Array {
    const d = this.width;
    const out = new Float64Array(this.sums.length);
    for (let slot = 0; slot < this.counts.length; slot++) {
      const c = this.counts[slot]!;
      if (c === 0) continue;
      for (let j = 0; j < d; j++) out[slot * d + j] = this.sums[slot * d + j]! / c;
    }
    return out;
  }
}

/** Difference in means a − b of two [positions, layers, width] mean tensors. */
export function diffInMeans(a: Float64Array, b: Float64Array): Float64Array {
  return sub(a, b);
}
