// What a user sees on bad input: `scalpel generate` on a broken model directory prints exactly one line naming the
// problem and exits 1, never a stack trace. One case for each bad input the foundation issue lists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';

const ROOT = process.cwd();
const BIN = path.join(ROOT, 'bin/scalpel.js');

/** A private copy of a fixture model directory, to break. */
function copyFixture(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-cli-err-'));
  fs.cpSync(path.join(ROOT, 'test/fixtures/models', name), dir, { recursive: true });
  return dir;
}

/** Runs `scalpel generate` and asserts exit code 1 with a single stderr line matching `pattern`. */
function failsWith(dir: string, extra: string[], pattern: RegExp): void {
  const r = spawnSync(process.execPath, [BIN, 'generate', '--model', dir, '--prompt', 'Hello there', ...extra], {
    encoding: 'utf8',
    env: { ...process.env, SCALPEL_KERNELS: 'js' },
  });
  assert.equal(r.status, 1, `exit code: stdout=${r.stdout} stderr=${r.stderr}`);
  assert.equal(r.stdout, '');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^scalpel: /);
  assert.match(lines[0]!, pattern);
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Rewrites model.safetensors through `edit`, which may drop or replace tensors. */
async function rewriteWeights(dir: string, edit: (tensors: Map<string, import('../src/tensor.js').Tensor>) => void) {
  const file = path.join(dir, 'model.safetensors');
  const tensors = await readSafetensors(file);
  edit(tensors);
  await writeSafetensors(file, tensors);
}

test('--model that is neither a folder nor a Hub repo id', () => {
  failsWith('no-such-folder', [], /^scalpel: no-such-folder: no such model folder, and not a Hugging Face repo id/);
});

test('missing config.json', () => {
  const dir = copyFixture('llama');
  fs.rmSync(path.join(dir, 'config.json'));
  failsWith(dir, [], /config\.json/);
});

test('unknown architecture lists the supported ones', () => {
  const dir = copyFixture('llama');
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  config.model_type = 'mamba';
  config.architectures = ['MambaForCausalLM'];
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  failsWith(dir, [], /mamba.*supported.*llama.*qwen2.*gemma2/);
});

test('safetensors header that lies about offsets', () => {
  const dir = copyFixture('llama');
  const file = path.join(dir, 'model.safetensors');
  const bytes = fs.readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  const name = Object.keys(header).find((k) => k !== '__metadata__')!;
  header[name].data_offsets[1] += 4096; // claims bytes that the file does not have
  let text = JSON.stringify(header);
  text = text.padEnd(Math.ceil(text.length / 8) * 8, ' ');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(text.length));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(text), bytes.subarray(8 + headerLength)]));
  failsWith(dir, [], /model\.safetensors: tensor '[^']+': data_offsets .* expected \d+ for shape/);
});

test('truncated shard', () => {
  const dir = copyFixture('llama-sharded');
  const shard = fs
    .readdirSync(dir)
    .filter((f) => /^model-0000\d-of-\d+\.safetensors$/.test(f))
    .sort()
    .at(-1)!;
  const file = path.join(dir, shard);
  fs.truncateSync(file, fs.statSync(file).size - 100);
  failsWith(dir, [], new RegExp(`${shard.replace(/\./g, '\\.')}.*(truncated|short|end|bytes)`, 'i'));
});

test('missing tensor', async () => {
  const dir = copyFixture('llama');
  await rewriteWeights(dir, (t) => t.delete('model.layers.1.mlp.down_proj.weight'));
  failsWith(dir, [], /missing tensor model\.layers\.1\.mlp\.down_proj\.weight/);
});

test('wrong tensor shape', async () => {
  const dir = copyFixture('llama');
  await rewriteWeights(dir, (t) => {
    const w = t.get('model.layers.0.mlp.gate_proj.weight')!;
    t.set(w.name, { ...w, shape: [...w.shape].reverse() }); // same bytes, transposed shape
  });
  failsWith(dir, [], /model\.layers\.0\.mlp\.gate_proj\.weight has shape \[64, 128\], expected \[128, 64\]/);
});

test('tokenizer.json that is not JSON', () => {
  const dir = copyFixture('llama');
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"version": "1.0", "model": ');
  failsWith(dir, [], /tokenizer\.json.*JSON/);
});

test('chat template that fails to render', () => {
  const dir = copyFixture('llama');
  const file = path.join(dir, 'tokenizer_config.json');
  const config = JSON.parse(fs.readFileSync(file, 'utf8'));
  config.chat_template = "{{ raise_exception('this template only takes system messages') }}";
  fs.writeFileSync(file, JSON.stringify(config));
  failsWith(dir, ['--chat'], /tokenizer_config\.json.*only takes system messages/);
});

