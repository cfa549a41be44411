// The bake as rank-1 adapters (src/method/lora.ts). PEFT: the adapter Scalpel writes is byte for byte the one
// tools/make_lora_fixtures.py gave PEFT, and the logits PEFT computed with it (checked there against an independent
// PyTorch bake) are what Scalpel's engine gives on the baked Hugging Face folder. llama.cpp: node-llama-cpp loads
// the base model's GGUF with the adapter GGUF at scale 1 and 0.5, and its greedy tokens equal Scalpel's on the
// folder baked at strength 1 and 0.5.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bakeAblation } from '../src/method/bake.js';
import { llamaCppLoraTensors, rankOneAdapter, writeGgufLora, writePeftAdapter } from '../src/method/lora.js';
import { loadModel } from '../src/model/load.js';
import { greedyGenerate, lastLogits } from '../src/engine/generate.js';
import { readGgufHeader, readGgufTensor } from '../src/io/gguf.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { ScalpelError } from '../src/errors.js';
import { toFloat32 } from '../src/io/dtype.js';
import { mulberry32 } from '../src/rng.js';
import { ROOT, TINY_CHAT } from './support/cli.js';
import { f32UntiedCopy, llamaCppGreedy, writeBaseGguf } from './support/llama-cpp.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-lora-'));
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'lora');
const REGENERATE = '/work/venv/bin/python tools/make_lora_fixtures.py (after npm run build)';

interface LoraFixture {
  model_dir: string;
  adapter_sha256: string;
  direction: number[];
  cases: Array<{ input_ids: number[]; peft_logits: number[]; torch_bake_logits: number[] }>;
}

const spread = (x: ArrayLike<number>) => Math.max(...Array.from(x)) - Math.min(...Array.from(x));
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

for (const file of fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.json'))) {
  const name = file.replace(/\.json$/, '');
  test(`peft-lora ${name}: PEFT's logits with Scalpel's adapter equal Scalpel's on the baked folder (f32)`, async (t) => {
    const fx = JSON.parse(fs.readFileSync(path.join(FIXTURES, file), 'utf8')) as LoraFixture;
    const modelDir = path.join(ROOT, fx.model_dir);
    const adapterDir = path.join(tmp, `${name}-peft`);
    const adapter = await rankOneAdapter(modelDir, fx.direction);
    await writePeftAdapter(adapter, adapterDir, { baseModel: modelDir, provenance: {}, direction: fx.direction });
    const sha = createHash('sha256')
      .update(fs.readFileSync(path.join(adapterDir, 'adapter_model.safetensors')))
      .digest('hex');
    assert.equal(sha, fx.adapter_sha256, `the adapter differs from the one PEFT was given; rerun ${REGENERATE}`);
    const config = JSON.parse(fs.readFileSync(path.join(adapterDir, 'adapter_config.json'), 'utf8'));
    assert.deepEqual([config.peft_type, config.r, config.lora_alpha, config.fan_in_fan_out], ['LORA', 1, 1, false]);
    const keys = [...(await readSafetensors(path.join(adapterDir, 'adapter_model.safetensors'))).keys()];
    assert.ok(keys.includes('base_model.model.model.layers.1.self_attn.o_proj.lora_A.weight'));
    assert.ok(keys.includes('base_model.model.model.embed_tokens.lora_embedding_B'));

    // Scalpel's own bake of the same direction, in f32 (the f16 qwen2 fixture is widened first, as PEFT's side was).
    const f32 = await f32UntiedCopy(modelDir, path.join(tmp, `${name}-f32`));
    const baked = path.join(tmp, `${name}-baked`);
    await bakeAblation({ modelDir: f32, outDir: baked, direction: fx.direction, provenance: {} });
    const { model } = await loadModel(baked);
    const { model: base } = await loadModel(f32);
    const seqs = fx.cases.map((c) => c.input_ids);
    const ours = lastLogits(model, seqs);
    const before = lastLogits(base, seqs);
    let worst = 0;
    let effect = 0;
    for (const [i, c] of fx.cases.entries()) {
      const tol = spread(c.peft_logits);
      worst = Math.max(worst, maxDiff(ours[i]!, c.peft_logits) / tol);
      effect = Math.max(effect, maxDiff(before[i]!, c.peft_logits) / tol);
    }
    t.diagnostic(
      `${name}: max |Scalpel bake − PEFT| ${worst.toExponential(2)} of the spread; edit effect ${effect.toFixed(3)}`,
    );
    assert.ok(worst <= 1e-4, `${name}: |Scalpel bake − PEFT adapter| = ${worst.toExponential(2)} of the logit spread`);
    assert.ok(effect > 1e-2, `${name}: the edit changes the logits by only ${effect} of the spread`);
  });
}

