// The second judge (`--judge openai:URL[#model]`) and evaluation through an endpoint (`eval --endpoint URL`), against
// `scalpel serve` on the project's model over 127.0.0.1 (in this process, so its access log counts the requests), and
// a small proxy in front of it that answers 503 twice (test/support/flaky-proxy.ts) for the retries. The small model
// is a poor judge: these tests check the plumbing (labels parsed from its real answers, the cache, judge.json's
// counts, retries, the concurrency limit, one-line errors), and that generation through the server gives exactly the
// local engine's responses.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadModel } from '../src/model/load.js';
import { createServer, type ScalpelServer } from '../src/serve/server.js';
import { parseJudgeLabel, RUBRIC_VERSION } from '../src/method/judge-rubric.js';
import {
  agreementOf,
  JudgeCache,
  judgeCacheKey,
  type JudgeJson,
  type JudgeRow,
  judgeRows,
  parseJudgeSpec,
} from '../src/method/llm-judge.js';
import { isRefusal } from '../src/method/judge.js';
import type { ResponseRow } from '../src/method/evaluate.js';
import { BIN, ROOT, TINY_CHAT, smallRunArgs } from './support/cli.js';
import { type FlakyProxy, startFlakyProxy } from './support/flaky-proxy.js';

const NAME = 'scalpel-tiny-chat';
const DATA = path.resolve(ROOT, '..', 'shared', 'datasets', 'raw');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-judge-'));
const access: string[] = [];
const servers: ScalpelServer[] = [];
const proxies: FlakyProxy[] = [];
let base = '';
let keyed = '';

before(async () => {
  const loaded = await loadModel(TINY_CHAT);
  const open = createServer({ loaded, name: NAME, log: (l) => access.push(l) });
  const locked = createServer({ loaded, name: NAME, apiKey: 'sesame', log: () => {} });
  servers.push(open, locked);
  base = await open.listen({ port: 0 });
  keyed = await locked.listen({ port: 0 });
});
after(async () => {
  await Promise.all([...servers.map((s) => s.close()), ...proxies.map((p) => p.close())]);
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** `scalpel ARGS…` as a child process, without blocking this process (the server answers it from here). */
function scalpel(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  const e: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete e['SCALPEL_DATA'];
  delete e['OPENAI_API_KEY'];
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: e });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', fail);
    child.on('close', (code) => done({ code: code ?? -1, out, err }));
  });
}
async function ok(args: string[], env: Record<string, string> = {}) {
  const r = await scalpel(args, env);
  assert.equal(r.code, 0, `scalpel ${args.join(' ')}: ${r.err}`);
  return r;
}
/** Exit 1 with exactly one line on stderr, matching `pattern`. */
async function failsWith(args: string[], pattern: RegExp, env: Record<string, string> = {}) {
  const r = await scalpel(args, env);
  assert.equal(r.code, 1, `scalpel ${args.join(' ')}: exit ${r.code}\n${r.err}`);
  const lines = r.err.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line expected, got:\n${r.err}`);
  assert.match(lines[0]!, pattern);
}

const readJson = (dir: string, f: string) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
const readRows = (dir: string): ResponseRow[] =>
  fs
    .readFileSync(path.join(dir, 'responses.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
const cacheLines = (dir: string): { key: string; label: string | null; raw: string }[] =>
  fs
    .readFileSync(path.join(dir, 'judge-cache.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
const chatPosts = () => access.filter((l) => l.startsWith('POST "/v1/chat/completions" 200'));

const SETS = ['--dataset', 'builtin-pseudo-harmful-test:4', 'builtin-harmful-test:4', 'builtin-harmless-test:4'];
const EVAL_SETS = 'builtin-harmful-test:4,builtin-harmless-test:4';

test('judge labels: the first word decides, else every label word must agree; XSTest names map to ours', () => {
  const cases: [string, string | null][] = [
    ['refusal', 'refusal'],
    ['Compliance.', 'compliance'],
    ['**Partial**', 'partial'],
    ['Label: refusal', 'refusal'],
    ['full compliance', 'compliance'],
    ['Partial refusal: it declines the first half.', 'partial'],
    ['The assistant refused to help.', 'refusal'],
    ['<think>is it compliance? no</think>refusal', 'refusal'],
    ['It could be compliance or a refusal.', null],
    ["I'm not able to help with this.", null],
    ['', null],
  ];
  for (const [answer, want] of cases) assert.equal(parseJudgeLabel(answer), want, JSON.stringify(answer));
});

test('--judge spec: openai:URL[#model], anything else is refused with the expected form', () => {
  assert.deepEqual(parseJudgeSpec('openai:http://127.0.0.1:8000/v1#m:baseline'), {
    kind: 'openai',
    baseUrl: 'http://127.0.0.1:8000/v1',
    model: 'm:baseline',
  });
  assert.deepEqual(parseJudgeSpec('openai:http://h/v1'), { kind: 'openai', baseUrl: 'http://h/v1' });
  assert.throws(() => parseJudgeSpec('gpt-4o'), /--judge gpt-4o: expected openai:URL\[#model\]/);
  assert.throws(() => parseJudgeSpec('openai:http://h/v1#'), /empty model name/);
});

test('agreement counts every row once: agree, the two disagreements, partial, unlabelled', () => {
  const row = (dataset: string, substring: JudgeRow['substring'], judge: JudgeRow['judge']): JudgeRow => ({
    dataset,
    condition: 'baseline',
    lambda: null,
    alpha: null,
    index: 0,
    substring,
    judge,
  });
  const a = agreementOf([
    row('x', 'refusal', 'refusal'),
    row('x', 'compliance', 'compliance'),
    row('x', 'refusal', 'compliance'),
    row('x', 'compliance', 'refusal'),
    row('x', 'compliance', 'partial'),
    row('x', 'refusal', null),
    row('y', 'refusal', 'refusal'),
  ]);
  assert.deepEqual(a.agreement['x'], {
    n: 5,
    agree: 2,
    substring_refusal_judge_compliance: 1,
    substring_compliance_judge_refusal: 1,
    partial: 1,
    unparsed: 1,
  });
  assert.equal(a.agreement['y']!.agree, 1);
  assert.deepEqual(a.agreement_by_condition['x']!['baseline'], a.agreement['x']);
});

test('judge cache: a torn last line is dropped and the file rewritten whole before anything is appended', async () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'cache-'));
  const good = { key: judgeCacheKey('j', 'p', 'r'), label: 'refusal', raw: 'refusal' };
  fs.writeFileSync(path.join(dir, 'judge-cache.jsonl'), `${JSON.stringify(good)}\n{"key":"abc","lab`);
  const cache = await JudgeCache.open(dir);
  assert.equal(cache.get(good.key)?.label, 'refusal');
  assert.equal(fs.readFileSync(path.join(dir, 'judge-cache.jsonl'), 'utf8'), `${JSON.stringify(good)}\n`);
  cache.add({ key: 'k2', label: null, raw: 'hmm' });
  assert.equal(cacheLines(dir).length, 2);
  // The key covers the rubric version: another wording must not reuse these labels.
  assert.notEqual(judgeCacheKey('j', 'p', 'r'), judgeCacheKey('j', 'p', 'r '));
  assert.match(RUBRIC_VERSION, /^scalpel-rubric\/\d+$/);
});

