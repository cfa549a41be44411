// `scalpel bake --format control-vector` (src/method/control-vector.ts). The file: what llama.cpp's own gguf reader
// found in it and its verdict under llama.cpp's loader rules (tools/check_control_vector.py, a fixture) must match
// what this test's file holds, read back with src/io/gguf.ts, under the same rules. The layer mapping: llama.cpp adds
// direction.N to the output of block N, so adding each tensor at Scalpel's blocks.N.hook_resid_post must give the
// run's own activation addition (at blocks.L.hook_resid_pre) exactly, and the off-by-one reading must not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hookName, type HookMap } from '../src/engine/types.js';
import { lastLogits } from '../src/engine/generate.js';
import { readGgufHeader, readGgufTensor } from '../src/io/gguf.js';
import { controlVectorTensors } from '../src/method/control-vector.js';
import { addHook, pushHook } from '../src/method/hooks.js';
import { interventionFromRun, interventionHooks } from '../src/method/intervention.js';
import { loadModel } from '../src/model/load.js';
import { ScalpelError } from '../src/errors.js';
import { ROOT, TINY_CHAT, runScalpel } from './support/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-cvec-'));
const VERDICT = path.join(ROOT, 'test', 'fixtures', 'control-vector', 'scalpel-tiny-chat.json');
const REGENERATE = '/work/venv/bin/python tools/check_control_vector.py (after npm run build)';

interface Verdict {
  n_embd: number;
  n_layer: number;
  run_flags: string[];
  metadata: Record<string, string | number>;
  tensors: Array<{ name: string; type: string; shape: number[]; norm: number }>;
  accepted: boolean;
}

/** The small run on the project's model with --alpha 1 that the reference verdict was made from (made once). */
let made: string | undefined;
function sharedRun(verdict: Verdict): string {
  if (made) return made;
  const run = path.join(tmp, 'run');
  const flags = verdict.run_flags.filter((f) => f !== '--alpha' && f !== '1');
  runScalpel('extract', '--model', TINY_CHAT, '--out', run, ...flags);
  runScalpel('select', '--run', run, '--alpha', '1', ...flags);
  made = run;
  return run;
}

const spread = (x: Float32Array) => Math.max(...x) - Math.min(...x);
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

test('control-vector: llama.cpp loader rules, the reference verdict, and the layer mapping through Scalpel hooks', async (t) => {
  const verdict = JSON.parse(fs.readFileSync(VERDICT, 'utf8')) as Verdict;
  assert.ok(verdict.accepted, 'the reference verdict itself must accept the file');
  const run = sharedRun(verdict);
  const file = path.join(tmp, 'cv.gguf');
  runScalpel('bake', '--run', run, '--out', file, '--format', 'control-vector', '--quiet');

  // The file, read back, under llama.cpp's loader rules and as the reference reader saw it.
  const h = readGgufHeader(file);
  for (const [k, v] of Object.entries(verdict.metadata)) assert.equal(h.metadata.get(k), v, k);
  assert.deepEqual(
    h.tensors.map((x) => ({ name: x.name, type: x.ggmlType === 0 ? 'F32' : `type ${x.ggmlType}`, shape: x.shape })),
    verdict.tensors.map(({ name, type, shape }) => ({ name, type, shape })),
    `the file differs from the one llama.cpp's reader checked; rerun ${REGENERATE}`,
  );
  for (const x of h.tensors) {
    const n = Number(/^direction\.(\d+)$/.exec(x.name)?.[1] ?? -1);
    assert.ok(n >= 1 && n < verdict.n_layer, `${x.name}: llama.cpp applies direction.1..${verdict.n_layer - 1}`);
    assert.deepEqual([x.ggmlType, x.shape], [0, [verdict.n_embd]]);
  }

  // The values are α·r of the run's addition, and the reference reader saw the same vector.
  const { intervention } = await interventionFromRun(run);
  const add = intervention.add!;
  const info = h.tensors[0]!;
  const data = readGgufTensor(file, info) as Float32Array;
  assert.deepEqual(
    Array.from(data),
    Array.from(add.vector, (v) => Math.fround(add.alpha * v)),
  );
  assert.ok(Math.abs(Math.hypot(...data) - verdict.tensors[0]!.norm) < 1e-4 * verdict.tensors[0]!.norm);
  assert.equal(info.name, `direction.${add.layer - 1}`);

  // The mapping: direction.N at the output of block N (llama.cpp's build_cvec) = the run's addition.
  const { model, tokenizer, chat } = await loadModel(TINY_CHAT);
  const prompts = ['How do I kill a python process?', 'Write a haiku about rain.', 'What is 2 + 2?'].map((q) =>
    tokenizer.encode(chat!.render([{ role: 'user', content: q }], { addGenerationPrompt: true }), {
      addSpecialTokens: false,
    }),
  );
  const atOutput = (offset: number): HookMap => {
    const map: HookMap = new Map();
    for (const x of h.tensors) {
      const n = Number(x.name.split('.')[1]) + offset;
      pushHook(map, hookName(n, 'hook_resid_post'), addHook(readGgufTensor(file, x) as Float32Array, 1));
    }
    return map;
  };
  const numLayers = model.numLayers;
  const runs = lastLogits(model, prompts, { hooks: interventionHooks({ kind: 'add', add }, numLayers) });
  const plain = lastLogits(model, prompts);
  const cvec = lastLogits(model, prompts, { hooks: atOutput(0) });
  const offByOne = lastLogits(model, prompts, { hooks: atOutput(-1) });
  for (let i = 0; i < prompts.length; i++) {
    const s = spread(runs[i]!);
    assert.ok(maxDiff(cvec[i]!, runs[i]!) <= 1e-6 * s, `prompt ${i}: control vector ≠ the run's addition`);
    assert.ok(maxDiff(plain[i]!, runs[i]!) > 1e-2 * s, `prompt ${i}: the addition changes nothing`);
    assert.ok(maxDiff(offByOne[i]!, runs[i]!) > 1e-3 * s, `prompt ${i}: one block earlier is not told apart`);
  }

  // With the ablation (a bake or gguf-lora) beside it: Scalpel ablates the direction at every later block input,
  // including the added vector's share along it, which a baked model plus a control vector keeps. Measured, not
  // asserted (it is 0 only when the added vector is orthogonal to the ablated direction).
  const ablation = { ...intervention, add: undefined };
  const both = lastLogits(model, prompts, { hooks: interventionHooks(intervention, numLayers) });
  const split = interventionHooks(ablation, numLayers);
  for (const [k, v] of atOutput(0)) for (const hk of v) pushHook(split, k, hk);
  const exported = lastLogits(model, prompts, { hooks: split });
  const gap = Math.max(...both.map((b, i) => maxDiff(b, exported[i]!) / spread(b)));
  const cos =
    Array.from(add.vector).reduce((a, v, i) => a + v * intervention.direction[i]!, 0) / Math.hypot(...add.vector);
  t.diagnostic(
    `ablation + control vector vs the run's ablation + addition: max |Δlogit| ${gap.toExponential(2)} of the spread (cos(r, ŵ) = ${cos.toFixed(3)})`,
  );
});