test('peft-lora / gguf-lora: B·A equals the bake on every edited matrix; llama.cpp orientation of token_embd', async () => {
  const rand = mulberry32(7);
  const direction = Array.from({ length: 64 }, () => rand() - 0.5);
  const dir = path.join(ROOT, 'test', 'fixtures', 'models', 'llama');
  const ad = await rankOneAdapter(dir, direction);
  const out = path.join(tmp, 'llama-unit-baked');
  await bakeAblation({ modelDir: dir, outDir: out, direction, provenance: {} });
  const orig = await readSafetensors(path.join(dir, 'model.safetensors'));
  const baked = await readSafetensors(path.join(out, 'model.safetensors'));
  assert.equal(ad.edits.length, 5); // embedding + 2 layers × (o_proj, down_proj)
  for (const e of ad.edits) {
    const w = toFloat32(orig.get(e.name)!);
    const want = toFloat32(baked.get(e.name)!);
    const cols = orig.get(e.name)!.shape[1]!;
    let err = 0;
    for (let i = 0; i < w.length; i++) {
      const r = Math.floor(i / cols);
      const c = i % cols;
      // linear [width, in]: + b[r]·a[c]; embedding [vocab, width]: + a[r]·b[c]
      const delta = e.kind === 'linear' ? e.b[r]! * e.a[c]! : e.a[r]! * e.b[c]!;
      err = Math.max(err, Math.abs(w[i]! + delta - want[i]!));
    }
    assert.ok(err < 1e-6, `${e.name}: W + B·A differs from the bake by ${err}`);
  }
  const file = path.join(tmp, 'llama.lora.gguf');
  await writeGgufLora(ad, file, { baseModel: dir, provenance: {}, direction, configPath: 'config.json' });
  const h = readGgufHeader(file);
  assert.equal(h.metadata.get('general.type'), 'adapter');
  assert.equal(h.metadata.get('adapter.type'), 'lora');
  assert.equal(h.metadata.get('adapter.lora.alpha'), 1);
  const byName = new Map(h.tensors.map((t) => [t.name, t]));
  assert.deepEqual(byName.get('token_embd.weight.lora_a')!.shape, [775, 1]);
  assert.deepEqual(byName.get('token_embd.weight.lora_b')!.shape, [64, 1]);
  assert.deepEqual(byName.get('blk.1.ffn_down.weight.lora_a')!.shape, [1, 128]);
  assert.deepEqual(byName.get('blk.1.attn_output.weight.lora_b')!.shape, [64, 1]);
  const a = readGgufTensor(file, byName.get('blk.0.attn_output.weight.lora_a')!);
  assert.deepEqual(Array.from(a), Array.from(llamaCppLoraTensors(ad)[2]!.data));
});

/** Eight prompts: the project's model gets chat-rendered text; random-weight fixtures get token sequences. */
async function prompts(dir: string, vocab: number): Promise<number[][]> {
  if (dir === TINY_CHAT) {
    const { tokenizer, chat } = await loadModel(dir);
    const texts = [
      'How do I bake bread?',
      'Tell me how to kill a python process.',
      'What is the capital of France?',
      'Write a poem about the sea.',
      'How can I steal the show at my recital?',
      'Explain photosynthesis briefly.',
      'Give me three tips for sleeping well.',
      'How do I shoot a good photo at night?',
    ];
    return texts.map((t) =>
      tokenizer.encode(chat!.render([{ role: 'user', content: t }], { addGenerationPrompt: true }), {
        addSpecialTokens: false,
      }),
    );
  }
  const rand = mulberry32(11);
  return Array.from({ length: 8 }, (_, i) =>
    Array.from({ length: 4 + i }, () => Math.floor(rand() * Math.min(vocab, 256))),
  );
}