test('eval --judge: every response labelled through scalpel serve, judge.json counts them, a rerun asks nothing', {
  timeout: 240_000,
}, async () => {
  const out = path.join(tmp, 'judged');
  const before = chatPosts().length;
  const args = ['eval', '--model', TINY_CHAT, '--out', out, ...SETS, '--max-new-tokens', '16'];
  const first = await ok([...args, '--judge', `openai:${base}/v1#${NAME}`]);
  // The printed table has the judge's column beside the substring judge's, and the agreement table follows.
  assert.match(first.out, /dataset\s+n\s+baseline\s+baseline \(judge\)/);
  assert.match(first.out, /agreement of the substring judge and the judge/);

  const j = readJson(out, 'judge.json') as JudgeJson;
  const rows = readRows(out);
  assert.equal(j.format, 'scalpel-judge/1');
  assert.equal(j.judge, `openai:${base}/v1#${NAME}`);
  assert.equal(j.rubric_version, RUBRIC_VERSION);
  assert.equal(j.rows.length, rows.length);
  assert.equal(rows.length, 12);
  // One request per distinct (prompt, response), each answer in the cache under its key, its label parsed from it.
  const cache = new Map(cacheLines(out).map((l) => [l.key, l]));
  const keys = rows.map((r) => judgeCacheKey(j.judge, r.prompt, r.response));
  assert.equal(cache.size, new Set(keys).size);
  assert.equal(chatPosts().length - before, cache.size);
  rows.forEach((r, i) => {
    const jr = j.rows[i]!;
    assert.deepEqual([jr.dataset, jr.condition, jr.index], [r.dataset, r.condition, r.index]);
    assert.equal(jr.substring, r.refusal ? 'refusal' : 'compliance');
    const line = cache.get(keys[i]!)!;
    assert.equal(jr.judge, parseJudgeLabel(line.raw), `row ${i}: ${JSON.stringify(line.raw)}`);
  });
  // Agreement per dataset adds up to the rows of that dataset.
  for (const [set, a] of Object.entries(j.agreement)) {
    const mine = j.rows.filter((r) => r.dataset === set);
    assert.equal(a.n + a.unparsed, mine.length);
    assert.equal(
      a.agree + a.substring_refusal_judge_compliance + a.substring_compliance_judge_refusal + a.partial,
      a.n,
    );
    assert.equal(a.unparsed, mine.filter((r) => r.judge === null).length);
  }

  // Rerun: every answer comes from the cache; the server sees no chat request, and judge.json has the same labels.
  const mark = chatPosts().length;
  const again = await ok([...args, '--judge', `openai:${base}/v1#${NAME}`]);
  assert.equal(chatPosts().length, mark);
  assert.match(again.err, /judge: 12 rows, 12 from the cache, 0 requests/);
  assert.deepEqual((readJson(out, 'judge.json') as JudgeJson).rows, j.rows);
});

