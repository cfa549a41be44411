// Every bad input gives a one-line ScalpelError naming the file and what was expected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ScalpelError } from '../src/errors.js';
import type { Tensor } from '../src/tensor.js';
import { readSafetensors, readSafetensorsHeader, writeSafetensors } from '../src/io/safetensors.js';
import { readModelDir } from '../src/model/files.js';
import { requireTensor } from '../src/engine/weights.js';
import { TextTokenizer } from '../src/tokenizer/tokenizer.js';
import { ChatTemplate } from '../src/tokenizer/chat.js';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-err-'));

/** Writes a safetensors file with a header given as an object or raw text, followed by `dataBytes` bytes. */
function rawSafetensors(file: string, header: object | string, dataBytes: number, lenOverride?: bigint): string {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const head = Buffer.from(text);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(head.length));
  fs.writeFileSync(file, Buffer.concat([len, head, Buffer.alloc(dataBytes, 1)]));
  return file;
}

/** Asserts that `fn` fails with a one-line ScalpelError whose message contains every needle. */
async function failsWith(fn: () => unknown, ...needles: (string | RegExp)[]): Promise<string> {
  let caught: unknown;
  try {
    await fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(
    caught instanceof ScalpelError,
    `expected a ScalpelError, got ${caught instanceof Error ? caught.stack : String(caught)}`,
  );
  const msg = caught.message;
  assert.ok(!msg.includes('\n'), `message is one line: ${JSON.stringify(msg)}`);
  for (const n of needles) {
    if (typeof n === 'string') assert.ok(msg.includes(n), `${JSON.stringify(msg)} should mention ${JSON.stringify(n)}`);
    else assert.match(msg, n);
  }
  if (process.env['SCALPEL_SHOW_ERRORS']) console.log(msg);
  return msg;
}

const f32 = (name: string, shape: number[]): Tensor => ({
  name,
  dtype: 'f32',
  shape,
  data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.5),
});

/** A minimal valid model directory (config + single or sharded weights). */
async function modelDir(opts: { sharded?: boolean } = {}): Promise<string> {
  const dir = tmp();
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'llama', hidden_size: 4 }));
  const a = f32('embed.weight', [8, 4]);
  const b = f32('norm.weight', [4]);
  if (opts.sharded) {
    await writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), [a]);
    await writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), [b]);
    fs.writeFileSync(
      path.join(dir, 'model.safetensors.index.json'),
      JSON.stringify({
        metadata: { total_size: 144 },
        weight_map: {
          'embed.weight': 'model-00001-of-00002.safetensors',
          'norm.weight': 'model-00002-of-00002.safetensors',
        },
      }),
    );
  } else {
    await writeSafetensors(path.join(dir, 'model.safetensors'), [a, b]);
  }
  return dir;
}

const entry = (dtype: string, shape: number[], offsets: [number, number]) => ({ dtype, shape, data_offsets: offsets });

test('safetensors header that lies about offsets: past the end of the data', async () => {
  const file = rawSafetensors(path.join(tmp(), 'lie.safetensors'), { w: entry('F32', [4], [8, 24]) }, 16);
  await failsWith(() => readSafetensors(file), file, "tensor 'w'", 'data_offsets [8, 24]', 'past the end');
});

test('safetensors header that lies about sizes: byte count does not match shape × dtype', async () => {
  const file = rawSafetensors(path.join(tmp(), 'size.safetensors'), { w: entry('F32', [2, 3], [0, 16]) }, 16);
  await failsWith(() => readSafetensors(file), file, "tensor 'w'", 'hold 16 bytes, expected 24', '[2, 3]', 'F32');
});

test('safetensors header with overlapping tensors, holes, or bytes after the data', async () => {
  const d = tmp();
  const overlap = rawSafetensors(
    path.join(d, 'o.safetensors'),
    { a: entry('F32', [2], [0, 8]), b: entry('F32', [2], [4, 12]) },
    12,
  );
  await failsWith(() => readSafetensorsHeader(overlap), overlap, 'overlap');
  const hole = rawSafetensors(
    path.join(d, 'h.safetensors'),
    { a: entry('F32', [1], [0, 4]), b: entry('F32', [1], [8, 12]) },
    12,
  );
  await failsWith(() => readSafetensors(hole), hole, 'hole', "'b'");
  const trailing = rawSafetensors(path.join(d, 't.safetensors'), { a: entry('F32', [1], [0, 4]) }, 10);
  await failsWith(() => readSafetensors(trailing), trailing, '6 bytes after');
});

