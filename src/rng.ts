// Seeded randomness, shared by the method (sampling prompt sets) and the engine (sampling tokens). We use
// mulberry32 (Tommy Ettinger's 32-bit generator): tiny, fast, and fully determined by its 32-bit seed, so a run's
// samples are reproducible from run.json alone.

/** Returns a function that yields uniform floats in [0, 1) from the mulberry32 sequence of `seed`. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher–Yates shuffle of a copy of `items`, driven by `rand`. */
export function shuffled<T>(items: readonly T[], rand: () => number): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const tmp = out[i]!;
    out[i] = out[j]!;
    out[j] = tmp;
  }
  return out;
}

/** `n` items drawn without replacement (all of them, shuffled, when n ≥ length). */
export function sample<T>(items: readonly T[], n: number, seed: number): T[] {
  return shuffled(items, mulberry32(seed)).slice(0, Math.max(0, Math.min(n, items.length)));
}
