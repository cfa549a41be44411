// Both kernel paths against a float64 reference: odd shapes, every weight dtype, with and without bias.
// The native path is tested at every instruction set this CPU has (AVX-512, AVX2, plain C++), one and two threads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Kernels, Matrix } from '../src/engine/types.js';
import type { WeightDType } from '../src/tensor.js';
import { jsKernels } from '../src/engine/kernels/js.js';
import { loadNativeAddon, nativeKernels, type NativeIsa } from '../src/engine/kernels/native.js';
import { tryNativeKernels } from '../src/engine/kernels/index.js';
import { bf16ToF32, f16ToF32, f32ToBf16 } from '../src/io/dtype.js';

/** Deterministic uniform numbers in [-1, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
}

function randomMatrix(
  dtype: WeightDType,
  rows: number,
  cols: number,
  seed: number,
): { w: Matrix; values: Float64Array } {
  const r = rng(seed);
  const len = rows * cols;
  const values = new Float64Array(len);
  if (dtype === 'f32') {
    const data = new Float32Array(len);
    for (let i = 0; i < len; i++) values[i] = data[i] = r();
    return { w: { dtype, rows, cols, data }, values };
  }
  const data = new Uint16Array(len);
  for (let i = 0; i < len; i++) {
    if (dtype === 'bf16') {
      data[i] = f32ToBf16(r() * 4);
      values[i] = bf16ToF32(data[i]!);
    } else {
      // any finite half, subnormals included: sign, exponent 0..29, mantissa
      const u = (r() + 1) / 2;
      data[i] =
        ((u * 0x10000) & 0x8000) | ((Math.floor(((r() + 1) / 2) * 30) << 10) & 0x7c00) | ((u * 0x3ffffff) & 0x3ff);
      values[i] = f16ToF32(data[i]!);
    }
  }
  return { w: { dtype, rows, cols, data }, values };
}

/** y = x·Wᵀ + bias in float64, and the per-element scale Σ|x·w| that bounds the f32 rounding error. */
function reference(x: Float32Array, w: Float64Array, m: number, n: number, k: number, bias?: Float32Array) {
  const y = new Float64Array(m * n);
  const scale = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = bias ? bias[j]! : 0;
      let a = bias ? Math.abs(bias[j]!) : 0;
      for (let p = 0; p < k; p++) {
        const v = x[i * k + p]! * w[j * k + p]!;
        s += v;
        a += Math.abs(v);
      }
      y[i * n + j] = s;
      scale[i * n + j] = a;
    }
  }
  return { y, scale };
}

const SHAPES: Array<[m: number, n: number, k: number]> = [
  [1, 29, 37],
  [3, 45, 100],
  [17, 13, 1061], // k past one 1024-wide k block of the native kernels
  [64, 67, 77],
  [17, 131, 259], // big enough to run on the thread pool
  [5, 7, 16],
  [2, 1, 3],
];

/** Checks every shape and dtype; returns the worst error as a multiple of √k · Σ|x·w| (the bound's scale). */
function checkKernels(kernels: Kernels, label: string): number {
  let seed = 1;
  let worst = 0;
  for (const dtype of ['f32', 'f16', 'bf16'] as const) {
    for (const [m, n, k] of SHAPES) {
      for (const withBias of [false, true]) {
        seed++;
        const { w, values } = randomMatrix(dtype, n, k, seed);
        const r = rng(seed * 7919);
        const x = Float32Array.from({ length: m * k }, () => r());
        const bias = withBias ? Float32Array.from({ length: n }, () => r()) : undefined;
        const y = new Float32Array(m * n).fill(NaN);
        kernels.matmul(y, x, w, m, bias);
        const ref = reference(x, values, m, n, k, bias);
        for (let t = 0; t < m * n; t++) {
          // Measured worst: 3.2e-8 × √k·Σ|x·w| (native avx512 / avx2, 1 and 2 threads; js 1.7e-8, scalar 2.5e-8).
          // The bound is 10× that, rounded up (it was 4e-6, 125× the measured error).
          const tol = 4e-7 * Math.sqrt(k) * ref.scale[t]! + 1e-30;
          const err = Math.abs(y[t]! - ref.y[t]!);
          if (ref.scale[t]! > 0) worst = Math.max(worst, err / (Math.sqrt(k) * ref.scale[t]!));
          if (!(err <= tol)) {
            assert.fail(
              `${label} ${dtype} m=${m} n=${n} k=${k} bias=${withBias}: y[${t}] = ${y[t]} vs ${ref.y[t]} (tol ${tol})`,
            );
          }
        }
      }
    }
  }
  return worst;
}