test('judge retries 503s with backoff and keeps to the concurrency limit', { timeout: 120_000 }, async () => {
  const proxy = await startFlakyProxy(base, { failFirst: 2 });
  proxies.push(proxy);
  const dir = fs.mkdtempSync(path.join(tmp, 'retried-'));
  // Six distinct responses, written for the test: the judge labels any text, and nothing needs generating first.
  const texts = [
    'Sure! Run `kill -9 PID` to stop the process.',
    "I'm sorry, but I can't help with that.",
    'As a responsible assistant, I must decline.',
    'Here is a recipe for banana bread: mix flour, sugar and bananas.',
    'I cannot give instructions for that, but here is some general safety advice.',
    'Paris is the capital of France.',
  ];
  const rows: ResponseRow[] = texts.map((response, index) => ({
    dataset: 'handmade',
    condition: 'baseline',
    lambda: null,
    alpha: null,
    index,
    prompt: `Question ${index}`,
    response,
    refusal: isRefusal(response),
    max_new_tokens: 16,
  }));
  const retries: string[] = [];
  const mark = chatPosts().length;
  const j = await judgeRows(rows, {
    spec: parseJudgeSpec(`openai:${proxy.url}/v1`), // no #model: the first the server lists
    concurrency: 2,
    cacheDir: dir,
    retryBaseMs: 20,
    onRetry: (why) => retries.push(why),
  });
  const posts = proxy.requests.filter((q) => q.method === 'POST');
  assert.deepEqual(
    posts.slice(0, 2).map((q) => q.status),
    [503, 503],
  );
  assert.ok(posts.slice(2).every((q) => q.status === 200));
  // Every request that failed was sent again: the server answered one per row.
  assert.equal(posts.length, rows.length + 2);
  assert.equal(chatPosts().length - mark, rows.length);
  assert.deepEqual(retries, ['HTTP 503 "overloaded, try again"', 'HTTP 503 "overloaded, try again"']);
  assert.equal(j.usage.retries, 2);
  assert.ok(proxy.maxInFlight <= 2, `at most 2 requests in flight, saw ${proxy.maxInFlight}`);
  assert.equal(j.judge, `openai:${proxy.url}/v1#${NAME}`);
  assert.equal(cacheLines(dir).length, rows.length);
  assert.deepEqual(
    j.rows.map((r) => r.substring),
    ['compliance', 'refusal', 'compliance', 'compliance', 'refusal', 'compliance'],
  );
});

test('judge errors are one line, before any generation: unreachable, 401, unknown model, missing key variable', {
  timeout: 120_000,
}, async () => {
  const closed = await startFlakyProxy(base, { failFirst: 0 });
  await closed.close(); // a port where nothing listens any more
  const args = ['eval', '--model', TINY_CHAT, ...SETS, '--max-new-tokens', '8'];
  await failsWith(
    [...args, '--judge', `openai:${closed.url}/v1`],
    new RegExp(
      `^scalpel: --judge openai:${closed.url}/v1: ${closed.url}/v1/models: connection refused .*is the server running at that URL\\?$`,
    ),
  );
  await failsWith(
    [...args, '--judge', `openai:${keyed}/v1#${NAME}`],
    /^scalpel: --judge openai:.*: HTTP 401, the server refused the API key .*\$OPENAI_API_KEY/,
  );
  // The right key, through the variable --judge-key-env names, gets past the check to the model.
  await failsWith(
    [...args, '--judge', `openai:${keyed}/v1#nope`, '--judge-key-env', 'MY_JUDGE_KEY'],
    /^scalpel: --judge openai:.*: the server has no model "nope" \(it lists: scalpel-tiny-chat, scalpel-tiny-chat:baseline\)$/,
    { MY_JUDGE_KEY: 'sesame' },
  );
  await failsWith(
    [...args, '--judge', `openai:${base}/v1`, '--judge-key-env', 'UNSET_JUDGE_KEY'],
    /^scalpel: --judge-key-env UNSET_JUDGE_KEY: the environment variable is not set$/,
  );
  await failsWith([...args, '--judge-concurrency', '2'], /^scalpel: --judge-concurrency: only with --judge/);
  await failsWith(
    [...args, '--judge', `openai:${base}/v1`, '--judge-concurrency', '0'],
    /^scalpel: --judge-concurrency 0: expected an integer ≥ 1$/,
  );
});

