// `bake --format gguf` against llama.cpp itself (node-llama-cpp, the CPU prebuilt): for every architecture bake
// supports (the random-weight fixtures, f32 / f16 / bf16 checkpoints, tied and sharded ones) and the project's own
// chat model, llama.cpp loads the exported file and its greedy tokens equal Scalpel's on the Hugging Face bake of
// the same direction. Both sides get the same prompt ids (Scalpel's tokenizer and chat template), so the
// tokenizer is not the variable; llama.cpp's own tokenization of the project model's chat prompts is checked
// separately (the GGUF tokenizer metadata). f32 and f16 must match exactly; q8_0 is reported as a match rate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bakeAblation } from '../src/method/bake.js';
import { exportGguf } from '../src/method/export-gguf.js';
import { loadModel } from '../src/model/load.js';
import { greedyGenerate, lastLogits } from '../src/engine/generate.js';
import type { Model } from '../src/engine/model.js';
import { readGgufHeader } from '../src/io/gguf.js';
import { ChatTemplate, encodeChat, type ChatMessage } from '../src/tokenizer/chat.js';
import { deriveTurnFormat, ollamaModelfile } from '../src/method/modelfile.js';
import { mulberry32 } from '../src/rng.js';
import { parseConfig } from '../src/arch/index.js';
import { makeSmallRun, runScalpel } from './support/cli.js';
import { cpuLlama, greedyOnSequence } from './support/llama-cpp.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIXTURES = path.join(root, 'test', 'fixtures', 'models');
const TINY = path.join(root, 'models', 'scalpel-tiny-chat');
const ORGANISM = JSON.parse(
  fs.readFileSync(path.join(root, 'test/fixtures/expected/organism/scalpel-tiny-chat.json'), 'utf8'),
) as { intervention: { direction: number[] }; prompts: { messages: ChatMessage[] }[] };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-export-gguf-'));
const NEW_TOKENS = 12;
// How far llama.cpp's logits after a prompt may be from Scalpel's, as a fraction of the spread. Measured over
// every case here: f32 1.1e-3 at worst (the random-weight fixtures; 2.2e-5 on the trained model: llama.cpp keeps
// its KV cache in f16 and these flat random logits magnify it), f16 2.9e-3 (ggml's CPU matmul also rounds the
// activations to f16 for f16 weights), q8_0 5.6e-2 (activations rounded to 8-bit blocks too). Bounds 2-3×
// that; a wrong name, row order, norm or RoPE setting moves logits by tenths of the spread.
const LOGIT_BOUND = { f32: 3e-3, f16: 1e-2, q8_0: 0.1 };

/** A seeded unit vector (the project's mulberry32), so failures reproduce. */
function randomUnit(n: number, seed: number): Float32Array {
  const rand = mulberry32(seed);
  const v = Float32Array.from({ length: n }, () => rand() - 0.5);
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
}

// Eight short chats for the random-weight fixtures (their templates render them; the ids come from Scalpel).
const CHATS: ChatMessage[][] = [
  [{ role: 'user', content: 'Hello there' }],
  [{ role: 'user', content: 'How do I bake bread?' }],
  [{ role: 'user', content: 'Name a color.' }],
  [{ role: 'user', content: 'What is the time?' }],
  [{ role: 'user', content: 'Tell me a story about a cat' }],
  [{ role: 'user', content: 'hi' }],
  [{ role: 'user', content: 'Why is the sky blue?' }],
  [{ role: 'user', content: 'Count to five, please.' }],
];

/**
 * llama.cpp on each prompt (ids in): its raw logits after the prompt, and its greedy continuation (EOS included,
 * not stopping there).
 */
