// How sure a compliance rate is, and whether a before/after change on the same prompts is more than chance: the
// Wilson score interval of a proportion and the exact McNemar test on paired outcomes. Checked against statsmodels
// (tools/make_stats_fixture.py → test/fixtures/expected/stats/stats.json).

/** The 97.5% quantile of the standard normal: the z of a two-sided 95% interval. */
export const Z95 = 1.959963984540054;

export interface Interval {
  lo: number;
  hi: number;
}

/**
 * Wilson score interval for k successes in n trials. Unlike the normal (Wald) interval it stays inside [0, 1] and
 * is not empty at k = 0 or k = n, which is where compliance rates of small evaluation sets often sit.
 * null when n = 0 (nothing measured).
 */
export function wilsonInterval(k: number, n: number, z = Z95): Interval | null {
  if (!(n > 0)) return null;
  if (!(k >= 0 && k <= n)) throw new RangeError(`wilsonInterval: k = ${k} outside [0, ${n}]`);
  const p = k / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denom;
  const half = (z / denom) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  // Rounding can leave the bounds a hair outside [0, 1] (or off the exact 0/1 at k = 0 or n).
  return { lo: k === 0 ? 0 : Math.max(0, centre - half), hi: k === n ? 1 : Math.min(1, centre + half) };
}

/** Paired outcomes of the same prompts under two conditions: only the discordant pairs carry information. */
export interface PairedCounts {
  /** Pairs that changed one way (e.g. refused before, answered after). */
  b: number;
  /** Pairs that changed the other way. */
  c: number;
}

/**
 * Exact McNemar test: two-sided binomial test of min(b, c) among b + c discordant pairs at p = 1/2, i.e.
 * min(1, 2 · P[X ≤ min(b, c)]) for X ~ Binomial(b + c, 1/2). 1 when nothing changed.
 */
export function mcnemarExact({ b, c }: PairedCounts): number {
  const n = b + c;
  if (n === 0) return 1;
  const k = Math.min(b, c);
  // Sum the binomial terms in log space: 2^-n underflows past n ≈ 1074, and large sweeps can get there.
  let logTerm = -n * Math.LN2; // log P[X = 0]
  let logSum = logTerm;
  for (let i = 1; i <= k; i++) {
    logTerm += Math.log((n - i + 1) / i);
    logSum = logAddExp(logSum, logTerm);
  }
  return Math.min(1, 2 * Math.exp(logSum));
}

function logAddExp(a: number, b: number): number {
  const hi = Math.max(a, b);
  return hi + Math.log1p(Math.exp(Math.min(a, b) - hi));
}