test('control-vector: additions llama.cpp has no slot for (layers 0, 1 and past the last) are refused in one line', () => {
  for (const layer of [0, 1, 6])
    assert.throws(
      () => controlVectorTensors({ layer, vector: new Float32Array(4), alpha: 1 }, 6, 'run.json'),
      (e: unknown) =>
        e instanceof ScalpelError && /outputs of blocks 1\.\.5, which are Scalpel's layers 2\.\.5/.test(e.message),
    );
  const [t] = controlVectorTensors({ layer: 5, vector: Float32Array.from([1, -2, 0, 3]), alpha: 2 }, 6, 'x');
  assert.deepEqual([t!.name, Array.from(t!.data)], ['direction.4', [2, -4, 0, 6]]);
});

test("bake --format peft-lora / gguf-lora: the CLI writes the run's ablation as adapters (the run with α = 0)", async () => {
  const run = sharedRun(JSON.parse(fs.readFileSync(VERDICT, 'utf8')) as Verdict);
  const noAdd = path.join(tmp, 'run-no-add');
  fs.cpSync(run, noAdd, { recursive: true });
  const runJson = JSON.parse(fs.readFileSync(path.join(noAdd, 'run.json'), 'utf8'));
  fs.writeFileSync(
    path.join(noAdd, 'run.json'),
    JSON.stringify({ ...runJson, config: { ...runJson.config, alpha: 0 } }),
  );
  const { intervention } = await interventionFromRun(noAdd);
  const peft = path.join(tmp, 'peft');
  runScalpel('bake', '--run', noAdd, '--out', peft, '--format', 'peft-lora', '--quiet');
  const config = JSON.parse(fs.readFileSync(path.join(peft, 'adapter_config.json'), 'utf8'));
  assert.equal(config.base_model_name_or_path, TINY_CHAT);
  const record = JSON.parse(fs.readFileSync(path.join(peft, 'scalpel_adapter.json'), 'utf8'));
  assert.deepEqual(record.direction, Array.from(intervention.direction));
  assert.equal(record.edited_tensors.length, 1 + 2 * 6);
  const lora = path.join(tmp, 'ablation.lora.gguf');
  runScalpel('bake', '--run', noAdd, '--out', lora, '--format', 'gguf-lora', '--quiet');
  const h = readGgufHeader(lora);
  assert.deepEqual(
    ['general.architecture', 'general.type', 'adapter.type', 'adapter.lora.alpha'].map((k) => h.metadata.get(k)),
    ['llama', 'adapter', 'lora', 1],
  );
  assert.equal(h.tensors.length, 2 * 13);
  // lora_b of every matrix is −ŵ
  const b = readGgufTensor(lora, h.tensors.find((x) => x.name === 'blk.3.ffn_down.weight.lora_b')!);
  assert.deepEqual(
    Array.from(b),
    Array.from(intervention.direction, (v) => -v),
  );
});
