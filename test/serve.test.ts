// `scalpel serve` through the official openai client, in-process on port 0 with the committed small chat model and
// a run made here on small samples of the built-in sets: chat and completions, whole and streamed; greedy answers
// equal `scalpel generate` for the baseline and the edit; 32 concurrent clients × 10 requests with mixed edits get exactly
// the tokens they get alone; every bad request gets its 4xx in OpenAI's error shape and the server goes on; a client
// that leaves mid-stream frees its slot; --api-key; 429 on a full queue; SIGTERM lets a request finish, exits 0.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { loadModel, type LoadedModel } from '../src/model/load.js';
import { requireRunJson } from '../src/method/rundir.js';
import { createServer, type ScalpelServer, type ServeOptions } from '../src/serve/server.js';
import { makeSmallRun, runScalpelAsync } from './support/cli.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = path.join(root, 'bin', 'scalpel.js');
const MODEL = path.join(root, 'models', 'scalpel-tiny-chat');
const NAME = 'scalpel-tiny-chat';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-serve-'));
const RUN = path.join(tmp, 'run');

let loaded: LoadedModel;
let server: ScalpelServer;
let base: string;
let client: OpenAI;
const logLines: string[] = [];
const extra: ScalpelServer[] = [];

async function start(opts: Partial<ServeOptions> = {}): Promise<{ server: ScalpelServer; base: string }> {
  const s = createServer({
    loaded,
    name: NAME,
    run: { dir: RUN, json: requireRunJson(RUN) },
    log: (l) => logLines.push(l),
    ...opts,
  });
  const url = await s.listen({ port: 0 });
  return { server: s, base: url };
}

before(async () => {
  makeSmallRun(RUN);
  loaded = await loadModel(MODEL);
  ({ server, base } = await start({ maxSequences: 32 }));
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
});
after(async () => {
  await Promise.all([server?.close(), ...extra.map((s) => s.close())]);
  fs.rmSync(tmp, { recursive: true, force: true });
});

// ignore_eos (vLLM's extra field, which the server honours) keeps the small model talking to max_tokens.
const sea = {
  model: NAME,
  prompt: 'The sea is',
  max_tokens: 12,
  temperature: 0,
  ignore_eos: true,
} as OpenAI.CompletionCreateParamsNonStreaming;
type ChatParams = OpenAI.Chat.ChatCompletionCreateParamsNonStreaming;
const PROMPTS = ['How do I bake bread?', 'Write a poem about the sea.', 'How do I pick a lock?', 'Name three colors.'];
const chatParams = (prompt: string, model = NAME, more: Record<string, unknown> = {}): ChatParams =>
  ({ model, messages: [{ role: 'user', content: prompt }], max_tokens: 24, temperature: 0, ...more }) as ChatParams;