test('safetensors header that is not JSON, not an object, too long, or has bad fields', async () => {
  const d = tmp();
  const notJson = rawSafetensors(path.join(d, 'a.safetensors'), '{"w": {"dtype": "F32",', 0);
  await failsWith(() => readSafetensors(notJson), notJson, 'not valid JSON');
  const arr = rawSafetensors(path.join(d, 'b.safetensors'), '[1, 2]', 0);
  await failsWith(() => readSafetensors(arr), arr, 'does not start with "{"');
  const huge = rawSafetensors(path.join(d, 'c.safetensors'), '{}', 0, 1n << 40n);
  await failsWith(() => readSafetensors(huge), huge, 'header length', 'limit');
  const long = rawSafetensors(path.join(d, 'd.safetensors'), '{}', 0, 1000n);
  await failsWith(() => readSafetensors(long), long, 'truncated', 'header length 1000');
  const tiny = path.join(d, 'e.safetensors');
  fs.writeFileSync(tiny, Buffer.from([1, 2, 3]));
  await failsWith(() => readSafetensors(tiny), tiny, 'truncated', '8-byte');
  const badShape = rawSafetensors(path.join(d, 'f.safetensors'), { w: entry('F32', [-1], [0, 0]) }, 0);
  await failsWith(() => readSafetensors(badShape), badShape, "tensor 'w'", 'shape');
  const badOffsets = rawSafetensors(
    path.join(d, 'g.safetensors'),
    { w: { dtype: 'F32', shape: [1], data_offsets: [0] } },
    4,
  );
  await failsWith(() => readSafetensors(badOffsets), badOffsets, "tensor 'w'", 'data_offsets');
  const unknown = rawSafetensors(path.join(d, 'h.safetensors'), { w: entry('Q4_K', [1], [0, 1]) }, 1);
  await failsWith(() => readSafetensors(unknown), unknown, "tensor 'w'", 'unknown dtype "Q4_K"');
  await failsWith(() => readSafetensors(path.join(d, 'nope.safetensors')), 'nope.safetensors', 'does not exist');
});

test('safetensors tensor of a dtype Scalpel cannot load names file and tensor (unless filtered out)', async () => {
  const file = rawSafetensors(
    path.join(tmp(), 'i64.safetensors'),
    { ids: entry('I64', [2], [0, 16]), w: entry('F32', [1], [16, 20]) },
    20,
  );
  await failsWith(() => readSafetensors(file), file, "tensor 'ids'", 'I64', 'F32, F16 and BF16');
  const only = await readSafetensors(file, { filter: (n) => n === 'w' });
  assert.deepEqual([...only.keys()], ['w']);
});

test('truncated shard: single file and sharded model', async () => {
  const dir = await modelDir();
  const file = path.join(dir, 'model.safetensors');
  fs.truncateSync(file, fs.statSync(file).size - 5);
  await failsWith(() => readModelDir(dir), file, 'truncated');
  const sharded = await modelDir({ sharded: true });
  const shard = path.join(sharded, 'model-00002-of-00002.safetensors');
  fs.truncateSync(shard, fs.statSync(shard).size - 1);
  await failsWith(() => readModelDir(sharded), shard, 'truncated', "tensor 'norm.weight'");
});

test('missing model directory, missing config.json, config.json not JSON, no weights', async () => {
  const gone = path.join(tmp(), 'does-not-exist');
  await failsWith(() => readModelDir(gone), gone, 'does not exist');
  const dir = await modelDir();
  fs.rmSync(path.join(dir, 'config.json'));
  await failsWith(() => readModelDir(dir), path.join(dir, 'config.json'), 'missing');
  fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": "llama",');
  await failsWith(() => readModelDir(dir), path.join(dir, 'config.json'), 'not valid JSON');
  fs.writeFileSync(path.join(dir, 'config.json'), '[]');
  await failsWith(() => readModelDir(dir), path.join(dir, 'config.json'), 'JSON object');
  fs.writeFileSync(path.join(dir, 'config.json'), '{}');
  fs.writeFileSync(path.join(dir, 'generation_config.json'), 'nope');
  await failsWith(() => readModelDir(dir), path.join(dir, 'generation_config.json'), 'not valid JSON');
  fs.rmSync(path.join(dir, 'generation_config.json'));
  fs.renameSync(path.join(dir, 'model.safetensors'), path.join(dir, 'pytorch_model.bin'));
  await failsWith(() => readModelDir(dir), dir, 'no weights found', 'model.safetensors', 'pytorch_model.bin');
});

