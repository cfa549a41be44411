#!/usr/bin/env node
// GFLOP/s of the native matmul: y[64, 4864] = x[64, 896] · Wᵀ (the MLP up-projection of Qwen2.5-0.5B for a
// 64-token prompt) per weight dtype, instruction set and thread count, and the weight bandwidth of decoding
// (m = 1 against a 151936 x 896 matrix, the size of the tied lm_head). Medians of --reps timed repetitions.
//
//   node bench/gemm.mjs [--reps 7] [--json]
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const { loadNativeAddon } = await import(pathToFileURL(path.join(root, 'dist/src/engine/kernels/native.js')).href);

const args = process.argv.slice(2);
const reps = args.includes('--reps') ? Number(args[args.indexOf('--reps') + 1]) : 7;
const json = args.includes('--json');
const addon = loadNativeAddon();
const { best, threads: defaultThreads } = addon.info();
const isas = best === 'avx512' ? ['avx512', 'avx2', 'scalar'] : best === 'avx2' ? ['avx2', 'scalar'] : ['scalar'];
const DTYPES = [
  ['f32', 0],
  ['f16', 1],
  ['bf16', 2],
];

function weights(n, k) {
  const f32 = new Float32Array(n * k);
  for (let i = 0; i < f32.length; i++) f32[i] = Math.random() - 0.5;
  const bits = new Uint32Array(f32.buffer);
  const bf16 = new Uint16Array(n * k);
  for (let i = 0; i < bf16.length; i++) bf16[i] = bits[i] >>> 16;
  const f16 = new Uint16Array(n * k);
  for (let i = 0; i < f16.length; i++)
    f16[i] = (Math.random() < 0.5 ? 0x8000 : 0) | (0x3000 + ((Math.random() * 0xbff) | 0));
  return { f32, f16, bf16 };
}

function measure(m, n, k, w, dtype, count) {
  const x = new Float32Array(m * k).map(() => Math.random() - 0.5);
  const y = new Float32Array(m * n);
  addon.matmul(y, x, w, dtype, m, n, k);
  const rates = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < count; i++) addon.matmul(y, x, w, dtype, m, n, k);
    const s = Number(process.hrtime.bigint() - t0) / 1e9 / count;
    rates.push((2 * m * n * k) / s / 1e9);
  }
  rates.sort((a, b) => a - b);
  return rates[(rates.length - 1) >> 1];
}

const results = [];
const [m, n, k] = [64, 4864, 896];
const w = weights(n, k);
for (const isa of isas) {
  addon.setIsa(isa);
  for (const t of [1, 2]) {
    addon.setThreads(t);
    for (const [name, code] of DTYPES) {
      const gflops = measure(m, n, k, w[name], code, isa === 'scalar' ? 1 : 10);
      results.push({ shape: `${m}x${k}·${k}x${n}`, isa, threads: t, dtype: name, gflops });
      if (!json)
        console.log(
          `gemm ${m}x${k}·${k}x${n}  ${isa.padEnd(6)} ${t} thr  ${name.padEnd(4)}  ${gflops.toFixed(1).padStart(6)} GFLOP/s`,
        );
    }
  }
}
addon.setIsa(best);
const big = weights(151936, 896);
for (const t of [1, 2]) {
  addon.setThreads(t);
  for (const [name, code] of DTYPES) {
    const gflops = measure(1, 151936, 896, big[name], code, 3);
    const gbs = (gflops / 2) * (name === 'f32' ? 4 : 2);
    results.push({ shape: '1x896·896x151936', isa: best, threads: t, dtype: name, gflops, weight_gb_s: gbs });
    if (!json)
      console.log(
        `gemv 1x896·896x151936  ${best.padEnd(6)} ${t} thr  ${name.padEnd(4)}  ${gflops.toFixed(1).padStart(6)} GFLOP/s  ${gbs.toFixed(1)} GB/s of weights`,
      );
  }
}
addon.setThreads(defaultThreads);
if (json) console.log(JSON.stringify(results));
