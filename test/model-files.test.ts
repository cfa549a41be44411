import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Tensor } from '../src/tensor.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { fromFloat32, toFloat32 } from '../src/io/dtype.js';
import { listModelTensors, readModelDir } from '../src/model/files.js';
import { optionalTensor, requireTensor } from '../src/engine/weights.js';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-files-'));
const ramp = (n: number) => Float32Array.from({ length: n }, (_, i) => i / 4 - 1);

test('readModelDir: single-file checkpoint with config and generation config', async () => {
  const dir = tmp();
  fs.writeFileSync(
    path.join(dir, 'config.json'),
    JSON.stringify({ model_type: 'llama', hidden_size: 4, eos_token_id: 2 }),
  );
  fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [2, 7] }));
  await writeSafetensors(path.join(dir, 'model.safetensors'), [
    { name: 'w', dtype: 'bf16', shape: [2, 4], data: fromFloat32(ramp(8), 'bf16') },
    { name: 'b', dtype: 'f32', shape: [4], data: ramp(4) },
  ]);
  const m = await readModelDir(dir);
  assert.equal(m.dir, dir);
  assert.equal(m.tokenizerDir, dir);
  assert.deepEqual(m.config, { model_type: 'llama', hidden_size: 4, eos_token_id: 2 });
  assert.deepEqual(m.generationConfig, { eos_token_id: [2, 7] });
  assert.deepEqual([...m.tensors.keys()].sort(), ['b', 'w']);
  const w = requireTensor(m, 'w', [2, 4]);
  assert.equal(w.dtype, 'bf16');
  assert.ok(w.data instanceof Uint16Array);
  assert.deepEqual([...toFloat32(w)], [...ramp(8)]);
  assert.equal(optionalTensor(m, 'lm_head.weight', [4, 4]), null);
  assert.equal(m.tensorFiles.get('w'), path.join(dir, 'model.safetensors'));
  fs.rmSync(path.join(dir, 'generation_config.json'));
  assert.equal((await readModelDir(dir)).generationConfig, null);
});

test('readModelDir: sharded checkpoint reads each shard once, with filter and progress', async () => {
  const dir = tmp();
  fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": "qwen2"}');
  const shards: Tensor[][] = [
    [
      { name: 'a', dtype: 'f32', shape: [3], data: ramp(3) },
      { name: 'b', dtype: 'f16', shape: [2], data: fromFloat32(ramp(2), 'f16') },
    ],
    [{ name: 'c', dtype: 'f32', shape: [1, 2], data: ramp(2) }],
  ];
  const weightMap: Record<string, string> = {};
  for (const [i, ts] of shards.entries()) {
    const name = `model-0000${i + 1}-of-00002.safetensors`;
    await writeSafetensors(path.join(dir, name), ts);
    for (const t of ts) weightMap[t.name] = name;
  }
  fs.writeFileSync(
    path.join(dir, 'model.safetensors.index.json'),
    JSON.stringify({ metadata: { total_size: 24 }, weight_map: weightMap }),
  );
  const progress: [number, number][] = [];
  const m = await readModelDir(dir, { onProgress: (d, t) => progress.push([d, t]) });
  assert.deepEqual([...m.tensors.keys()].sort(), ['a', 'b', 'c']);
  assert.deepEqual([...m.tensors.get('c')!.data], [...ramp(2)]);
  assert.equal(m.tensorFiles.get('c'), path.join(dir, 'model-00002-of-00002.safetensors'));
  assert.deepEqual(progress.at(-1), [24, 24]);
  const some = await readModelDir(dir, { filter: (n) => n !== 'b' });
  assert.deepEqual([...some.tensors.keys()].sort(), ['a', 'c']);
  const listed = await listModelTensors(dir);
  assert.deepEqual([...listed.keys()].sort(), ['a', 'b', 'c']);
  assert.equal(listed.get('b')!.storedDtype, 'F16');
  assert.deepEqual(listed.get('c')!.shape, [1, 2]);
});