test('a reader that closes the pipe early ends the output quietly (no EPIPE stack trace)', async () => {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [BIN, 'datasets'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  child.stdout.destroy(); // a reader gone before the first line, like `| head -0`: the first write meets EPIPE
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  assert.equal(stderr, '');
  assert.equal(code, 0);
});

test('scalpel eval without a run: flags that dial a run, or no --model, fail in one line before loading the model', () => {
  const model = path.join(ROOT, 'test/fixtures/models/llama');
  const notRun = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-cli-err-'));
  const cases: [string[], RegExp][] = [
    [['--model', model, '--lambda', '0.5'], /^scalpel: --lambda: only with --run RUN \(without a run, eval measures/],
    [['--model', model, '--alpha', '1'], /^scalpel: --alpha: only with --run RUN/],
    [['--model', model, '--target', 'true'], /^scalpel: --target: only with --run RUN/],
    [['--model', model, '--ablation', 'affine'], /^scalpel: --ablation: only with --run RUN/],
    [['--model', model, '--no-filter'], /^scalpel: --no-filter: only with --run RUN/],
    [[], /^scalpel: --run RUN is required, or --model MODEL to evaluate a model alone \(or --endpoint URL\)$/],
    [['--out', notRun], /^scalpel: --out .*: not a Scalpel run \(no run\.json\); add --model MODEL/],
  ];
  for (const [args, pattern] of cases) {
    const r = spawnSync(process.execPath, [BIN, 'eval', ...args], { encoding: 'utf8' });
    assert.equal(r.status, 1, `eval ${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stdout, '');
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
    assert.match(lines[0]!, pattern);
  }
  assert.deepEqual(fs.readdirSync(notRun), []);
  fs.rmSync(notRun, { recursive: true });
});

test('scalpel serve: bad flags fail in one line before loading the model or listening', () => {
  const model = path.join(ROOT, 'test/fixtures/models/llama');
  const cases: [string[], RegExp][] = [
    [['--model', model, '--port', 'http'], /^scalpel: --port http: expected an integer ≥ 0$/],
    [['--model', model, '--port', '70000'], /^scalpel: --port 70000: expected a port number ≤ 65535$/],
    [['--model', model, '--max-sequences', '0'], /^scalpel: --max-sequences 0: expected an integer ≥ 1$/],
    [['--model', model, '--max-queue', '-1'], /^scalpel: --max-queue -1: expected an integer ≥ 0$/],
    [[], /^scalpel: required option '--model <model>' not specified$/],
  ];
  for (const [args, pattern] of cases) {
    const r = spawnSync(process.execPath, [BIN, 'serve', ...args], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 1, `serve ${args.join(' ')}: ${r.stderr}`);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
    assert.match(lines[0]!, pattern);
  }
});

test('scalpel chat: bad flags, no run, and a model without a chat template fail in one line', () => {
  const model = path.join(ROOT, 'test/fixtures/models/llama');
  const notRun = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-cli-err-'));
  const plain = copyFixture('llama');
  fs.rmSync(path.join(plain, 'chat_template.jinja'), { force: true });
  const config = JSON.parse(fs.readFileSync(path.join(plain, 'tokenizer_config.json'), 'utf8'));
  delete config.chat_template;
  fs.writeFileSync(path.join(plain, 'tokenizer_config.json'), JSON.stringify(config));
  const cases: [string[], RegExp][] = [
    [['--model', model, '--max-new-tokens', '0'], /^scalpel: --max-new-tokens: expected a positive integer, got '0'$/],
    [['--model', model, '--lambda', '0.5'], /^scalpel: --lambda: only with --run RUN$/],
    [['--model', model, '--temperature', 'hot'], /^scalpel: --temperature hot: expected a number$/],
    [[], /^scalpel: required option '--model <model>' not specified$/],
    [['--run', notRun], /^scalpel: .*run\.json/],
    [['--model', plain], /^scalpel: .*: no chat template .*use scalpel generate$/],
  ];
  for (const [args, pattern] of cases) {
    const r = spawnSync(process.execPath, [BIN, 'chat', ...args], { encoding: 'utf8', input: '' });
    assert.equal(r.status, 1, `chat ${args.join(' ')}: ${r.stdout} ${r.stderr}`);
    assert.equal(r.stdout, '');
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
    assert.match(lines[0]!, pattern);
  }
  fs.rmSync(notRun, { recursive: true });
  fs.rmSync(plain, { recursive: true });
});

test('scalpel ability: bad flags and a missing sample are one line each', () => {
  const model = path.join(ROOT, 'models/scalpel-tiny-chat');
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-cli-err-'));
  for (const [args, pattern] of [
    [['--model', model, '--shots', '6'], /^scalpel: --shots 6: expected an integer from 0 to 5$/],
    [['--model', model, '--n-mmlu', '-1'], /^scalpel: --n-mmlu -1: expected an integer from 0 up$/],
    [['--model', model, '--lambda', '0.5'], /^scalpel: --lambda: only with --run RUN$/],
    [[], /^scalpel: --run RUN is required, or --model MODEL for a baseline alone$/],
    [['--run', empty], /run\.json: missing; make the run with `scalpel run` first$/],
    [
      ['--model', model, '--data-dir', empty, '--n-arc', '0', '--n-ppl-docs', '0'],
      /dataset mmlu: .*abstract_algebra_test\.csv not found/,
    ],
  ] as [string[], RegExp][]) {
    const r = spawnSync(process.execPath, [BIN, 'ability', ...args], { encoding: 'utf8' });
    assert.equal(r.status, 1, `ability ${args.join(' ')}: ${r.stderr}`);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
    assert.match(lines[0]!, pattern);
  }
  fs.rmSync(empty, { recursive: true, force: true });
});

test('scalpel bake: --dtype / --quant that do not fit --format fail in one line before the run is opened', () => {
  const notRun = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-cli-err-'));
  const out = path.join(notRun, 'model.gguf');
  const cases: [string[], RegExp][] = [
    [['--quant', 'q8_0'], /^scalpel: --quant q8_0: only --format gguf takes --quant, not --format hf$/],
    [['--format', 'hf', '--dtype', 'f16'], /^scalpel: --dtype f16: only --format gguf takes --dtype, not --format hf$/],
    [['--format', 'gguf', '--dtype', 'f64'], /^scalpel: --dtype: expected one of f32, f16, bf16, got "f64"$/],
    [['--format', 'gguf', '--quant', 'q4_0'], /^scalpel: --quant: expected one of q8_0, got "q4_0"$/],
  ];
  for (const [args, pattern] of cases) {
    const r = spawnSync(process.execPath, [BIN, 'bake', '--run', notRun, '--out', out, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 1, `bake ${args.join(' ')}: ${r.stdout} ${r.stderr}`);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
    assert.match(lines[0]!, pattern);
  }
  assert.deepEqual(fs.readdirSync(notRun), [], 'nothing written');
  fs.rmSync(notRun, { recursive: true });
});

test('scalpel bake --format: exports that cannot be made fail in one line and write nothing', () => {
  const run = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-cli-err-'));
  const small = ['--n-train', '16', '--n-val', '8', '--quiet'];
  const model = path.join(ROOT, 'models/scalpel-tiny-chat');
  for (const args of [
    ['extract', '--model', model, '--out', run, ...small],
    ['select', '--run', run, '--alpha', '1', ...small],
  ])
    assert.equal(spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' }).status, 0, args.join(' '));
  // The same run with α = 0 in run.json: nothing to export as a control vector.
  const noAdd = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-cli-err-'));
  fs.cpSync(run, noAdd, { recursive: true });
  const runJson = JSON.parse(fs.readFileSync(path.join(noAdd, 'run.json'), 'utf8'));
  fs.writeFileSync(
    path.join(noAdd, 'run.json'),
    JSON.stringify({ ...runJson, config: { ...runJson.config, alpha: 0 } }),
  );
  const out = path.join(os.tmpdir(), `scalpel-cli-err-out-${process.pid}`);
  const cases: [string[], RegExp][] = [
    [
      ['--run', run, '--out', out, '--format', 'onnx'],
      /^scalpel: --format: expected one of hf, gguf, peft-lora, gguf-lora, control-vector, got "onnx"$/,
    ],
    [
      ['--run', run, '--out', out, '--format', 'peft-lora'],
      /run\.json: config\.alpha is 1; activation addition cannot be written into weights/,
    ],
    [
      ['--run', run, '--out', `${out}.gguf`, '--format', 'gguf-lora'],
      /run\.json: config\.alpha is 1; activation addition cannot be written into weights/,
    ],
    [
      ['--run', noAdd, '--out', `${out}.gguf`, '--format', 'control-vector'],
      /run\.json: config\.alpha is 0, so the run adds no vector to export as a control vector; rerun select with --alpha$/,
    ],
    [
      ['--run', run, '--out', run, '--format', 'control-vector'],
      /^scalpel: --out .*: is a directory; this format writes one file/,
    ],
    [['--run', noAdd, '--out', noAdd, '--format', 'peft-lora'], /: exists and is not empty; choose a new directory/],
    [
      ['--run', noAdd, '--out', out, '--format', 'peft-lora', '--lambda', '1.5'],
      /^scalpel: --lambda 1\.5: expected a number in \[0, 1\]$/,
    ],
  ];
  for (const [args, pattern] of cases) {
    const r = spawnSync(process.execPath, [BIN, 'bake', ...args], { encoding: 'utf8' });
    assert.equal(r.status, 1, `bake ${args.join(' ')}: ${r.stderr}`);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
    assert.match(lines[0]!, pattern);
    assert.ok(!fs.existsSync(out) && !fs.existsSync(`${out}.gguf`), `bake ${args.join(' ')} wrote something`);
  }
  fs.rmSync(run, { recursive: true });
  fs.rmSync(noAdd, { recursive: true });
});