test('run --judge: judge.json for the eval stage; eval at another λ is judged and printed, the file left alone', {
  timeout: 300_000,
}, async () => {
  const run = path.join(tmp, 'run');
  const judge = ['--judge', `openai:${base}/v1#${NAME}`, '--quiet'];
  await ok(smallRunArgs(run, ['--eval', EVAL_SETS, ...judge]));
  const j = readJson(run, 'judge.json') as JudgeJson;
  const rows = readRows(run);
  assert.equal(j.rows.length, rows.length);
  assert.equal(rows.length, 16);
  assert.deepEqual(Object.keys(j.agreement_by_condition['builtin-harmful-test:4']!).sort(), ['ablated', 'baseline']);
  const mark = chatPosts().length;
  const other = await ok(['eval', '--run', run, '--lambda', '0.5', ...judge]);
  assert.match(other.out, /ablated \(judge\)/);
  assert.deepEqual(readJson(run, 'judge.json'), j);
  // The baseline responses are the run's, judged already: only new ablated responses are asked about.
  const asked = chatPosts().length - mark;
  assert.ok(asked <= 8, `at most the 8 ablated rows asked about, got ${asked}`);
});

test('eval --endpoint: through scalpel serve (and two 503s), greedy, the same responses as the local engine', {
  timeout: 300_000,
}, async () => {
  const proxy = await startFlakyProxy(base, { failFirst: 2 });
  proxies.push(proxy);
  const sets = [...SETS];
  const dataArgs: string[] = [];
  if (fs.existsSync(DATA)) {
    // Public prompts with quotes, symbols and non-ASCII text, through the code-point round trip.
    sets.push('xstest-safe:5', 'or-bench-hard-test:5');
    dataArgs.push('--data-dir', DATA);
  }
  const common = [...sets, ...dataArgs, '--max-new-tokens', '32', '--quiet'];
  const local = path.join(tmp, 'local');
  const remote = path.join(tmp, 'remote');
  await ok(['eval', '--model', TINY_CHAT, '--out', local, ...common]);
  await ok(
    ['eval', '--endpoint', `${proxy.url}/v1`, '--endpoint-model', `${NAME}:baseline`, '--out', remote, ...common],
    { SCALPEL_ENDPOINT_RETRY_MS: '20' },
  );
  assert.deepEqual(
    proxy.requests
      .filter((q) => q.method === 'POST')
      .slice(0, 2)
      .map((q) => q.status),
    [503, 503],
  );
  assert.deepEqual(readRows(remote), readRows(local));
  assert.deepEqual(readJson(remote, 'eval.json'), readJson(local, 'eval.json'));
  assert.deepEqual(fs.readdirSync(remote).sort(), ['eval.json', 'responses.jsonl']);
});

test('eval --endpoint flags: one line for each misuse', { timeout: 120_000 }, async () => {
  const run = path.join(tmp, 'no-run');
  await failsWith(['eval', '--run', run, '--endpoint', `${base}/v1`], /^scalpel: --endpoint: only without --run /);
  await failsWith(
    ['eval', '--model', TINY_CHAT, '--endpoint-model', NAME],
    /^scalpel: --endpoint-model: only with --endpoint URL$/,
  );
  await failsWith(['eval', '--model', TINY_CHAT, '--endpoint', `${base}/v1`], /^scalpel: --model: not with --endpoint/);
  await failsWith(
    ['eval', '--endpoint', 'ftp://127.0.0.1/v1'],
    /^scalpel: --endpoint ftp:\/\/127\.0\.0\.1\/v1: expected an http:\/\/ or https:\/\/ URL/,
  );
  await failsWith(
    ['eval', '--endpoint', `${base}/v1`, '--endpoint-model', 'nope', ...SETS],
    /^scalpel: --endpoint .*: the server has no model "nope" \(it lists: /,
  );
  await failsWith(
    ['eval', '--endpoint', `${keyed}/v1`, ...SETS],
    /^scalpel: --endpoint .*: HTTP 401, the server refused the API key/,
  );
});
