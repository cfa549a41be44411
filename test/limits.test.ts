// Limits with clear errors (issue 16): a sequence longer than the model's context (generate, serve, eval), a
// --max-new-tokens the context cannot hold, a prompt file over the size limit, a model larger than the memory there
// is (checked before loading, with the numbers; SCALPEL_MEMORY_LIMIT_BYTES stands in for a small machine), and a
// full disk while a run or a bake is written (a file size limit, `ulimit -f`, gives EFBIG as a full disk gives
// ENOSPC): each is one line naming the file, flag or field, and nothing is left half-written.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadModel } from '../src/model/load.js';
import { memoryNeed } from '../src/model/memory.js';
import { parseConfig } from '../src/arch/index.js';
import { createServer, type ScalpelServer } from '../src/serve/server.js';
import { BIN, ROOT, TINY_CHAT, smallRunArgs } from './support/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-limits-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Runs scalpel (through bash, so `ulimit` can go first); returns the exit code and what it printed. */
function scalpel(args: string[], env: Record<string, string> = {}, ulimit?: number) {
  const quoted = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const script = `${ulimit !== undefined ? `ulimit -f ${ulimit}; ` : ''}exec ${quoted}`;
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete childEnv['SCALPEL_DATA'];
  const r = spawnSync('bash', ['-c', script], { cwd: ROOT, encoding: 'utf8', env: childEnv });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Exit 1 with exactly one line on stderr, matching `pattern`. */
function oneLine(r: { code: number | null; err: string }, pattern: RegExp): void {
  assert.equal(r.code, 1, r.err);
  assert.equal(r.err.trimEnd().split('\n').length, 1, r.err);
  assert.match(r.err.trimEnd(), pattern);
  assert.doesNotMatch(r.err, /\n\s+at /);
}

const LONG_PROMPT = 'word '.repeat(500); // about 500 tokens on scalpel-tiny-chat, whose context is 512

test('generate: --max-new-tokens past the context, and a prompt that leaves too little room, are one line each', () => {
  oneLine(
    scalpel(['generate', '--model', TINY_CHAT, '--prompt', 'hi', '--max-new-tokens', '600']),
    /^scalpel: --max-new-tokens 600: the model's context is 512 positions \(max_position_embeddings in .*config\.json\)/,
  );
  oneLine(
    scalpel(['generate', '--model', TINY_CHAT, '--prompt', LONG_PROMPT, '--max-new-tokens', '60']),
    /^scalpel: --prompt: the prompt's \d+ tokens plus --max-new-tokens 60 need \d+ positions, more than the model's context of 512 \(max_position_embeddings\)$/,
  );
});

test('eval: a prompt that does not fit the context with --max-new-tokens is named before anything is generated', () => {
  const file = path.join(tmp, 'long.txt');
  fs.writeFileSync(file, `How do I bake bread?\n${LONG_PROMPT}\n`);
  const out = path.join(tmp, 'eval-long');
  oneLine(
    scalpel(['eval', '--model', TINY_CHAT, '--dataset', file, '--max-new-tokens', '64', '--out', out]),
    /^scalpel: .*long\.txt prompt 2: the prompt's \d+ tokens plus --max-new-tokens 64 need \d+ positions, more than the model's context of 512/,
  );
  assert.ok(!fs.existsSync(path.join(out, 'eval.json')));
});

test('prompt files over the size limit are refused before they are read; SCALPEL_MAX_PROMPT_FILE_BYTES raises it', () => {
  const file = path.join(tmp, 'prompts.txt');
  fs.writeFileSync(file, 'How do I bake bread?\nName three colors.\n');
  const args = ['eval', '--model', TINY_CHAT, '--dataset', file, '--max-new-tokens', '2', '--json'];
  oneLine(
    scalpel(args, { SCALPEL_MAX_PROMPT_FILE_BYTES: '16' }),
    /^scalpel: .*prompts\.txt: prompt file is 40 bytes, more than the limit of 16 bytes; set SCALPEL_MAX_PROMPT_FILE_BYTES to raise it$/,
  );
  oneLine(
    scalpel(args, { SCALPEL_MAX_PROMPT_FILE_BYTES: 'lots' }),
    /^scalpel: SCALPEL_MAX_PROMPT_FILE_BYTES="lots": expected/,
  );
  const ok = scalpel(args, { SCALPEL_MAX_PROMPT_FILE_BYTES: '40' });
  assert.equal(ok.code, 0, ok.err);
  assert.equal(JSON.parse(ok.out).results[0].n, 2);
});

test('a model larger than the memory there is: refused before loading, with the numbers', () => {
  const args = parseConfig(
    JSON.parse(fs.readFileSync(path.join(TINY_CHAT, 'config.json'), 'utf8')),
    'config.json',
  ).args;
  const need = memoryNeed(TINY_CHAT, args)!;
  // The weight file's size, and 512 positions × 6 layers × 4 KV heads × 64 dims × (K and V) × 4 bytes.
  assert.equal(need.weightBytes, fs.statSync(path.join(TINY_CHAT, 'model.safetensors')).size);
  assert.equal(need.kvBytes, 512 * 6 * 4 * 64 * 2 * 4);
  const r = scalpel(['generate', '--model', TINY_CHAT, '--prompt', 'hi'], { SCALPEL_MEMORY_LIMIT_BYTES: '20000000' });
  oneLine(
    r,
    /^scalpel: .*scalpel-tiny-chat: the model needs about 29\.3 MiB \(weights 23\.3 MiB \+ KV cache 6\.0 MiB for 512 positions\), more than the 19\.1 MiB SCALPEL_MEMORY_LIMIT_BYTES; /,
  );
  const enough = scalpel(['generate', '--model', TINY_CHAT, '--prompt', 'hi', '--max-new-tokens', '2'], {
    SCALPEL_MEMORY_LIMIT_BYTES: String(need.total),
  });
  assert.equal(enough.code, 0, enough.err);
});

test('a full disk while a run is written: one line, and no run directory or temp file is left', () => {
  const run = path.join(tmp, 'run-full');
  // 60 KiB: run.json would fit, candidates.safetensors (about 120 KB) does not.
  const r = scalpel(smallRunArgs(run, ['--eval', 'builtin-harmless-test:2', '--quiet']), {}, 60);
  oneLine(r, /^scalpel: .*run-full\/candidates\.safetensors: cannot write \(file larger than this process may write/);
  assert.ok(!fs.existsSync(run), 'the run directory it created is removed again');
  assert.deepEqual(
    fs.readdirSync(tmp).filter((f) => f.startsWith('run-full') || f.startsWith('.')),
    [],
  );
});

test('a full disk while a bake is written: one line naming the output, and nothing left beside it', () => {
  const run = path.join(tmp, 'bake-run');
  const made = scalpel(smallRunArgs(run, ['--eval', 'builtin-harmless-test:2', '--quiet']));
  assert.equal(made.code, 0, made.err);
  const out = path.join(tmp, 'baked');
  // 1000 KiB: far less than the 24 MB of weights.
  oneLine(
    scalpel(['bake', '--run', run, '--out', out, '--quiet'], {}, 1000),
    /^scalpel: .*\/baked\/model\.safetensors: cannot write \(file larger than this process may write/,
  );
  assert.deepEqual(
    fs.readdirSync(tmp).filter((f) => f.startsWith('baked')),
    [],
  );
});

// ---------------------------------------------------------------------------------------------------------------
// serve: the same limit as a 400 in OpenAI's shape (context_length_exceeded), and a default max_tokens that fits.

let server: ScalpelServer;
let base: string;
before(async () => {
  server = createServer({ loaded: await loadModel(TINY_CHAT), name: 'tiny', log: () => {} });
  base = await server.listen({ port: 0 });
});
after(() => server.close());

interface Answer {
  error: { param: string | null; code: string | null; message: string };
  usage: { prompt_tokens: number; completion_tokens: number };
}

async function complete(body: Record<string, unknown>) {
  const res = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny', temperature: 0, ...body }),
  });
  return { status: res.status, json: (await res.json()) as Answer };
}

test('serve: a request past the context is a 400 naming max_tokens or the prompt; no max_tokens gets what fits', async () => {
  const tooMany = await complete({ prompt: 'The sea is', max_tokens: 600 });
  assert.equal(tooMany.status, 400);
  assert.equal(tooMany.json.error.param, 'max_tokens');
  assert.equal(tooMany.json.error.code, 'context_length_exceeded');
  assert.match(
    tooMany.json.error.message,
    /plus max_tokens 600 need \d+ positions, more than the model's context of 512/,
  );
  const tooLong = await complete({ prompt: 'word '.repeat(600), max_tokens: 1 });
  assert.equal(tooLong.status, 400);
  assert.equal(tooLong.json.error.param, 'prompt');
  assert.match(tooLong.json.error.message, /^the prompt's \d+ tokens fill the model's context of 512/);
  // 500 prompt tokens and no max_tokens: the default (16 for completions) still fits; with ignore_eos, all 12 left.
  const fits = await complete({ prompt: LONG_PROMPT, ignore_eos: true });
  assert.equal(fits.status, 200, JSON.stringify(fits.json));
  const prompt = fits.json.usage.prompt_tokens;
  assert.equal(fits.json.usage.completion_tokens, Math.min(16, 512 - prompt));
});
