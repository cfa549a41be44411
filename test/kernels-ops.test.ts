// The native attention and gated activation against the engine's own TypeScript versions (same signatures).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ModelArgs } from '../src/engine/args.js';
import { attention, type AttentionArgs } from '../src/engine/attention.js';
import { KVCache } from '../src/engine/cache.js';
import { gatedAct } from '../src/engine/ops.js';
import { nativeOps } from '../src/engine/kernels/native.js';
import { tryNativeKernels } from '../src/engine/kernels/index.js';
import { REQUIRE_NATIVE } from './kernel-paths.js';

const native = tryNativeKernels();
// Without the addon these tests are a visible SKIP; with SCALPEL_REQUIRE_NATIVE=1 they run and fail on loading it.
const skip = native.kernels || REQUIRE_NATIVE ? false : `native addon not loadable: ${native.reason}`;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
}

/** Asserts |a − b| ≤ tol·(1 + |b|) elementwise; returns the worst |a − b| / (1 + |b|). */
function close(a: Float32Array, b: Float32Array, tol: number, label: string): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i]! - b[i]!) / (1 + Math.abs(b[i]!));
    worst = Math.max(worst, e);
    if (!(e <= tol)) assert.fail(`${label}: [${i}] ${a[i]} vs ${b[i]}`);
  }
  return worst;
}

test('native attention matches the engine: padding, GQA, decode steps, sliding window, soft-capping', { skip }, (t) => {
  const ops = nativeOps();
  const r = rng(7);
  let worst = 0;
  for (const [heads, kvHeads, headDim] of [
    [4, 2, 16],
    [3, 3, 20],
    [14, 2, 64],
  ] as const) {
    const args = { numLayers: 2, numKvHeads: kvHeads, headDim } as unknown as ModelArgs;
    const batch = 3,
      capacity = 40,
      layer = 1;
    const cache = new KVCache(args, 4, capacity);
    for (const arr of [...cache.k, ...cache.v]) for (let i = 0; i < arr.length; i++) arr[i] = r();
    const firstReal = Int32Array.from([0, 5, 11]);
    const slots = Int32Array.from([2, 0, 3]);
    for (const [seq, start] of [
      [17, 0],
      [1, 17],
      [4, 30],
    ] as const) {
      for (const window of [null, 6]) {
        for (const softcap of [null, 3]) {
          const a: AttentionArgs = {
            batch,
            seq,
            start,
            firstReal,
            slots,
            numHeads: heads,
            numKvHeads: kvHeads,
            headDim,
            scale: 1 / Math.sqrt(headDim),
            softcap,
            window,
          };
          const q = Float32Array.from({ length: batch * seq * heads * headDim }, () => r() * 2);
          const want = new Float32Array(q.length).fill(NaN);
          const got = new Float32Array(q.length).fill(NaN);
          attention(want, q, cache, layer, a);
          ops.attention(got, q, cache, layer, a);
          const e = close(
            got,
            want,
            2e-6,
            `heads=${heads}/${kvHeads} d=${headDim} seq=${seq} start=${start} window=${window} softcap=${softcap}`,
          );
          worst = Math.max(worst, e);
        }
      }
    }
  }
  t.diagnostic(`native attention: max |native − engine| / (1 + |engine|) ${worst.toExponential(2)}`);
});

test('native gated activation matches the engine (silu, gelu_tanh)', { skip }, (t) => {
  const ops = nativeOps();
  const r = rng(11);
  let worst = 0;
  for (const act of ['silu', 'gelu_tanh'] as const) {
    for (const n of [1, 37, 100_003]) {
      const gate = Float32Array.from({ length: n }, () => r() * 12);
      const up = Float32Array.from({ length: n }, () => r() * 3);
      const want = gate.slice();
      const got = gate.slice();
      gatedAct(want, up, act);
      ops.gatedAct(got, up, act);
      worst = Math.max(worst, close(got, want, 1e-6, `${act} n=${n}`));
    }
  }
  t.diagnostic(`native gatedAct: max |native − engine| / (1 + |engine|) ${worst.toExponential(2)}`);
});

test('native attention checks its arguments', { skip }, () => {
  const ops = nativeOps();
  const args = { numLayers: 1, numKvHeads: 1, headDim: 4 } as unknown as ModelArgs;
  const cache = new KVCache(args, 1, 8);
  const a: AttentionArgs = {
    batch: 1,
    seq: 2,
    start: 7,
    firstReal: Int32Array.from([0]),
    slots: Int32Array.from([0]),
    numHeads: 1,
    numKvHeads: 1,
    headDim: 4,
    scale: 1,
    softcap: null,
    window: null,
  };
  assert.throws(() => ops.attention(new Float32Array(8), new Float32Array(8), cache, 0, a), RangeError); // past capacity
  assert.throws(
    () =>
      ops.attention(new Float32Array(8), new Float32Array(8), cache, 0, {
        ...a,
        start: 0,
        slots: Int32Array.from([1]),
      }),
    RangeError,
  ); // no slot 1
  assert.throws(
    () => ops.attention(new Float32Array(7), new Float32Array(8), cache, 0, { ...a, start: 0 }),
    RangeError,
  );
});

test('native attentionMany equals one native attention call per block, bit for bit', { skip }, () => {
  const ops = nativeOps();
  const r = rng(11);
  const [heads, kvHeads, headDim] = [6, 2, 16];
  const args = { numLayers: 1, numKvHeads: kvHeads, headDim } as ModelArgs;
  // Blocks as the scheduler makes them: prefills of several lengths and one-token decode steps, each its own cache.
  const blocks = [
    [0, 9],
    [7, 1],
    [0, 3],
    [30, 1],
    [12, 5],
    [0, 64], // enough work for the addon to split the blocks over its threads
  ].map(([start, seq]) => {
    const cache = new KVCache(args, 1, start! + seq! + 3);
    cache.k[0]!.forEach((_, i, a) => {
      a[i] = r();
    });
    cache.v[0]!.forEach((_, i, a) => {
      a[i] = r();
    });
    const q = Float32Array.from({ length: seq! * heads * headDim }, r);
    const a: AttentionArgs = {
      batch: 1,
      seq: seq!,
      start: start!,
      firstReal: Int32Array.of(0),
      slots: Int32Array.of(0),
      numHeads: heads,
      numKvHeads: kvHeads,
      headDim,
      scale: 0.25,
      softcap: null,
      window: null,
    };
    return { cache, q, a };
  });
  const one = blocks.map((b) => {
    const out = new Float32Array(b.q.length);
    ops.attention(out, b.q, b.cache, 0, b.a);
    return out;
  });
  const outs = blocks.map((b) => new Float32Array(b.q.length));
  ops.attentionMany(blocks.map((b, i) => ({ out: outs[i]!, q: b.q, cache: b.cache, layer: 0, args: b.a })));
  assert.deepEqual(outs, one);
  assert.ok(outs.every((o) => o.some((x) => x !== 0)));
});
