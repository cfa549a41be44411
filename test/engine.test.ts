// Engine building blocks: matmul for every weight dtype (portable and native kernels), f16 widening, batch packing,
// config parsing per architecture, and load-time errors for weights that do not fit the config.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { f16Lookup } from '../src/engine/kernels/js.js';
import { kernelPaths } from './kernel-paths.js';
import { f16ToF32, f32ToBf16, f32ToF16, bf16ToF32 } from '../src/io/dtype.js';
import type { Matrix } from '../src/engine/types.js';
import type { WeightDType } from '../src/tensor.js';
import { greedyGenerate, lastLogits, pack } from '../src/engine/generate.js';
import { argmax } from '../src/engine/ops.js';
import { parseConfig } from '../src/arch/index.js';
import { ScalpelError } from '../src/errors.js';
import { loadEngineModel, loadModel } from '../src/model/load.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';

function rand(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648) * 2 - 1;
  });
}

function weight(dtype: WeightDType, rows: number, cols: number, seed: number): { m: Matrix; f32: Float32Array } {
  const v = rand(rows * cols, seed);
  if (dtype === 'f32') return { m: { dtype, rows, cols, data: v }, f32: v };
  const bits = Uint16Array.from(v, (x) => (dtype === 'bf16' ? f32ToBf16(x) : f32ToF16(x)));
  return {
    m: { dtype, rows, cols, data: bits },
    f32: Float32Array.from(bits, (b) => (dtype === 'bf16' ? bf16ToF32(b) : f16ToF32(b))),
  };
}

for (const kp of kernelPaths()) {
  test(`matmul [${kp.label}]: f32, bf16 and f16 weights, odd shapes, bias`, { skip: kp.skip }, (t) => {
    const K = kp.get();
    let worst = 0;
    for (const dtype of ['f32', 'bf16', 'f16'] as const)
      for (const [m, n, k] of [
        [1, 1, 3],
        [1, 7, 17],
        [5, 8, 16],
        [3, 13, 33],
        [17, 9, 64],
      ] as const)
        for (const withBias of [false, true]) {
          const { m: w, f32 } = weight(dtype, n, k, m * 31 + n * 7 + k);
          const x = rand(m * k, 99 + k);
          const bias = withBias ? rand(n, 5) : undefined;
          const y = new Float32Array(m * n).fill(NaN);
          K.matmul(y, x, w, m, bias);
          for (let i = 0; i < m; i++)
            for (let j = 0; j < n; j++) {
              let s = bias ? bias[j]! : 0;
              for (let t = 0; t < k; t++) s += x[i * k + t]! * f32[j * k + t]!;
              worst = Math.max(worst, Math.abs(y[i * n + j]! - s) / (1 + Math.abs(s)));
              assert.ok(
                Math.abs(y[i * n + j]! - s) <= 1e-5 * (1 + Math.abs(s)),
                `${dtype} m=${m} n=${n} k=${k} [${i},${j}]: ${y[i * n + j]} vs ${s}`,
              );
            }
        }
    t.diagnostic(`matmul [${K.name}]: max |y − ref| / (1 + |ref|) ${worst.toExponential(2)}`);
  });
}

test('f16 widening table matches the reference conversion for all 65536 bit patterns', () => {
  const t = f16Lookup();
  for (let h = 0; h < 65536; h++) {
    const ref = f16ToF32(h);
    if (Number.isNaN(ref)) assert.ok(Number.isNaN(t[h]!), `0x${h.toString(16)}`);
    else assert.equal(t[h], ref, `0x${h.toString(16)}`);
  }
});

test('pack left-pads so every prompt ends at the last column', () => {
  const p = pack([[5, 6, 7], [8], [9, 10]]);
  assert.equal(p.seq, 3);
  assert.deepEqual([...p.firstReal], [0, 2, 1]);
  assert.deepEqual([...p.tokens].slice(3, 6).slice(2), [8]);
  assert.deepEqual([...p.tokens].slice(6, 9).slice(1), [9, 10]);
});

const base = {
  hidden_size: 64,
  intermediate_size: 128,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_hidden_layers: 6,
  vocab_size: 100,
};

