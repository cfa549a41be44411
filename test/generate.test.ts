// Greedy generation semantics (EOS per row, caller order, limits) and the `scalpel generate` command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { loadModel } from '../src/model/load.js';
import { greedyGenerate, lastLogits } from '../src/engine/generate.js';
import { ScalpelError } from '../src/errors.js';

const ROOT = process.cwd();
interface Case {
  kind: string;
  text?: string;
  messages?: { role: string; content: string }[];
  input_ids: number[];
  greedy: number[];
}
const fixture = (name: string) =>
  JSON.parse(fs.readFileSync(path.join(ROOT, 'test/fixtures/expected', `${name}.json`), 'utf8')) as {
    model_dir: string;
    cases: Case[];
  };

/** The fixture's greedy ids (which ignore EOS) cut before the first stop id. */
const cut = (ids: number[], stop: readonly number[]) => {
  const i = ids.findIndex((t) => stop.includes(t));
  return i < 0 ? ids : ids.slice(0, i);
};

test('greedy generation stops each row at its own EOS and returns results in caller order', async () => {
  const fx = fixture('llama');
  const { model } = await loadModel(path.join(ROOT, fx.model_dir));
  const cases = fx.cases.slice(0, 4).reverse();
  const prompts = cases.map((c) => c.input_ids);
  const stop = [cases[0]!.greedy[5]!, cases[2]!.greedy[10]!];
  const got = greedyGenerate(model, prompts, { maxNewTokens: 24, eosTokenIds: stop, batchSize: 3 });
  assert.deepEqual(
    got,
    cases.map((c) => cut(c.greedy, stop)),
  );
  assert.ok(got[0]!.length <= 5 && got[2]!.length <= 10);
});

test('maxNewTokens limits and bad inputs', async () => {
  const fx = fixture('qwen2');
  const { model } = await loadModel(path.join(ROOT, fx.model_dir));
  const prompts = fx.cases.slice(0, 2).map((c) => c.input_ids);
  assert.deepEqual(greedyGenerate(model, prompts, { maxNewTokens: 0, eosTokenIds: [] }), [[], []]);
  assert.deepEqual(
    greedyGenerate(model, prompts, { maxNewTokens: 1, eosTokenIds: [] }),
    fx.cases.slice(0, 2).map((c) => c.greedy.slice(0, 1)),
  );
  assert.deepEqual(greedyGenerate(model, [], { maxNewTokens: 4, eosTokenIds: [] }), []);
  assert.deepEqual(lastLogits(model, []), []);
  assert.throws(() => lastLogits(model, [[]]), ScalpelError);
  assert.throws(() => lastLogits(model, [[model.vocabSize]]), /outside the vocabulary/);
  assert.throws(() => greedyGenerate(model, prompts, { maxNewTokens: -1, eosTokenIds: [] }), ScalpelError);
  assert.throws(() => lastLogits(model, prompts, { batchSize: 0 }), ScalpelError);
  const progress: number[][] = [];
  lastLogits(
    model,
    fx.cases.map((c) => c.input_ids),
    { batchSize: 4, onProgress: (d, t) => progress.push([d, t]) },
  );
  assert.deepEqual(progress, [
    [4, fx.cases.length],
    [fx.cases.length, fx.cases.length],
  ]);
});

const cli = (args: string[]) =>
  spawnSync(process.execPath, [path.join(ROOT, 'bin/scalpel.js'), 'generate', ...args], { encoding: 'utf8' });

