// `--search halving`: the paper's selection rule (lowest pseudo-harmful validation refusal score among candidates
// within the KL limit, then the harm guard) reached by successive halving instead of scoring every candidate on
// every validation prompt. Every live candidate is scored on the first FIRST_N pseudo-harmful and harmless
// validation prompts; the best third (within the KL limit first, then by score) goes on to twice as many prompts,
// and so on until at least KEPT candidates are scored on all n-val prompts. A candidate keeps its per-prompt
// numbers, so growing it from n to 2n costs only the n new prompts. At the paper's n-val 32 that is 4 → 8 → 16 → 32
// prompts, about a fifth of the exhaustive sweep's forward passes once there are more than a few dozen candidates.
// The final rule is applied to full-n figures only; if no survivor passes it (the KL limit at full n, or the harm
// guard), the halved-out candidates are scored in full a few at a time, in the order halving left them, until one
// passes: like the exhaustive sweep walking down its ranking, at worst its cost.
import type { Slot } from './candidates.js';
import { mean } from './math.js';

export const HALVING = { eta: 3, firstN: 4, kept: 4 };

/** A candidate's per-prompt figures so far: refusal scores on pseudo-harmful prompts, KL on harmless ones. */
export interface Scoring {
  slot: Slot;
  pseudo: number[];
  kl: number[];
}

/** What the search needs of select: score `slot` on prompts [from, to) of each validation set. */
export type Measure = (s: Scoring, to: number) => Promise<void>;

export interface HalvingResult {
  /** Scored on every validation prompt, in rank order (within the KL limit first, then by score). */
  full: Scoring[];
  /** Halved out: their figures are estimates from s.pseudo.length prompts. */
  dropped: Scoring[];
  rungs: { n: number; candidates: number }[];
}

/** The prompt counts of the rungs: FIRST_N doubling, then n-val itself. */
export function rungSizes(nVal: number, firstN = HALVING.firstN): number[] {
  const sizes: number[] = [];
  for (let n = Math.min(firstN, nVal); n < nVal; n *= 2) sizes.push(n);
  sizes.push(nVal);
  return sizes;
}

/** Rank order: estimated KL within the limit first, then the lowest mean pseudo-harmful score. */
export function rankScorings(all: Scoring[], klThreshold: number): Scoring[] {
  const over = (s: Scoring) => Number(mean(s.kl) > klThreshold);
  return all.slice().sort((a, b) => over(a) - over(b) || mean(a.pseudo) - mean(b.pseudo));
}

export async function successiveHalving(
  slots: Slot[],
  nVal: number,
  klThreshold: number,
  measure: Measure,
  onRung?: (n: number, candidates: number) => void,
): Promise<HalvingResult> {
  const scorings = slots.map((slot) => ({ slot, pseudo: [], kl: [] }) as Scoring);
  const sizes = rungSizes(nVal);
  const rungs: HalvingResult['rungs'] = [];
  let alive = scorings;
  for (const [r, n] of sizes.entries()) {
    for (const s of alive) await measure(s, n);
    rungs.push({ n, candidates: alive.length });
    onRung?.(n, alive.length);
    const ranked = rankScorings(alive, klThreshold);
    alive =
      r === sizes.length - 1 ? ranked : ranked.slice(0, Math.max(HALVING.kept, Math.ceil(alive.length / HALVING.eta)));
  }
  const kept = new Set(alive);
  return { full: alive, dropped: scorings.filter((s) => !kept.has(s)), rungs };
}

/** Halved-out candidates in the order to score them in full: the latest rung reached first, then rank order there. */
export function fallbackOrder(dropped: Scoring[], klThreshold: number): Scoring[] {
  const byRung = new Map<number, Scoring[]>();
  for (const h of dropped) byRung.set(h.pseudo.length, [...(byRung.get(h.pseudo.length) ?? []), h]);
  return [...byRung.entries()].sort((a, b) => b[0] - a[0]).flatMap(([, group]) => rankScorings(group, klThreshold));
}