test('config parsing: registry, defaults and differences per architecture', () => {
  assert.throws(
    () => parseConfig({ ...base, model_type: 'gpt2' }),
    /model_type 'gpt2' is not supported; supported model_type values: llama, mistral, qwen2, qwen3, gemma2, gemma3_text, gemma3, phi3/,
  );
  assert.throws(
    () => parseConfig({ ...base }),
    (e: Error) => e instanceof ScalpelError && /no model_type/.test(e.message),
  );
  assert.equal(parseConfig({ ...base, architectures: ['Qwen2ForCausalLM'] }).arch.name, 'qwen2');
  assert.throws(
    () => parseConfig({ ...base, model_type: 'llama', hidden_size: 'wide' }),
    /field 'hidden_size' must be a positive integer/,
  );
  assert.throws(
    () => parseConfig({ ...base, model_type: 'llama', rope_scaling: { rope_type: 'yarn', factor: 4 } }),
    /rope_type 'yarn' is not supported/,
  );

  const llama = parseConfig({ ...base, model_type: 'llama' }).args;
  assert.equal(llama.headDim, 16);
  assert.equal(llama.tieEmbeddings, false);
  assert.ok(llama.layers.every((l) => l.window === null));

  const q2 = parseConfig({ ...base, model_type: 'qwen2', sliding_window: 4096, use_sliding_window: false }).args;
  assert.ok(q2.qkvBias && !q2.oBias && q2.layers.every((l) => l.window === null));
  const q3 = parseConfig({ ...base, model_type: 'qwen3' }).args;
  assert.ok(q3.qkNorm && q3.headDim === 128);

  const g2 = parseConfig({ ...base, model_type: 'gemma2' }).args;
  assert.deepEqual(
    g2.layers.map((l) => l.window),
    [4096, null, 4096, null, 4096, null],
  );
  assert.ok(
    g2.normOffset === 1 && g2.sandwichNorms && g2.tieEmbeddings && g2.attnSoftcap === 50 && g2.finalSoftcap === 30,
  );
  assert.equal(g2.embedScale, Math.fround(8));

  const g3 = parseConfig({
    ...base,
    model_type: 'gemma3_text',
    num_hidden_layers: 7,
    rope_scaling: { rope_type: 'linear', factor: 8 },
  }).args;
  assert.deepEqual(
    g3.layers.map((l) => l.window === null),
    [false, false, false, false, false, true, false],
  );
  const [local, global] = [g3.layers[0]!.rope, g3.layers[5]!.rope];
  assert.ok(local.type === 'default' && global.type === 'linear');
  assert.equal(local.invFreq[1], Math.fround(1 / Math.fround(10000 ** Math.fround(2 / 256))));
  assert.equal(global.invFreq[1], Math.fround(Math.fround(1 / Math.fround(1e6 ** Math.fround(2 / 256))) / 8));

  // the multimodal Gemma 3 config nests the text model
  const g3mm = parseConfig({
    model_type: 'gemma3',
    architectures: ['Gemma3ForConditionalGeneration'],
    text_config: { ...base, model_type: 'gemma3_text' },
  }).args;
  assert.equal(g3mm.width, 64);

  // transformers ≥ 5 writes rope_parameters; legacy rope_theta + rope_scaling give the same frequencies
  const scaling = {
    rope_type: 'llama3',
    factor: 8,
    low_freq_factor: 1,
    high_freq_factor: 4,
    original_max_position_embeddings: 64,
  };
  const legacy = parseConfig({ ...base, model_type: 'llama', rope_theta: 500000, rope_scaling: scaling }).args;
  const modern = parseConfig({
    ...base,
    model_type: 'llama',
    rope_parameters: { ...scaling, rope_theta: 500000 },
  }).args;
  assert.deepEqual(modern.layers[0]!.rope, legacy.layers[0]!.rope);

  const phi = parseConfig({ ...base, model_type: 'phi3', sliding_window: 12 }).args;
  assert.ok(phi.layers.every((l) => l.window === 12) && phi.normEps === 1e-5);
});

async function copyFixture(name: string): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `scalpel-${name}-`));
  fs.cpSync(path.join(process.cwd(), 'test/fixtures/models', name), dir, { recursive: true });
  return dir;
}

test('load errors: missing tensor, wrong shape, config that does not match the weights', async () => {
  const dir = await copyFixture('llama');
  try {
    const file = path.join(dir, 'model.safetensors');
    const tensors = await readSafetensors(file);
    tensors.delete('model.layers.1.mlp.up_proj.weight');
    await writeSafetensors(file, tensors);
    await assert.rejects(
      loadModel(dir),
      (e: Error) => e instanceof ScalpelError && /model\.layers\.1\.mlp\.up_proj\.weight/.test(e.message),
    );

    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, intermediate_size: 96 }));
    await assert.rejects(
      loadModel(dir),
      (e: Error) => e instanceof ScalpelError && /has shape \[128, 64\], expected \[96, 64\]/.test(e.message),
    );

    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, model_type: 'mamba' }));
    await assert.rejects(
      loadModel(dir),
      (e: Error) => e instanceof ScalpelError && /model_type 'mamba' is not supported/.test(e.message),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('LongRoPE: rows that outgrow original_max_position_embeddings are recomputed like a full forward', async () => {
  const dir = await copyFixture('phi3');
  try {
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    const hd = config.hidden_size / config.num_attention_heads;
    const n = hd / 2;
    const rope_scaling = {
      type: 'longrope',
      short_factor: Array.from({ length: n }, (_, i) => 1 + 0.1 * i),
      long_factor: Array.from({ length: n }, (_, i) => 1 + 0.5 * i),
    };
    fs.writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({ ...config, rope_scaling, original_max_position_embeddings: 16 }),
    );
    const model = await loadEngineModel(dir);
    assert.equal(model.args.layers[0]!.rope.type, 'longrope');
    // prompts of 10 (crosses 16 while generating), 14 and 20 tokens (long from the start)
    const prompts = [10, 14, 20].map((len) => Array.from({ length: len }, (_, i) => (i * 37 + len) % 900));
    const got = greedyGenerate(model, prompts, { maxNewTokens: 10, eosTokenIds: [] });
    for (const [i, p] of prompts.entries()) {
      const seq = [...p];
      for (let t = 0; t < 10; t++) seq.push(argmax(lastLogits(model, [seq])[0]!));
      assert.deepEqual(got[i], seq.slice(p.length), `prompt ${i}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
