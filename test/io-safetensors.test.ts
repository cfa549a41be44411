import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Tensor } from '../src/tensor.js';
import {
  openSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  writeSafetensors,
  writeSafetensorsStreaming,
} from '../src/io/safetensors.js';
import { writeFileAtomic, writeFileAtomicSync } from '../src/io/atomic.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, fromFloat32, toFloat32 } from '../src/io/dtype.js';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-io-'));

test('dtype: bf16 and f16 conversions round to nearest even and keep specials', () => {
  for (const v of [0, -0, 1, -2.5, 3.140625, 65504, 1e-3, 6.1e-5, 5.96e-8, Infinity, -Infinity]) {
    const back = f16ToF32(f32ToF16(v));
    if (!Number.isFinite(v)) {
      assert.equal(back, v);
      assert.equal(bf16ToF32(f32ToBf16(v)), v);
      continue;
    }
    assert.ok(
      Math.abs(back - v) <= Math.abs(v) * 2 ** -11 ||
        (v !== 0 && Math.abs(v) < 6.2e-5 && Math.abs(back - v) <= 2 ** -25),
      `f16 ${v} → ${back}`,
    );
    const b = f32ToBf16(v);
    assert.ok(Math.abs(bf16ToF32(b) - v) <= Math.abs(v) * 2 ** -8, `bf16 ${v}`);
  }
  assert.equal(f32ToF16(1), 0x3c00);
  assert.equal(f32ToF16(65520), 0x7c00); // rounds up to Infinity
  assert.equal(f32ToF16(2 ** -24), 0x0001); // smallest subnormal
  assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00); // halfway: ties to even (down)
  assert.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02); // halfway: ties to even (up)
  assert.ok(Number.isNaN(f16ToF32(f32ToF16(NaN))));
  assert.equal(f32ToBf16(1), 0x3f80);
  assert.equal(f32ToBf16(1 + 2 ** -8), 0x3f80); // tie → even
  assert.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82);
  assert.ok(Number.isNaN(bf16ToF32(f32ToBf16(NaN))));
  for (let h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) === 0x7c00 && h & 0x3ff) continue; // NaN payloads
    assert.equal(f32ToF16(f16ToF32(h)), h, `f16 bits ${h.toString(16)}`);
    // the midpoint between h and the next half rounds to the even one of the two
    if ((h & 0x7fff) < 0x7bff) {
      const mid = (f16ToF32(h) + f16ToF32(h + 1)) / 2;
      assert.equal(f32ToF16(mid), h & 1 ? h + 1 : h, `f16 midpoint after ${h.toString(16)}`);
    }
  }
  const vals = new Float32Array([0.5, -1.25, 3, 100]);
  assert.deepEqual([...toFloat32({ dtype: 'bf16', data: fromFloat32(vals, 'bf16') })], [...vals]);
  assert.deepEqual([...toFloat32({ dtype: 'f16', data: fromFloat32(vals, 'f16') })], [...vals]);
});

test('safetensors: write then read round-trips f32, f16 and bf16 with metadata, aligned', async () => {
  const dir = tmp();
  const file = path.join(dir, 'm.safetensors');
  const tensors: Tensor[] = [
    { name: 'b.bf16', dtype: 'bf16', shape: [3], data: fromFloat32(new Float32Array([1, -2, 0.5]), 'bf16') },
    { name: 'a.f32', dtype: 'f32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
    { name: 'c.f16', dtype: 'f16', shape: [1, 1], data: fromFloat32(new Float32Array([0.25]), 'f16') },
    { name: 'z.f32', dtype: 'f32', shape: [], data: new Float32Array([7]) },
    { name: 'empty', dtype: 'f32', shape: [0, 4], data: new Float32Array(0) },
  ];
  await writeSafetensors(file, tensors, { format: 'pt' });
  assert.deepEqual(fs.readdirSync(dir), ['m.safetensors'], 'no temp file left behind');
  const bytes = fs.readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  assert.equal((8 + n) % 8, 0, 'header padded to 8 bytes');
  const header = await readSafetensorsHeader(file);
  assert.deepEqual(header.metadata, { format: 'pt' });
  for (const e of header.entries.values())
    assert.equal((e.begin - header.dataStart) % (e.storedDtype === 'F32' ? 4 : 2), 0);
  const got = await readSafetensors(file);
  assert.equal(got.size, tensors.length);
  for (const t of tensors) {
    const g = got.get(t.name)!;
    assert.equal(g.dtype, t.dtype);
    assert.deepEqual(g.shape, t.shape);
    assert.equal(g.data.constructor, t.data.constructor);
    assert.deepEqual([...g.data], [...t.data]);
    assert.equal(g.data.byteOffset, 0, 'each tensor owns its buffer');
    assert.equal(g.data.buffer.byteLength, t.data.byteLength);
  }
  // filter and progress
  const seen: number[] = [];
  const some = await readSafetensors(file, { filter: (name) => name.startsWith('a'), onProgress: (d) => seen.push(d) });
  assert.deepEqual([...some.keys()], ['a.f32']);
  assert.deepEqual(seen, [24]);
  // overwrite an existing file atomically
  await writeSafetensors(
    file,
    new Map([['x', { name: 'x', dtype: 'f32', shape: [1], data: new Float32Array([9]) } as Tensor]]),
  );
  assert.deepEqual([...(await readSafetensors(file)).keys()], ['x']);
});

test('safetensors: reads files written by the reference layout (hand-built header with spaces)', async () => {
  const dir = tmp();
  const file = path.join(dir, 'ref.safetensors');
  const json = '{"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},"__metadata__":{"k":"v"}}   ';
  const head = Buffer.from(json);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(head.length));
  fs.writeFileSync(file, Buffer.concat([len, head, Buffer.from([0x80, 0x3f, 0x00, 0xc0])]));
  const t = (await readSafetensors(file)).get('w')!;
  assert.equal(t.dtype, 'bf16');
  assert.deepEqual([...toFloat32(t)], [1, -2]);
});

