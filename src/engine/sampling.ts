// Choosing the next token from a row of logits: greedy (argmax) or sampled with temperature, top-k and top-p
// (nucleus), each sequence with its own seeded generator so a seeded request gives the same tokens every time.
import { ScalpelError } from '../errors.js';
import { mulberry32 } from '../rng.js';
import { argmax } from './ops.js';

export interface SamplingParams {
  /** 0 (default) is greedy decoding; otherwise logits are divided by this before the softmax. */
  temperature?: number;
  /** Keep the smallest set of most likely tokens whose probabilities add up to at least this (1 = off). */
  topP?: number;
  /** Keep the k most likely tokens (0 = off). */
  topK?: number;
  /** Seed of the sequence's generator (default: a random one). */
  seed?: number;
}

/**
 * Throws a one-line ScalpelError for settings no sampler can follow; `name` says how the caller spells each field
 * (a request field by default, a command-line flag in the CLI).
 */
export function validateSampling(
  s: SamplingParams,
  name: (field: keyof SamplingParams) => string = (f) => `sampling.${f}`,
): void {
  const { temperature = 0, topP = 1, topK = 0, seed = 0 } = s;
  if (!(Number.isFinite(temperature) && temperature >= 0))
    throw new ScalpelError(`${name('temperature')} ${temperature}: expected a number ≥ 0`);
  if (!(topP > 0 && topP <= 1)) throw new ScalpelError(`${name('topP')} ${topP}: expected a number in (0, 1]`);
  if (!(Number.isInteger(topK) && topK >= 0))
    throw new ScalpelError(`${name('topK')} ${topK}: expected an integer ≥ 0`);
  if (!Number.isSafeInteger(seed)) throw new ScalpelError(`${name('seed')} ${seed}: expected an integer`);
}

export type TokenPicker = (logits: Float32Array, from: number, to: number) => number;

/** The picker for one sequence: argmax when greedy, else a draw from its own generator. */
export function tokenPicker(s: SamplingParams = {}): TokenPicker {
  validateSampling(s);
  const temperature = s.temperature ?? 0;
  if (temperature === 0) return argmax;
  const topK = s.topK ?? 0;
  const topP = s.topP ?? 1;
  const rand = mulberry32(s.seed ?? Math.floor(Math.random() * 2 ** 32));
  return (logits, from, to) => {
    const n = to - from;
    const probs = new Float64Array(n);
    let max = -Infinity;
    for (let i = 0; i < n; i++) max = Math.max(max, logits[from + i]!);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const e = Math.exp((logits[from + i]! - max) / temperature);
      probs[i] = e;
      sum += e;
    }
    if (topK === 0 && topP === 1) return draw(probs, sum, rand());
    // Most likely first; keep the top k, then the shortest prefix holding topP of the (renormalised) mass.
    const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => probs[y]! - probs[x]! || x - y);
    let keep = topK > 0 ? Math.min(topK, n) : n;
    let kept = 0;
    for (let i = 0; i < keep; i++) kept += probs[order[i]!]!;
    if (topP < 1) {
      let cum = 0;
      for (let i = 0; i < keep; i++) {
        cum += probs[order[i]!]!;
        if (cum >= topP * kept) {
          keep = i + 1;
          kept = cum;
          break;
        }
      }
    }
    let u = rand() * kept;
    for (let i = 0; i < keep; i++) {
      u -= probs[order[i]!]!;
      if (u < 0) return order[i]!;
    }
    return order[keep - 1]!;
  };
}

/** Index drawn with probability probs[i] / sum, for a uniform u in [0, 1). */
function draw(probs: Float64Array, sum: number, u: number): number {
  let left = u * sum;
  for (let i = 0; i < probs.length; i++) {
    left -= probs[i]!;
    if (left < 0) return i;
  }
  return probs.length - 1;
}