test('sharded index that names a missing shard, or puts a tensor in the wrong shard', async () => {
  const dir = await modelDir({ sharded: true });
  const index = path.join(dir, 'model.safetensors.index.json');
  fs.rmSync(path.join(dir, 'model-00002-of-00002.safetensors'));
  await failsWith(() => readModelDir(dir), index, 'model-00002-of-00002.safetensors', 'does not exist');
  const dir2 = await modelDir({ sharded: true });
  const index2 = path.join(dir2, 'model.safetensors.index.json');
  fs.writeFileSync(
    index2,
    JSON.stringify({
      weight_map: {
        'embed.weight': 'model-00001-of-00002.safetensors',
        'norm.weight': 'model-00001-of-00002.safetensors',
      },
    }),
  );
  await failsWith(() => readModelDir(dir2), index2, "'norm.weight'", 'model-00001-of-00002.safetensors', 'not in');
  fs.writeFileSync(
    index2,
    JSON.stringify({
      weight_map: {
        'embed.weight': 'model-00001-of-00002.safetensors',
        'norm.weight': 'model-00002-of-00002.safetensors',
        'lm_head.weight': 'model-00002-of-00002.safetensors',
      },
    }),
  );
  await failsWith(() => readModelDir(dir2), index2, "'lm_head.weight'", 'not in');
  fs.writeFileSync(index2, '{"weight_map": 3}');
  await failsWith(() => readModelDir(dir2), index2, 'weight_map');
});

test('missing tensor and wrong tensor shape', async () => {
  const dir = await modelDir({ sharded: true });
  const m = await readModelDir(dir);
  await failsWith(
    () => requireTensor(m, 'layers.0.q_proj.weight', [4, 4]),
    'missing tensor layers.0.q_proj.weight',
    dir,
  );
  await failsWith(
    () => requireTensor(m, 'embed.weight', [16, 4]),
    'tensor embed.weight has shape [8, 4], expected [16, 4]',
    'model-00001-of-00002.safetensors',
  );
  assert.equal(requireTensor(m, 'norm.weight', [4]).shape[0], 4);
});

test('tokenizer.json missing or not JSON', async () => {
  const dir = tmp();
  const file = path.join(dir, 'tokenizer.json');
  await failsWith(() => TextTokenizer.load(dir), file, 'missing');
  fs.writeFileSync(file, '{"version": "1.0", "model": ');
  await failsWith(() => TextTokenizer.load(dir), file, 'not valid JSON');
  fs.writeFileSync(file, '{"version": "1.0"}');
  await failsWith(() => TextTokenizer.load(dir), file, 'model');
  fs.writeFileSync(file, '{"model": {"type": "BPE", "vocab": {}, "merges": []}, "added_tokens": []}');
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), '{"bos_token": ');
  await failsWith(() => TextTokenizer.load(dir), path.join(dir, 'tokenizer_config.json'), 'not valid JSON');
});

test('chat template that fails to parse or to render (raise_exception, bad operation)', async () => {
  const dir = tmp();
  const cfg = path.join(dir, 'tokenizer_config.json');
  fs.writeFileSync(
    cfg,
    JSON.stringify({
      chat_template:
        "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ m.content }}{% endfor %}",
    }),
  );
  const t = ChatTemplate.load(dir)!;
  assert.equal(t.render([{ role: 'user', content: 'hi' }]), 'hi');
  await failsWith(
    () =>
      t.render([
        { role: 'system', content: 's' },
        { role: 'user', content: 'hi' },
      ]),
    cfg,
    'failed to render',
    'System role not supported',
  );
  fs.writeFileSync(cfg, JSON.stringify({ chat_template: '{{ messages | no_such_filter }}' }));
  await failsWith(() => ChatTemplate.load(dir)!.render([{ role: 'user', content: 'hi' }]), cfg, 'failed to render');
  fs.writeFileSync(cfg, JSON.stringify({ chat_template: '{% for m in messages %}{{ m.content }}' }));
  await failsWith(() => ChatTemplate.load(dir), cfg, 'does not parse');
  const jinja = path.join(dir, 'chat_template.jinja');
  fs.writeFileSync(jinja, '{% if %}');
  await failsWith(() => ChatTemplate.load(dir), jinja, 'does not parse');
  fs.rmSync(jinja);
  fs.writeFileSync(cfg, JSON.stringify({ chat_template: [{ name: 'tool_use', template: 'x' }] }));
  await failsWith(() => ChatTemplate.load(dir), cfg, "'default'");
  fs.writeFileSync(cfg, JSON.stringify({}));
  assert.equal(ChatTemplate.load(dir), null);
  await failsWith(() => ChatTemplate.require(dir), dir, 'no chat template');
});