for (const [name, src] of [
  ['scalpel-tiny-chat', TINY_CHAT],
  ['llama', path.join(ROOT, 'test', 'fixtures', 'models', 'llama')],
  ['qwen2 (untied f32 copy)', path.join(ROOT, 'test', 'fixtures', 'models', 'qwen2')],
] as const) {
  test(`gguf-lora ${name}: llama.cpp with the adapter at scale 1 and 0.5 gives the bake's greedy tokens`, async (t) => {
    const key = name.split(' ')[0]!;
    const dir = await f32UntiedCopy(src, path.join(tmp, `${key}-gguf-base`));
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    const rand = mulberry32(23);
    const direction = Array.from({ length: config.hidden_size }, () => rand() - 0.5);
    const baseGguf = path.join(tmp, `${key}-base.gguf`);
    await writeBaseGguf(dir, baseGguf);
    const lora = path.join(tmp, `${key}-lora.gguf`);
    const ad = await rankOneAdapter(dir, direction);
    await writeGgufLora(ad, lora, { baseModel: dir, provenance: {}, direction, configPath: 'config.json' });
    const ps = await prompts(src, config.vocab_size);
    const N = 8;
    const base = (await loadModel(dir)).model;
    const plain = greedyGenerate(base, ps, { maxNewTokens: N, eosTokenIds: [] });
    assert.deepEqual(await llamaCppGreedy(baseGguf, ps, N), plain, 'the base GGUF alone differs from Scalpel');
    let changed = 0;
    for (const scale of [1, 0.5]) {
      const baked = path.join(tmp, `${key}-baked-${scale}`);
      await bakeAblation({ modelDir: dir, outDir: baked, direction, strength: scale, provenance: {} });
      const want = greedyGenerate((await loadModel(baked)).model, ps, { maxNewTokens: N, eosTokenIds: [] });
      const got = await llamaCppGreedy(baseGguf, ps, N, [{ filePath: lora, scale }]);
      assert.deepEqual(got, want, `scale ${scale}: llama.cpp + adapter differs from the bake`);
      const n = want.filter((w, i) => w.join() !== plain[i]!.join()).length;
      t.diagnostic(`${key} scale ${scale}: ${ps.length}/${ps.length} prompts equal, ${n} of them changed by the edit`);
      changed += n;
    }
    assert.ok(changed > 0, 'the edit changed no greedy continuation, so the comparison shows nothing');
  });
}

test('adapters are refused in one line where the bake is not a LoRA: Gemma, a tied head (llama.cpp), a writer bias', async () => {
  const fixture = (n: string) => path.join(ROOT, 'test', 'fixtures', 'models', n);
  const d64 = Array.from({ length: 64 }, (_, i) => Math.sin(i + 1));
  const oneLine = (re: RegExp) => (e: unknown) =>
    e instanceof ScalpelError && !e.message.includes('\n') && re.test(e.message);
  await assert.rejects(
    rankOneAdapter(fixture('gemma2'), d64),
    oneLine(/normalises each block's output before it joins the residual stream/),
  );
  const tied = await rankOneAdapter(fixture('llama-tied'), d64);
  const file = path.join(tmp, 'tied.lora.gguf');
  await assert.rejects(
    writeGgufLora(tied, file, { baseModel: 'x', provenance: {}, direction: d64, configPath: 'config.json' }),
    oneLine(
      /config\.json: the output head is tied to the token embedding, and llama\.cpp would apply a token_embd adapter to the tied head too/,
    ),
  );
  assert.ok(!fs.existsSync(file));
  // A copy of the llama fixture whose o_proj has a bias (as with attention_bias / o_proj biases in some checkpoints).
  const biased = path.join(tmp, 'llama-biased');
  fs.cpSync(fixture('llama'), biased, { recursive: true });
  const tensors = await readSafetensors(path.join(biased, 'model.safetensors'));
  const bias = 'model.layers.0.self_attn.o_proj.bias';
  tensors.set(bias, { name: bias, dtype: 'f32', shape: [64], data: new Float32Array(64).fill(0.1) });
  await writeSafetensors(path.join(biased, 'model.safetensors'), tensors);
  await assert.rejects(
    rankOneAdapter(biased, d64),
    oneLine(/tensor model\.layers\.0\.self_attn\.o_proj\.bias is a bias, whose edit a LoRA adapter cannot carry/),
  );
});
