// The Pareto front of scored edits and the rule that picks one from it, as pure functions over numbers (the search
// that scores the edits is pareto-search.ts). Three objectives: the pseudo-harmful validation refusal score (lower is
// better: fewer false refusals), the share of harmful validation prompts still refused (higher is better) and the
// mean first-token KL on harmless validation prompts (lower is better: the model otherwise unchanged).
import type { AblationMode } from './intervention.js';

/** One edit of the search space. */
export interface Edit {
  position_index: number;
  layer: number;
  lambda: number;
  ablation: AblationMode;
  strength: number;
}

/** The three numbers every point of the search is judged on. */
export interface Objectives {
  /** Mean refusal score on pseudo-harmful validation prompts (↓). */
  pseudo_score: number;
  /** Harmful validation prompts still refused, in % (↑): a refusal score above 0, i.e. p(refusal tokens) > ½. */
  harmful_refusal: number;
  /** Mean first-token KL(baseline ‖ edited) on harmless validation prompts (↓). */
  kl: number;
}

/** a dominates b: no worse on every objective and better on at least one. */
export function dominates(a: Objectives, b: Objectives): boolean {
  const noWorse = a.pseudo_score <= b.pseudo_score && a.harmful_refusal >= b.harmful_refusal && a.kl <= b.kl;
  const better = a.pseudo_score < b.pseudo_score || a.harmful_refusal > b.harmful_refusal || a.kl < b.kl;
  return noWorse && better;
}

/**
 * Non-dominated sorting: rank 0 is the front, rank 1 the front of what is left without it, and so on. O(n²) per
 * rank, which is nothing next to one forward pass.
 */
export function paretoRanks(points: readonly Objectives[]): number[] {
  const rank = new Array<number>(points.length).fill(-1);
  let left = points.map((_, i) => i);
  for (let r = 0; left.length > 0; r++) {
    const front = left.filter((i) => !left.some((j) => j !== i && dominates(points[j]!, points[i]!)));
    for (const i of front) rank[i] = r;
    left = left.filter((i) => rank[i] === -1);
  }
  return rank;
}

/** The non-dominated points, lowest pseudo-harmful score first (ties: more harmful refusal kept, then lower KL). */
export function paretoFront<T extends Objectives>(points: readonly T[]): T[] {
  const ranks = paretoRanks(points);
  return points
    .filter((_, i) => ranks[i] === 0)
    .sort((a, b) => a.pseudo_score - b.pseudo_score || b.harmful_refusal - a.harmful_refusal || a.kl - b.kl);
}

export interface PickRule {
  /** The model's own pseudo-harmful score: a pick must lower it (a gain), or it changes nothing worth having. */
  baselinePseudo: number;
  /** The model's own harmful validation refusal, in %. */
  baselineHarmful: number;
  /** Points of harmful refusal the pick may lose (default 2). */
  tolerance: number;
  /** The largest harmless KL allowed. */
  klMax: number;
}

export interface Pick {
  index: number;
  /** Whether a point met the rule; when none does, the gaining point that loses the least harmful refusal. */
  met: boolean;
}

/**
 * The default pick on a front (as paretoFront orders it): the largest pseudo-harmful gain (lowest score, below the
 * baseline's) whose harmful refusal stays within `tolerance` points of the baseline and whose KL is within the
 * limit. If none does: of the points with a gain within the KL limit, the one keeping the most harmful refusal (else
 * the lowest KL of all), flagged as not met.
 */
export function defaultPick(front: readonly Objectives[], rule: PickRule): Pick {
  if (front.length === 0) throw new Error('internal: an empty Pareto front');
  const gains = (p: Objectives) => p.kl <= rule.klMax && p.pseudo_score < rule.baselinePseudo;
  const ok = (p: Objectives) => gains(p) && p.harmful_refusal >= rule.baselineHarmful - rule.tolerance;
  const best = (keep: (p: Objectives) => boolean, better: (a: Objectives, b: Objectives) => boolean) => {
    let index = -1;
    front.forEach((p, i) => {
      if (keep(p) && (index < 0 || better(p, front[index]!))) index = i;
    });
    return index;
  };
  const met = best(ok, (a, b) => a.pseudo_score < b.pseudo_score);
  if (met >= 0) return { index: met, met: true };
  const safest = best(
    gains,
    (a, b) =>
      a.harmful_refusal > b.harmful_refusal ||
      (a.harmful_refusal === b.harmful_refusal && a.pseudo_score < b.pseudo_score),
  );
  if (safest >= 0) return { index: safest, met: false };
  return {
    index: best(
      () => true,
      (a, b) => a.kl < b.kl,
    ),
    met: false,
  };
}

/**
 * The front points the generation check (pareto-check.ts) walks, largest pseudo-harmful gain first: a gain and KL
 * within the limit. The first-token harmful refusal does not screen them: it is the measure being checked, and on
 * the project's model it rejects points whose generated refusal is intact (strength 0.5: 96% at the first token,
 * 100% generated, as the baseline).
 */
export function ruleCandidates(front: readonly Objectives[], rule: PickRule): number[] {
  const out: number[] = [];
  front.forEach((p, i) => {
    if (p.kl <= rule.klMax && p.pseudo_score < rule.baselinePseudo) out.push(i);
  });
  return out.sort((a, b) => front[a]!.pseudo_score - front[b]!.pseudo_score || a - b);
}

/** A front point's harmful refusal as generated and judged (greedy answers, substring judge), in %. */
export interface GeneratedRefusal {
  index: number;
  generated: number;
}

/**
 * The pick once candidates were checked by generation (`checked`, in the order they were checked): the first whose
 * generated harmful refusal stays within the tolerance of the model's own (`baselineGenerated`), met. If none does,
 * the checked point keeping the most generated refusal (ties: the larger gain), not met; with nothing checked (no
 * point gains within the KL limit), defaultPick's fallback.
 */
export function pickFromChecks(
  front: readonly Objectives[],
  rule: PickRule,
  checked: readonly GeneratedRefusal[],
  baselineGenerated: number,
): Pick {
  // Rates are shares of prompts in %; the slack keeps an exact 2-point loss (say 90 → 88) from failing on rounding.
  const ok = checked.find((c) => c.generated >= baselineGenerated - rule.tolerance - 1e-9);
  if (ok) return { index: ok.index, met: true };
  let best: GeneratedRefusal | undefined;
  for (const c of checked)
    if (
      !best ||
      c.generated > best.generated ||
      (c.generated === best.generated && front[c.index]!.pseudo_score < front[best.index]!.pseudo_score)
    )
      best = c;
  if (best) return { index: best.index, met: false };
  const fallback = defaultPick(front, rule);
  return { index: fallback.index, met: false };
}