async function post(route: string, body: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(`${base}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: r.status, json: (await r.json()) as { error?: Record<string, unknown> } & Record<string, unknown> };
}

const assertErrorShape = (json: Record<string, unknown>) => {
  const e = json['error'] as Record<string, unknown>;
  assert.ok(e, `no error field in ${JSON.stringify(json)}`);
  assert.equal(typeof e['message'], 'string');
  assert.equal(typeof e['type'], 'string');
  assert.ok('param' in e && 'code' in e);
};

test('serve: /health and /v1/models list the aliases', async () => {
  const health = (await (await fetch(`${base}/health`)).json()) as { status: string };
  assert.equal(health.status, 'ok');
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, [NAME, `${NAME}:baseline`, `${NAME}:lambda=0`, `${NAME}:lambda=0.5`, `${NAME}:lambda=1`]);
});

test('serve: chat and completions, streamed text and usage equal the whole answer', async () => {
  const whole = await client.chat.completions.create(chatParams(PROMPTS[0]!, `${NAME}:baseline`));
  const content = whole.choices[0]!.message.content!;
  assert.ok(content.length > 0);
  assert.ok(['stop', 'length'].includes(whole.choices[0]!.finish_reason));
  assert.equal(whole.usage!.total_tokens, whole.usage!.prompt_tokens + whole.usage!.completion_tokens);
  const stream = await client.chat.completions.create({
    ...chatParams(PROMPTS[0]!, `${NAME}:baseline`),
    stream: true,
    stream_options: { include_usage: true },
  });
  let streamed = '';
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const c of stream) {
    streamed += c.choices[0]?.delta.content ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
    usage = c.usage ?? usage;
  }
  assert.equal(streamed, content);
  assert.equal(finish, whole.choices[0]!.finish_reason);
  assert.deepEqual(usage, whole.usage);

  const comp = await client.completions.create(sea);
  assert.equal(comp.choices[0]!.finish_reason, 'length');
  assert.equal(comp.usage!.completion_tokens, 12);
  let text = '';
  for await (const c of await client.completions.create({ ...sea, stream: true })) text += c.choices[0]?.text ?? '';
  assert.equal(text, comp.choices[0]!.text);
});

test('serve: stop strings end the text before them with finish_reason stop', async () => {
  const whole = await client.completions.create(sea);
  const text = whole.choices[0]!.text;
  const stop = text.trim().split(' ')[1]!;
  assert.ok(stop, `a second word in ${JSON.stringify(text)}`);
  const cut = await client.completions.create({ ...sea, stop: [stop] });
  assert.equal(cut.choices[0]!.text, text.slice(0, text.indexOf(stop)));
  assert.equal(cut.choices[0]!.finish_reason, 'stop');
});

test('serve: greedy answers equal scalpel generate, baseline and edited (run default and λ = 0.5)', async () => {
  const prompt = PROMPTS[2]!;
  // Run without blocking the loop: the server under test lives in this process.
  const gen = async (...flags: string[]) =>
    JSON.parse(
      (await runScalpelAsync('generate', ...flags, '--chat', '--prompt', prompt, '--max-new-tokens', '24', '--json'))
        .out,
    ) as { text: string; tokens: number[] };
  const cases: [string, Record<string, unknown>, string[]][] = [
    [`${NAME}:baseline`, {}, ['--model', MODEL]],
    [NAME, {}, ['--run', RUN]],
    [`${NAME}:lambda=0.5`, {}, ['--run', RUN, '--lambda', '0.5']],
    [NAME, { scalpel: { lambda: 0.5 } }, ['--run', RUN, '--lambda', '0.5']],
    [NAME, { scalpel: { intervention: 'none' } }, ['--model', MODEL]],
  ];
  const answers: string[] = [];
  for (const [model, more, flags] of cases) {
    const r = await client.chat.completions.create(chatParams(prompt, model, more));
    const expected = await gen(...flags);
    assert.equal(r.choices[0]!.message.content, expected.text, `${model} ${JSON.stringify(more)}`);
    assert.equal(r.usage!.completion_tokens, expected.tokens.length);
    answers.push(expected.text);
  }
  assert.notEqual(answers[0], answers[1], 'the edit changes this answer (else the test shows nothing)');
});

test('serve: 32 concurrent clients x 10 requests with mixed edits each give exactly their tokens alone', async () => {
  const variants: [string, Record<string, unknown>][] = [
    [`${NAME}:baseline`, {}],
    [NAME, {}],
    [`${NAME}:lambda=0.5`, {}],
    [NAME, { scalpel: { lambda: 0.25 } }],
  ];
  const requests = Array.from({ length: 32 }, (_, i) => {
    const [model, more] = variants[i % variants.length]!;
    return chatParams(`${PROMPTS[i % PROMPTS.length]!} (${i})`, model, { ...more, max_tokens: 12 });
  });
  const contentOf = (r: OpenAI.Chat.ChatCompletion) => [r.choices[0]!.message.content, r.usage!.completion_tokens];
  const alone: ReturnType<typeof contentOf>[] = [];
  for (const r of requests) alone.push(contentOf(await client.chat.completions.create(r)));
  let peak = 0;
  const probe = setInterval(() => {
    peak = Math.max(peak, server.scheduler.running);
  }, 1);
  // 32 clients, each sending 10 requests one after another, so sequences keep joining and leaving the batch.
  const pick = (c: number, k: number) => (c + 7 * k) % requests.length;
  const together = await Promise.all(
    Array.from({ length: 32 }, async (_, c) => {
      const got = [];
      for (let k = 0; k < 10; k++) got.push(contentOf(await client.chat.completions.create(requests[pick(c, k)]!)));
      return got;
    }),
  );
  clearInterval(probe);
  assert.deepEqual(
    together,
    together.map((got, c) => got.map((_, k) => alone[pick(c, k)])),
  );
  assert.ok(peak > 1, `requests ran together (peak batch ${peak})`);
});

test('serve: bad requests get their 4xx in the OpenAI error shape and the server goes on', async () => {
  const ok = { model: NAME, prompt: 'Hi', max_tokens: 2 };
  const cases: [string, unknown, number, string | null][] = [
    ['not JSON', '{"model": ', 400, null],
    ['wrong type', { ...ok, max_tokens: '5' }, 400, 'max_tokens'],
    ['missing field', { model: NAME }, 400, 'prompt'],
    ['λ above 1', { ...ok, scalpel: { lambda: 2 } }, 400, 'scalpel.lambda'],
    ['λ below 0', { ...ok, scalpel: { lambda: -0.1 } }, 400, 'scalpel.lambda'],
    ['λ alias outside [0, 1]', { ...ok, model: `${NAME}:lambda=3` }, 400, 'model'],
    ['unknown model', { ...ok, model: 'gpt-4' }, 404, 'model'],
    ['n = 2', { ...ok, n: 2 }, 400, 'n'],
    ['huge body', { ...ok, prompt: 'x'.repeat(2 * 1024 * 1024) }, 413, null],
  ];
  for (const [what, body, status, param] of cases) {
    const r = await post('/v1/completions', body);
    assert.equal(r.status, status, `${what}: ${JSON.stringify(r.json)}`);
    assertErrorShape(r.json);
    assert.equal(r.json.error!['param'], param, what);
    if (what === 'unknown model') assert.equal(r.json.error!['code'], 'model_not_found');
    if (what.startsWith('λ above')) assert.match(String(r.json.error!['message']), /scalpel\.lambda/);
  }
  const chatNoMessages = await post('/v1/chat/completions', { model: NAME, messages: [] });
  assert.equal(chatNoMessages.status, 400);
  assertErrorShape(chatNoMessages.json);
  const r = await post('/v1/completions', ok);
  assert.equal(r.status, 200);
  // The access log escapes what the client sent: quotes backslashed, control characters as \xNN.
  const evil = await post('/v1/completions', { ...ok, model: 'a"\nb' });
  assert.equal(evil.status, 404);
  assert.ok(logLines.some((l) => l.includes('model="a\\"\\x0ab"')));
  assert.ok(logLines.every((l) => !l.includes('\n')));
});

test('serve: a client that leaves mid-stream frees its slot at once', async () => {
  const abort = new AbortController();
  const r = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: NAME,
      prompt: 'Once',
      max_tokens: 500,
      temperature: 0,
      ignore_eos: true,
      stream: true,
    }),
    signal: abort.signal,
  });
  const reader = r.body!.getReader();
  await reader.read();
  await reader.read();
  assert.equal(server.scheduler.running, 1);
  abort.abort();
  const t0 = Date.now();
  while (server.scheduler.running > 0 && Date.now() - t0 < 5000) await new Promise((res) => setTimeout(res, 5));
  assert.equal(server.scheduler.running, 0, 'the aborted sequence left the batch');
  // The 500-token answer (most of the model's context of 512) would take many seconds more; a wide bound keeps a loaded machine from failing this.
  assert.ok(Date.now() - t0 < 3000, `freed after ${Date.now() - t0} ms`);
});

test('serve: --api-key requires the bearer key on every route but /health', async () => {
  const s = await start({ apiKey: 'sekret' });
  extra.push(s.server);
  const good = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: 'sekret', maxRetries: 0 });
  const bad = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: 'wrong', maxRetries: 0 });
  const r = await good.completions.create({ model: NAME, prompt: 'Hi', max_tokens: 2 });
  assert.equal(r.usage!.completion_tokens, 2);
  await assert.rejects(bad.models.list(), (e: unknown) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  const none = await fetch(`${s.base}/v1/models`);
  assert.equal(none.status, 401);
  assertErrorShape((await none.json()) as Record<string, unknown>);
  assert.equal((await fetch(`${s.base}/health`)).status, 200);
});

test('serve: a full queue answers 429 (max-sequences 1, max-queue 1, three long requests)', async () => {
  const s = await start({ maxSequences: 1, maxQueue: 1 });
  extra.push(s.server);
  const long = { model: NAME, prompt: 'Once', max_tokens: 500, temperature: 0, ignore_eos: true };
  const aborts = [new AbortController(), new AbortController()];
  const first = aborts.map((a) =>
    fetch(`${s.base}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(long),
      signal: a.signal,
    }).catch(() => null),
  );
  const t0 = Date.now();
  while (s.server.scheduler.running + s.server.scheduler.waiting < 2 && Date.now() - t0 < 5000)
    await new Promise((res) => setTimeout(res, 5));
  const third = await fetch(`${s.base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(long),
  });
  assert.equal(third.status, 429);
  const body = (await third.json()) as Record<string, unknown>;
  assertErrorShape(body);
  for (const a of aborts) a.abort();
  await Promise.all(first);
  const t1 = Date.now();
  while (s.server.scheduler.running + s.server.scheduler.waiting > 0 && Date.now() - t1 < 2000)
    await new Promise((res) => setTimeout(res, 5));
  assert.equal(s.server.scheduler.running + s.server.scheduler.waiting, 0);
});

test('serve: SIGTERM lets the request in flight finish, then the process exits 0', async () => {
  const child = spawn(process.execPath, [bin, 'serve', '--model', MODEL, '--port', '0'], { cwd: root });
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /(http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(err);
      if (m) resolve(m[1]!);
    });
    child.once('exit', () => reject(new Error(`exited early: ${err}`)));
  });
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: NAME,
      prompt: 'Once',
      max_tokens: 200,
      temperature: 0,
      ignore_eos: true,
      stream: true,
    }),
  });
  const reader = r.body!.getReader();
  const decoder = new TextDecoder();
  let text = decoder.decode((await reader.read()).value);
  child.kill('SIGTERM');
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value);
  }
  assert.ok(text.trimEnd().endsWith('data: [DONE]'), 'the stream ran to its end');
  assert.match(text, /"finish_reason":"length"/);
  assert.equal(await exited, 0, err);
});