async function llamaCppRun(
  file: string,
  prompts: number[][],
  n: number,
  texts: string[],
): Promise<{ tokens: number[][]; logits: Map<number, number>[]; tokenized: number[][] }> {
  const model = await (await cpuLlama()).loadModel({ modelPath: file, gpuLayers: 0 });
  const context = await model.createContext({ sequences: 1, contextSize: 256, threads: 1, flashAttention: false });
  const sequence = context.getSequence();
  const tokenized = texts.map((text) => model.tokenize(text, true) as number[]);
  const tokens: number[][] = [];
  const logits: Map<number, number>[] = [];
  try {
    for (const prompt of prompts) {
      await sequence.clearHistory();
      const input = prompt.map((id, i) => (i === prompt.length - 1 ? [id, { generateNext: { logits: true } }] : id));
      const res = await sequence.controlledEvaluate(input as never);
      logits.push(res.at(-1)!.next!.logits! as Map<number, number>);
      tokens.push(await greedyOnSequence(sequence, prompt, n));
    }
  } finally {
    await context.dispose();
    await model.dispose();
  }
  return { tokens, logits, tokenized };
}

interface Case {
  name: string;
  dir: string;
  direction: Float32Array;
  chats: ChatMessage[][];
}

const CASES: Case[] = [
  ...['llama', 'llama-bf16', 'llama-tied', 'llama-sharded', 'mistral', 'phi3', 'qwen2', 'qwen3'].map((name, i) => {
    const dir = path.join(FIXTURES, name);
    const width = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).hidden_size as number;
    return { name, dir, direction: randomUnit(width, 100 + i), chats: CHATS };
  }),
  {
    name: 'scalpel-tiny-chat',
    dir: TINY,
    direction: Float32Array.from(ORGANISM.intervention.direction),
    chats: ORGANISM.prompts.map((p) => p.messages),
  },
];

/**
 * Where llama.cpp's tokens first leave Scalpel's in each differing prompt, Scalpel's logit gap there between its
 * own choice and llama.cpp's, as a fraction of the logit spread (a near-tie is a small fraction).
 */
function divergences(model: Model, prompts: number[][], want: number[][], got: number[][]): number[] {
  const gaps: number[] = [];
  for (const [i, w] of want.entries()) {
    const j = w.findIndex((id, k) => got[i]![k] !== id);
    if (j < 0) continue;
    const logits = lastLogits(model, [[...prompts[i]!, ...w.slice(0, j)]])[0]!;
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of logits) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    gaps.push((logits[w[j]!]! - logits[got[i]![j]!]!) / (hi - lo));
  }
  return gaps;
}

/**
 * The baked folder with sliding windows switched off: what llama.cpp computes for the architectures whose window
 * it ignores (it says so in the export's notes), so the rest of the file can still be checked token for token.
 */
function withoutWindow(dir: string): string {
  const out = `${dir}-nowindow`;
  fs.cpSync(dir, out, { recursive: true });
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  fs.writeFileSync(
    path.join(out, 'config.json'),
    JSON.stringify({ ...config, sliding_window: null, use_sliding_window: false }),
  );
  return out;
}

const fmt = (gaps: number[]) => (gaps.length ? gaps.map((g) => g.toExponential(1)).join(', ') : '—');