test('scalpel generate --json: plain and chat prompts give transformers ids and continuations', async () => {
  for (const name of ['llama', 'gemma2']) {
    const fx = fixture(name);
    const { eosTokenIds } = await loadModel(path.join(ROOT, fx.model_dir));
    const plain = fx.cases.find((c) => c.kind === 'plain')!;
    let r = cli(['--model', fx.model_dir, '--prompt', plain.text!, '--max-new-tokens', '24', '--json']);
    assert.equal(r.status, 0, r.stderr);
    let out = JSON.parse(r.stdout) as { prompt_tokens: number[]; tokens: number[]; text: string };
    assert.deepEqual(out.prompt_tokens, plain.input_ids);
    assert.deepEqual(out.tokens, cut(plain.greedy, eosTokenIds));
    assert.equal(typeof out.text, 'string');

    const chat = fx.cases.find(
      (c) =>
        c.kind === 'chat' &&
        c.messages!.length <= 2 &&
        c.messages!.at(-1)!.role === 'user' &&
        (c.messages!.length === 1 || c.messages![0]!.role === 'system'),
    );
    if (!chat) continue;
    const system = chat.messages!.length === 2 ? ['--system', chat.messages![0]!.content] : [];
    r = cli([
      '--model',
      fx.model_dir,
      '--prompt',
      chat.messages!.at(-1)!.content,
      '--chat',
      ...system,
      '--max-new-tokens',
      '24',
      '--json',
    ]);
    assert.equal(r.status, 0, r.stderr);
    out = JSON.parse(r.stdout);
    assert.deepEqual(out.prompt_tokens, chat.input_ids);
    assert.deepEqual(out.tokens, cut(chat.greedy, eosTokenIds));
  }
});

test('scalpel generate: plain text output, default token limit, one-line errors with exit code 1', () => {
  const fx = fixture('llama');
  let r = cli(['--model', fx.model_dir, '--prompt', 'Hello']);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.stdout.endsWith('\n'));

  r = cli(['--model', fx.model_dir, '--prompt', 'Hello', '--max-new-tokens', 'lots']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--max-new-tokens/);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-gen-'));
  try {
    // --chat on a model without a chat template
    fs.cpSync(path.join(ROOT, fx.model_dir), dir, { recursive: true });
    const tc = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
    delete tc.chat_template;
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tc));
    fs.rmSync(path.join(dir, 'chat_template.jinja'), { force: true });
    r = cli(['--model', dir, '--prompt', 'Hello', '--chat']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /no chat template.*run without --chat/);

    fs.writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({ model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] }),
    );
    r = cli(['--model', dir, '--prompt', 'Hello']);
    assert.equal(r.status, 1);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(
      r.stderr,
      /model_type 'gpt2' is not supported; supported model_type values: llama, mistral, qwen2, qwen3, gemma2/,
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('scalpel generate: streamed text equals the JSON text; --stop cuts before the string; a seed repeats a sample', () => {
  const model = path.join(ROOT, 'models/scalpel-tiny-chat');
  const base = ['--model', model, '--chat', '--prompt', 'How do I bake bread?', '--max-new-tokens', '40'];
  const json = cli([...base, '--json']);
  assert.equal(json.status, 0, json.stderr);
  const full = JSON.parse(json.stdout) as { tokens: number[]; text: string; finish_reason: string };
  const plain = cli(base);
  assert.equal(plain.stdout, `${full.text}\n`);
  // A stop string from the middle of the answer: the text ends right before it, in both output modes.
  const stop = full.text.slice(8, 12);
  const cut = cli([...base, '--stop', stop, '--json']);
  const c = JSON.parse(cut.stdout) as { text: string; finish_reason: string };
  assert.equal(c.text, full.text.slice(0, full.text.indexOf(stop)));
  assert.equal(c.finish_reason, 'stop');
  assert.equal(cli([...base, '--stop', stop]).stdout, `${c.text}\n`);
  // Sampling: the same seed gives the same tokens; temperature 0 is greedy.
  const sample = (seed: string) =>
    JSON.parse(cli([...base, '--temperature', '1.5', '--seed', seed, '--json']).stdout).tokens as number[];
  assert.deepEqual(sample('4'), sample('4'));
  const seeds = ['1', '2', '3', '4', '5'].map(sample);
  assert.ok(
    seeds.some((t) => t.join() !== full.tokens.join()),
    'sampling at temperature 1.5 leaves the greedy path',
  );
  const greedy = JSON.parse(cli([...base, '--temperature', '0', '--json']).stdout).tokens;
  assert.deepEqual(greedy, full.tokens);
  for (const [flag, value, re] of [
    ['--temperature', '-1', /^scalpel: --temperature -1: expected a number ≥ 0\n$/],
    ['--top-p', '0', /^scalpel: --top-p 0: expected a number in \(0, 1\]\n$/],
    ['--top-k', 'x', /^scalpel: --top-k x: expected a number\n$/],
  ] as const) {
    const r = cli([...base, flag, value]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, re);
  }
});