test('safetensors: the streaming writer asks for one tensor at a time, in file order, and matches writeSafetensors', async () => {
  const dir = tmp();
  const tensors: Tensor[] = [
    { name: 'b.half', dtype: 'f16', shape: [3], data: fromFloat32(Float32Array.of(1, 2, 3), 'f16') },
    { name: 'a.full', dtype: 'f32', shape: [2, 2], data: Float32Array.of(1, -2, 3.5, 4) },
    { name: 'c.full', dtype: 'f32', shape: [1], data: Float32Array.of(7) },
  ];
  const asked: string[] = [];
  let live = 0;
  const streamed = path.join(dir, 'streamed.safetensors');
  await writeSafetensorsStreaming(
    streamed,
    tensors.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
    async (spec) => {
      assert.equal(live, 0, 'the previous tensor was written before the next is asked for');
      live++;
      asked.push(spec.name);
      await new Promise((r) => setImmediate(r));
      live--;
      return tensors.find((t) => t.name === spec.name)!.data;
    },
    { format: 'pt' },
  );
  assert.deepEqual(
    asked,
    ['a.full', 'c.full', 'b.half'],
    'widest dtype first, then by name: the order of the data in the file',
  );
  const whole = path.join(dir, 'whole.safetensors');
  await writeSafetensors(whole, tensors, { format: 'pt' });
  assert.deepEqual(fs.readFileSync(streamed), fs.readFileSync(whole));
  const f = await openSafetensors(streamed);
  try {
    assert.deepEqual([...toFloat32(await f.read('b.half'))], [1, 2, 3]);
    await assert.rejects(f.read('nope'), /streamed\.safetensors: has no tensor 'nope'/);
  } finally {
    await f.close();
  }
  // Data that does not fit its spec: a one-line error, and no file (not even a temp file) is left.
  const bad = path.join(dir, 'bad.safetensors');
  await assert.rejects(
    writeSafetensorsStreaming(bad, [{ name: 'x', dtype: 'f32', shape: [4] }], () => Float32Array.of(1, 2)),
    /bad\.safetensors: tensor 'x' has 2 Float32Array values, expected 4 \(shape \[4\] of f32\)/,
  );
  assert.deepEqual(fs.readdirSync(dir).sort(), ['streamed.safetensors', 'whole.safetensors']);
});

test('atomic: writeFileAtomic and writeFileAtomicSync replace the target whole and leave no temp files', async () => {
  const dir = tmp();
  const file = path.join(dir, 'out.json');
  await writeFileAtomic(file, '{"a":1}');
  assert.equal(fs.readFileSync(file, 'utf8'), '{"a":1}');
  await writeFileAtomic(file, new Uint8Array([104, 105]));
  assert.equal(fs.readFileSync(file, 'utf8'), 'hi');
  writeFileAtomicSync(file, 'sync');
  assert.equal(fs.readFileSync(file, 'utf8'), 'sync');
  assert.deepEqual(fs.readdirSync(dir), ['out.json']);
  await assert.rejects(
    writeFileAtomic(path.join(dir, 'missing-dir', 'x'), 'x'),
    (err: Error) =>
      err.name === 'ScalpelError' &&
      err.message ===
        `${path.join(dir, 'missing-dir', 'x')}: cannot write (directory ${path.join(dir, 'missing-dir')} does not exist)`,
  );
  assert.throws(() => writeFileAtomicSync(path.join(dir, 'missing-dir', 'x'), 'x'), /cannot write/);
  assert.deepEqual(fs.readdirSync(dir), ['out.json']);
});