for (const c of CASES) {
  test(`bake --format gguf ${c.name}: llama.cpp's greedy tokens equal Scalpel's on the baked model (f32, f16; q8_0 reported)`, {
    timeout: 300_000,
  }, async (t) => {
    const hf = path.join(tmp, `${c.name}-hf`);
    await bakeAblation({ modelDir: c.dir, outDir: hf, direction: c.direction, provenance: {} });
    const baked = await loadModel(hf);
    assert.ok(baked.chat, `${c.name} has a chat template`);
    const texts = c.chats.map((m) => baked.chat!.render(m));
    const prompts = c.chats.map((m) => encodeChat(baked.tokenizer, baked.chat!, m));
    const windowed = parseConfig(JSON.parse(fs.readFileSync(path.join(hf, 'config.json'), 'utf8'))).args.layers.some(
      (l) => l.window !== null,
    );
    const windowedWant = windowed
      ? greedyGenerate(baked.model, prompts, { maxNewTokens: NEW_TOKENS, eosTokenIds: [] })
      : undefined;
    const { model } = windowed ? await loadModel(withoutWindow(hf)) : baked;
    const want = greedyGenerate(model, prompts, { maxNewTokens: NEW_TOKENS, eosTokenIds: [] });
    for (const kind of ['f32', 'f16', 'q8_0'] as const) {
      const folder = path.join(tmp, `${c.name}-${kind}`);
      fs.mkdirSync(folder);
      const file = path.join(folder, 'model.gguf');
      const res = await exportGguf({
        modelDir: c.dir,
        outFile: file,
        direction: c.direction,
        provenance: { scalpel_test: 'export-gguf' },
        ...(kind === 'q8_0' ? { quant: 'q8_0' as const } : { dtype: kind }),
      });
      const run = await llamaCppRun(file, prompts, NEW_TOKENS, texts);
      const got = run.tokens;
      // llama.cpp's logits after each prompt against Scalpel's, as a fraction of Scalpel's spread: the numerical
      // distance between the two for this storage type.
      let logitErr = 0;
      for (const [i, ids] of prompts.entries()) {
        const ref = lastLogits(model, [ids])[0]!;
        let lo = Infinity;
        let hi = -Infinity;
        let worst = 0;
        for (const [j, v] of ref.entries()) {
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
          worst = Math.max(worst, Math.abs(v - (run.logits[i]!.get(j) ?? Infinity)));
        }
        logitErr = Math.max(logitErr, worst / (hi - lo));
      }
      const count = (ref: number[][]) => {
        let exact = 0;
        let same = 0;
        for (const [i, w] of ref.entries()) {
          if (got[i]!.join() === w.join()) exact++;
          same += w.filter((id, j) => got[i]![j] === id).length;
        }
        return `${exact}/${prompts.length} prompts identical, ${same}/${prompts.length * NEW_TOKENS} tokens`;
      };
      const gaps = divergences(model, prompts, want, got);
      t.diagnostic(
        `${c.name} ${kind}: ${count(want)}${windowed ? ' (window off on both sides)' : ''}; first-divergence logit gaps / spread: ${fmt(gaps)}; max |llama.cpp − Scalpel| logit after the prompt / spread: ${logitErr.toExponential(1)}`,
      );
      if (windowedWant)
        t.diagnostic(
          `${c.name} ${kind} with the sliding window on in Scalpel: ${count(windowedWant)} (${res.notes.join(' | ')})`,
        );
      assert.ok(
        logitErr <= LOGIT_BOUND[kind],
        `${c.name} ${kind}: logits differ by ${logitErr.toExponential(2)} of the spread`,
      );
      // f32 and f16: every continuation identical, except where Scalpel's own top two are closer than the distance
      // just measured between the two engines (a tie at this precision; reported above). q8_0: reported only.
      if (kind !== 'q8_0') {
        for (const g of gaps)
          assert.ok(g < logitErr, `${c.name} ${kind}: diverges at a logit gap of ${g.toExponential(2)}`);
      }
      if (kind === 'f32') {
        const same = run.tokenized.filter((ids, i) => ids.join() === prompts[i]!.join()).length;
        t.diagnostic(
          `${c.name}: llama.cpp's own tokenization of the rendered chat prompts equals Scalpel's for ${same}/${prompts.length}`,
        );
        if (c.name === 'scalpel-tiny-chat')
          assert.equal(same, prompts.length, 'the GGUF tokenizer metadata tokenizes as Scalpel does');
      }
      const h = readGgufHeader(file);
      assert.equal(h.metadata.get('scalpel.test'), 'export-gguf');
    }
  });
}

