// A linear harmfulness probe: weighted, L2-regularised logistic regression fitted by Newton's method (IRLS), in
// float64. The conditional ablation's gate (gate.ts) is one such probe on the residual stream; it has a few hundred
// weights, so an exact second-order solve is cheaper and more predictable than any gradient schedule.

/** score(x) = weights · x + bias: the log-odds that x is from the positive class. */
export interface LinearProbe {
  weights: Float64Array;
  bias: number;
}

export interface LogisticOptions {
  /** L2 penalty on the weights (not the bias), against the weighted mean log-loss (weights sum to 1). */
  l2: number;
  /** Each row's weight (default: all equal); normalised to sum to 1. */
  rowWeights?: readonly number[];
  maxIterations?: number;
  /** Stop when the largest Newton step component is below this. */
  tolerance?: number;
  /** Where Newton's method starts (e.g. the solution at a nearby l2); default zero. */
  start?: LinearProbe;
}

export function probeScore(p: LinearProbe, x: ArrayLike<number>): number {
  let s = p.bias;
  for (let j = 0; j < p.weights.length; j++) s += p.weights[j]! * x[j]!;
  return s;
}

const sigmoid = (z: number): number => (z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));

/**
 * Minimises Σ_i v_i · logloss(y_i, w·x_i + b) + (l2 / 2)‖w‖² (v the normalised row weights) over w and b.
 * Rows are feature vectors of one length; labels are 0 or 1. The objective is strictly convex for l2 > 0, so Newton's
 * method converges to the one minimum.
 */
export function fitLogistic(
  rows: readonly ArrayLike<number>[],
  labels: readonly number[],
  o: LogisticOptions,
): LinearProbe {
  const n = rows.length;
  if (n === 0 || labels.length !== n) throw new Error('fitLogistic: expected rows and as many labels');
  if (!(o.l2 > 0)) throw new Error('fitLogistic: l2 must be > 0');
  const d = rows[0]!.length;
  const raw = o.rowWeights ?? rows.map(() => 1);
  const total = raw.reduce((a, v) => a + v, 0);
  const v = raw.map((x) => x / total);
  const m = d + 1; // the bias is the last unknown
  const theta = new Float64Array(m);
  if (o.start) {
    theta.set(o.start.weights);
    theta[d] = o.start.bias;
  }
  const grad = new Float64Array(m);
  const hess = new Float64Array(m * m);
  const maxIt = o.maxIterations ?? 50;
  const tol = o.tolerance ?? 1e-10;
  for (let it = 0; it < maxIt; it++) {
    grad.fill(0);
    hess.fill(0);
    for (let i = 0; i < n; i++) {
      const x = rows[i]!;
      let z = theta[d]!;
      for (let j = 0; j < d; j++) z += theta[j]! * x[j]!;
      const p = sigmoid(z);
      const g = v[i]! * (p - labels[i]!);
      const h = v[i]! * p * (1 - p);
      for (let j = 0; j < d; j++) {
        const hx = h * x[j]!;
        grad[j]! += g * x[j]!;
        const row = j * m;
        for (let k = 0; k <= j; k++) hess[row + k]! += hx * x[k]!;
        hess[row + d]! += hx;
      }
      grad[d]! += g;
      hess[d * m + d]! += h;
    }
    for (let j = 0; j < d; j++) {
      grad[j]! += o.l2 * theta[j]!;
      hess[j * m + j]! += o.l2;
    }
    // Mirror the lower triangle (and the bias column) into a full symmetric matrix.
    for (let j = 0; j < m; j++) for (let k = 0; k < j; k++) hess[k * m + j] = hess[j * m + k]!;
    for (let j = 0; j < d; j++) hess[d * m + j] = hess[j * m + d]!;
    // The bias is not penalised; a tiny ridge keeps the solve defined when every row has the same label.
    hess[d * m + d]! += 1e-12;
    const step = solveSpd(hess, grad, m);
    let biggest = 0;
    for (let j = 0; j < m; j++) {
      theta[j]! -= step[j]!;
      biggest = Math.max(biggest, Math.abs(step[j]!));
    }
    if (biggest < tol) break;
  }
  return { weights: theta.slice(0, d), bias: theta[d]! };
}

/** Solves A x = b for a symmetric positive definite A (m × m, row-major) by Cholesky. */
function solveSpd(a: Float64Array, b: Float64Array, m: number): Float64Array {
  const l = new Float64Array(m * m);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * m + j]!;
      for (let k = 0; k < j; k++) s -= l[i * m + k]! * l[j * m + k]!;
      if (i === j) l[i * m + i] = Math.sqrt(Math.max(s, 1e-300));
      else l[i * m + j] = s / l[j * m + j]!;
    }
  }
  const y = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    let s = b[i]!;
    for (let k = 0; k < i; k++) s -= l[i * m + k]! * y[k]!;
    y[i] = s / l[i * m + i]!;
  }
  const x = new Float64Array(m);
  for (let i = m - 1; i >= 0; i--) {
    let s = y[i]!;
    for (let k = i + 1; k < m; k++) s -= l[k * m + i]! * x[k]!;
    x[i] = s / l[i * m + i]!;
  }
  return x;
}

/** Area under the ROC curve: the chance a positive scores above a negative (ties count half). */
export function rocAuc(positives: readonly number[], negatives: readonly number[]): number {
  const all = [...positives.map((s) => [s, 1] as const), ...negatives.map((s) => [s, 0] as const)].sort(
    (a, b) => a[0] - b[0],
  );
  // Mann–Whitney U from mid-ranks.
  let rankSum = 0;
  for (let i = 0; i < all.length; ) {
    let j = i;
    while (j < all.length && all[j]![0] === all[i]![0]) j++;
    const mid = (i + j + 1) / 2;
    for (let k = i; k < j; k++) if (all[k]![1] === 1) rankSum += mid;
    i = j;
  }
  const np = positives.length;
  const nn = negatives.length;
  return (rankSum - (np * (np + 1)) / 2) / (np * nn);
}
