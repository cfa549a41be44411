// The native kernels: C++ in native/ (node-addon-api), built by node-gyp at `npm install`.
// The addon picks AVX-512, AVX2+FMA or plain C++ from cpuid at load time and runs on a small persistent
// thread pool (SCALPEL_THREADS threads, default: the CPUs this process may use). Typed arrays are used in place.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Activation } from '../args.js';
import type { AttentionArgs } from '../attention.js';
import type { KVCache } from '../cache.js';
import type { AttentionCall, Kernels, Matrix } from '../types.js';

/** What the addon exports (native/src/addon.cc). */
export interface NativeAddon {
  /** y[m,n] = x[m,k]·Wᵀ (+ bias); dtype 0 = f32 (w: Float32Array), 1 = f16, 2 = bf16 (w: Uint16Array). */
  matmul(
    y: Float32Array,
    x: Float32Array,
    w: Float32Array | Uint16Array,
    dtype: number,
    m: number,
    n: number,
    k: number,
    bias?: Float32Array,
  ): void;
  /** Causal attention over one layer of the KV cache (native/src/ops.cc); softcap 0 and window 0 mean none. */
  attention(
    out: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    batch: number,
    seq: number,
    start: number,
    firstReal: Int32Array,
    slots: Int32Array,
    heads: number,
    kvHeads: number,
    headDim: number,
    capacity: number,
    scale: number,
    softcap: number,
    window: number,
  ): void;
  /** attention() of one-sequence blocks, calls[i] = [out, q, k, v, seq, start, capacity], threads shared. */
  attentionMany(
    calls: [Float32Array, Float32Array, Float32Array, Float32Array, number, number, number][],
    heads: number,
    kvHeads: number,
    headDim: number,
    scale: number,
    softcap: number,
    window: number,
  ): void;
  /** gate[i] = act(gate[i]) · up[i] for i < n; act 0 = silu, 1 = gelu_tanh. */
  gatedAct(gate: Float32Array, up: Float32Array, n: number, act: number): void;
  /** isa in use, best isa this CPU supports, thread count. */
  info(): { isa: NativeIsa; best: NativeIsa; threads: number };
  /** Lowers (or restores) the instruction set; returns the one in use (never above what the CPU has). */
  setIsa(isa: NativeIsa): NativeIsa;
  /** Resizes the thread pool (0 = all available CPUs); returns the thread count. */
  setThreads(n: number): number;
}
export type NativeIsa = 'avx512' | 'avx2' | 'scalar';

/** Where node-gyp puts the addon, from dist/src/engine/kernels/ up to the package root. */
export const ADDON_PATH = fileURLToPath(
  new URL('../../../../native/build/Release/scalpel_native.node', import.meta.url),
);

const DTYPE_CODE = { f32: 0, f16: 1, bf16: 2 } as const;

let addon: NativeAddon | undefined;

/** Loads the addon once (throws if it was not built or cannot load here). Honours SCALPEL_THREADS and SCALPEL_ISA. */
export function loadNativeAddon(): NativeAddon {
  if (addon) return addon;
  const loaded = createRequire(import.meta.url)(ADDON_PATH) as NativeAddon;
  const threads = process.env.SCALPEL_THREADS;
  if (threads !== undefined && threads !== '') {
    const t = Number(threads);
    if (!Number.isInteger(t) || t < 0)
      throw new Error(`SCALPEL_THREADS must be a non-negative integer, got '${threads}'`);
    loaded.setThreads(t);
  }
  addon = loaded;
  return addon;
}

/**
 * The Kernels interface over the addon, plus the native attention and gated activation (NativeOps) for an engine
 * that wants them. `name` follows setIsa, e.g. 'native-avx512'.
 */
export function nativeKernels(a: NativeAddon = loadNativeAddon()): Kernels & NativeOps {
  return {
    get name() {
      return `native-${a.info().isa}`;
    },
    matmul(y: Float32Array, x: Float32Array, w: Matrix, m: number, bias?: Float32Array): void {
      a.matmul(y, x, w.data, DTYPE_CODE[w.dtype], m, w.rows, w.cols, bias);
    },
    ...nativeOps(a),
  };
}

/**
 * Native twins of the engine's attention() (src/engine/attention.ts) and gatedAct() (src/engine/ops.ts), same
 * signatures and semantics, threaded over (row, head) pairs / elements. Dot products and the weighted sum of values
 * run in f32, the softmax in f64.
 */
export interface NativeOps {
  attention(out: Float32Array, q: Float32Array, cache: KVCache, layer: number, a: AttentionArgs): void;
  attentionMany(calls: readonly AttentionCall[]): void;
  gatedAct(gate: Float32Array, up: Float32Array, act: Activation): void;
}

export function nativeOps(a: NativeAddon = loadNativeAddon()): NativeOps {
  return {
    attention(out, q, cache, layer, x) {
      a.attention(
        out,
        q,
        cache.k[layer]!,
        cache.v[layer]!,
        x.batch,
        x.seq,
        x.start,
        x.firstReal,
        x.slots,
        x.numHeads,
        x.numKvHeads,
        x.headDim,
        cache.capacity,
        x.scale,
        x.softcap ?? 0,
        x.window ?? 0,
      );
    },
    attentionMany(calls) {
      const x = calls[0]?.args;
      if (!x) return;
      a.attentionMany(
        calls.map((c) => [
          c.out,
          c.q,
          c.cache.k[c.layer]!,
          c.cache.v[c.layer]!,
          c.args.seq,
          c.args.start,
          c.cache.capacity,
        ]),
        x.numHeads,
        x.numKvHeads,
        x.headDim,
        x.scale,
        x.softcap ?? 0,
        x.window ?? 0,
      );
    },
    gatedAct(gate, up, act) {
      a.gatedAct(gate, up, gate.length, act === 'silu' ? 0 : 1);
    },
  };
}