test('bake --format gguf refuses Gemma (with the reason) and existing files, writing nothing', async () => {
  const folder = fs.mkdtempSync(path.join(tmp, 'refused-'));
  const file = path.join(folder, 'model.gguf');
  await assert.rejects(
    exportGguf({
      modelDir: path.join(FIXTURES, 'gemma2'),
      outFile: file,
      direction: randomUnit(64, 1),
      provenance: {},
    }),
    /normalises each block's output before it joins the residual stream, so a weight edit cannot remove a direction exactly/,
  );
  assert.deepEqual(fs.readdirSync(folder), []);
  fs.writeFileSync(file, 'taken');
  await assert.rejects(
    exportGguf({ modelDir: path.join(FIXTURES, 'llama'), outFile: file, direction: randomUnit(64, 1), provenance: {} }),
    /model\.gguf: exists; choose a new file name/,
  );
  fs.rmSync(file);
  fs.writeFileSync(path.join(folder, 'Modelfile'), 'FROM elsewhere');
  await assert.rejects(
    exportGguf({ modelDir: path.join(FIXTURES, 'llama'), outFile: file, direction: randomUnit(64, 1), provenance: {} }),
    /Modelfile: exists; write the GGUF file into a folder without a Modelfile/,
  );
  assert.deepEqual(fs.readdirSync(folder), ['Modelfile']);
});

test('scalpel bake --run RUN --format gguf: the CLI writes the GGUF file and a Modelfile with the chat template translated', {
  timeout: 300_000,
}, () => {
  const run = path.join(tmp, 'run');
  makeSmallRun(run);
  const out = path.join(tmp, 'cli', 'tiny.gguf');
  fs.mkdirSync(path.dirname(out));
  const r = runScalpel('bake', '--run', run, '--out', out, '--format', 'gguf', '--quant', 'q8_0');
  assert.match(
    r.err,
    /baked the false-refusal vector \(λ = 1\) of position -?\d+, layer \d+ into 13 tensors: .*tiny\.gguf \(and .*Modelfile\)/,
  );
  const h = readGgufHeader(out);
  assert.equal(h.metadata.get('general.architecture'), 'llama');
  assert.equal(h.metadata.get('general.file_type'), 7); // MOSTLY_Q8_0
  assert.equal(h.metadata.get('scalpel.run'), run);
  assert.equal(h.tensors.find((t) => t.name === 'blk.0.attn_output.weight')?.dtype, 'q8_0');
  assert.equal(h.tensors.find((t) => t.name === 'blk.0.attn_norm.weight')?.dtype, 'f32');
  const modelfile = fs.readFileSync(path.join(path.dirname(out), 'Modelfile'), 'utf8');
  assert.match(modelfile, /^FROM \.\/tiny\.gguf$/m);
  assert.match(modelfile, /^PARAMETER stop "<\|end\|>"$/m);
  assert.match(modelfile, /^TEMPLATE """.*\{\{ range \.Messages \}\}.*"""$/m);
});

test('Modelfile: a per-role chat template becomes an Ollama Go template; one that is not, a comment', () => {
  const chatml = ChatTemplate.fromString(
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    'chatml',
  );
  const text = ollamaModelfile({ ggufFile: 'm.gguf', modelName: 'm', chat: chatml, stopTokens: ['<|im_end|>'] });
  assert.ok(
    text.includes(
      'TEMPLATE """{{ "" }}{{ range .Messages }}{{ if eq .Role "system" }}{{ "<|im_start|>system\\n" }}{{ .Content }}{{ "<|im_end|>\\n" }}{{ end }}{{ if eq .Role "user" }}{{ "<|im_start|>user\\n" }}{{ .Content }}{{ "<|im_end|>\\n" }}{{ end }}{{ if eq .Role "assistant" }}{{ "<|im_start|>assistant\\n" }}{{ .Content }}{{ "<|im_end|>\\n" }}{{ end }}{{ end }}{{ "<|im_start|>assistant\\n" }}"""',
    ),
    text,
  );
  assert.match(text, /^PARAMETER stop "<\|im_end\|>"$/m);
  // A default system prompt when none is given is not a fixed prefix per role: left to Ollama, said so.
  const withDefault = ChatTemplate.fromString(
    "{% if messages[0]['role'] != 'system' %}{{ 'SYS: be nice\\n' }}{% endif %}{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}",
    'default-system',
  );
  assert.equal(deriveTurnFormat(withDefault), null);
  const fallback = ollamaModelfile({ ggufFile: 'm.gguf', modelName: 'm', chat: withDefault, stopTokens: [] });
  assert.doesNotMatch(fallback, /^TEMPLATE/m);
  assert.match(fallback, /could not be translated to Ollama's Go template/);
});