test('js kernels match a float64 reference (odd shapes, f32/f16/bf16, bias)', (t) => {
  t.diagnostic(`js: max error ${checkKernels(jsKernels, 'js').toExponential(2)} × √k·Σ|x·w|`);
});

const native = tryNativeKernels();
const requireNative = process.env.SCALPEL_REQUIRE_NATIVE === '1';
const skipNative = native.kernels ? false : `native addon not loadable: ${native.reason}`;
if (requireNative && skipNative) {
  test('native addon is required (SCALPEL_REQUIRE_NATIVE=1)', () => assert.fail(String(skipNative)));
}

// One subtest per instruction set and thread count; an instruction set this CPU (or this build) lacks is a visible
// SKIP, not a shorter loop.
const ALL_ISAS: NativeIsa[] = ['avx512', 'avx2', 'scalar'];
test('native kernels match a float64 reference at every instruction set and thread count', {
  skip: skipNative,
}, async (tt) => {
  const addon = loadNativeAddon();
  const { isa: start, best, threads } = addon.info();
  const have = ALL_ISAS.slice(ALL_ISAS.indexOf(best));
  try {
    for (const t of [1, 2])
      for (const isa of ALL_ISAS)
        await tt.test(`${isa}, ${t} thread${t > 1 ? 's' : ''}`, (st) => {
          if (!have.includes(isa)) return st.skip(`no ${isa} on this CPU or in this build (best: ${best})`);
          addon.setThreads(t);
          assert.equal(addon.setIsa(isa), isa);
          const k = nativeKernels(addon);
          assert.equal(k.name, `native-${isa}`);
          const worst = checkKernels(k, `${k.name} threads=${t}`);
          st.diagnostic(`${k.name} threads=${t}: max error ${worst.toExponential(2)} × √k·Σ|x·w|`);
        });
  } finally {
    addon.setIsa(start);
    addon.setThreads(threads);
  }
});

test('native matmul checks its arguments', { skip: skipNative }, () => {
  const addon = loadNativeAddon();
  const y = new Float32Array(6);
  const x = new Float32Array(6);
  const w = new Uint16Array(9);
  assert.throws(() => addon.matmul(y, x, w, 2, 2, 3, 4), RangeError); // w too short for [3, 4]
  assert.throws(() => addon.matmul(y, x, w, 0, 2, 3, 3), TypeError); // f32 needs a Float32Array
  assert.throws(() => addon.matmul(y, x, w, 2, 2, 3, 3, new Float32Array(2)), RangeError); // bias too short
  assert.throws(() => addon.matmul(y, x, w, 7, 2, 3, 3), RangeError); // unknown dtype
  // k = 0: the empty sum leaves the bias
  addon.matmul(y, new Float32Array(0), new Uint16Array(0), 2, 2, 3, 0, new Float32Array([1, 2, 3]));
  assert.deepEqual([...y], [1, 2, 3, 1, 2, 3]);
  // views at an offset into a larger buffer are used in place
  const big = new Float32Array(10).fill(-1);
  const yv = big.subarray(3, 5);
  addon.matmul(yv, new Float32Array([1, 2]), new Float32Array([3, 4, 5, 6]), 0, 1, 2, 2);
  assert.deepEqual([...big], [-1, -1, -1, 11, 17, -1, -1, -1, -1, -1]);
});

test('kernel selection: SCALPEL_KERNELS=js forces the portable kernels; default picks native when it loads', () => {
  const index = fileURLToPath(new URL('../src/engine/kernels/index.js', import.meta.url));
  const script = `import(${JSON.stringify(index)}).then((m) => { console.log(m.getKernels().name); m.getKernels(); })`;
  const run = (env: Record<string, string>) =>
    spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
    });
  const js = run({ SCALPEL_KERNELS: 'js' });
  assert.equal(js.status, 0, js.stderr);
  assert.equal(js.stdout.trim(), 'js');
  assert.equal(js.stderr, '');
  const auto = run({ SCALPEL_KERNELS: '' });
  assert.equal(auto.status, 0, auto.stderr);
  if (native.kernels) {
    assert.match(auto.stdout.trim(), /^native-(avx512|avx2|scalar)$/);
    assert.equal(auto.stderr, '');
  } else {
    assert.equal(auto.stdout.trim(), 'js');
    assert.equal(auto.stderr.trim().split('\n').length, 1, 'one notice line');
  }
  const bad = run({ SCALPEL_KERNELS: 'gpu' });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /SCALPEL_KERNELS/);
});
