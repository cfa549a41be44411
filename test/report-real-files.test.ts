// The report's optional sections built from the files the commands really write, not from hand-written documents:
// on a small run of the project's model, `scalpel ability --run`, `scalpel eval --run --judge` against a real
// `scalpel serve` over 127.0.0.1 (in this process, so its access log counts the judge's requests), and `scalpel sweep
// --ability --judge`. Checked: the sweep's ability at the run's own setting equals `scalpel ability`'s figures, the
// baseline is measured once and a resumed sweep measures only its new point, the sweep's judge goes through the run's
// judge cache, and the report shows the numbers of those files.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AbilityJson } from '../src/method/ability.js';
import type { JudgeJson } from '../src/method/llm-judge.js';
import type { SweepJson } from '../src/method/sweep.js';
import { loadModel } from '../src/model/load.js';
import { createServer, type ScalpelServer } from '../src/serve/server.js';
import { BIN, ROOT, TINY_CHAT, smallRunArgs } from './support/cli.js';

const NAME = 'scalpel-tiny-chat';
const DATA = path.resolve(ROOT, '..', 'shared', 'datasets', 'raw');
const noData = fs.existsSync(DATA) ? false : `no shared data at ${DATA}`;
const SIZES = ['--n-mmlu', '6', '--n-arc', '6', '--n-ppl-docs', '1', '--n-kl', '8'];
const EVAL = 'builtin-pseudo-harmful-test:6,builtin-harmful-test:6';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-report-real-'));
const run = path.join(tmp, 'run');
const access: string[] = [];
let server: ScalpelServer | undefined;
let judge = '';

/** `scalpel ARGS…` as a child process that does not block this one (the server answers it from here). */
function scalpel(args: string[]): Promise<{ out: string; err: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['SCALPEL_DATA'];
  delete env['OPENAI_API_KEY'];
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', fail);
    child.on('close', (code) => {
      if (code === 0) done({ out, err });
      else fail(new Error(`scalpel ${args.join(' ')}: exit ${code}\n${err}`));
    });
  });
}

const readJson = <T>(file: string) => JSON.parse(fs.readFileSync(path.join(run, file), 'utf8')) as T;
const chatPosts = () => access.filter((l) => l.startsWith('POST "/v1/chat/completions" 200')).length;
const close = (a: number, b: number, what: string) =>
  assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

before(async () => {
  if (noData) return;
  const loaded = await loadModel(TINY_CHAT);
  server = createServer({ loaded, name: NAME, log: (l) => access.push(l) });
  judge = `openai:${await server.listen({ port: 0 })}/v1#${NAME}`;
  await scalpel(smallRunArgs(run, ['--eval', EVAL, '--quiet']));
});
after(async () => {
  await server?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('sweep --ability: the baseline once, every point as `scalpel ability` measures it, resumed without redoing', {
  skip: noData,
  timeout: 600_000,
}, async () => {
  await scalpel(['ability', '--run', run, ...SIZES, '--data-dir', DATA, '--quiet']);
  const ability = readJson<AbilityJson>('ability.json');
  const first = await scalpel(['sweep', '--run', run, '--lambda', '0,1', '--ability', ...SIZES, '--data-dir', DATA]);
  assert.match(first.out, /general ability per setting \(KL on builtin-harmless-test n=8; MMLU n=6 5-shot; ARC n=6/);
  const s1 = readJson<SweepJson>('sweep.json');
  const base = s1.ability_baseline!;
  assert.deepEqual(base.sizes, { n_mmlu: 6, n_arc: 6, n_ppl_docs: 1, shots: 5, n_kl: 8 });
  assert.deepEqual(base.baseline, ability.conditions.baseline);
  // λ = 1 is the run's own setting: the same intervention as `scalpel ability --run`, so the same figures.
  const own = s1.points.find((p) => p.lambda === 1)!.ability!;
  assert.deepEqual(own.edited, ability.conditions.edited);
  close(own.kl.first_token_mean, ability.kl!.first_token_mean, 'KL mean');
  close(own.kl.first_token_p95, ability.kl!.first_token_p95, 'KL p95');
  assert.equal(own.kl.n, 8);
  assert.equal(own.kl.dataset, ability.kl!.dataset);
  // λ = 0 ablates w itself, a different direction: a different KL.
  const zero = s1.points.find((p) => p.lambda === 0)!.ability!;
  assert.notEqual(zero.kl.first_token_mean, own.kl.first_token_mean);
  // Work: per sequence of the samples (6 MMLU items, one prefill each; 6 ARC items × their choices; the windows
  // of one article), the baseline once, each point once plus its KL, and the KL baseline once in this process.
  const items = fs
    .readFileSync(path.join(run, 'ability-items.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const arcChoices = items
    .filter((i) => i.condition === 'baseline' && i.task === 'arc_challenge')
    .reduce((n, i) => n + i.loglik.length, 0);
  const work = base.forward_passes;
  assert.ok(work >= 6 + arcChoices + 1, `baseline work ${work}`);
  assert.equal(s1.cost.ability_forward_passes, work + 2 * (work + 8) + 8);

  // Resumed with one more λ: the finished points keep their figures, only λ = 0.5 is measured (and the KL baseline
  // again in the new process); the baseline is not.
  const again = await scalpel([
    'sweep',
    '--run',
    run,
    '--lambda',
    '0,0.5,1',
    '--ability',
    ...SIZES,
    '--data-dir',
    DATA,
  ]);
  assert.match(again.err, /2 settings already done/);
  const s2 = readJson<SweepJson>('sweep.json');
  assert.deepEqual(s2.ability_baseline, base);
  for (const l of [0, 1])
    assert.deepEqual(s2.points.find((p) => p.lambda === l)!.ability, s1.points.find((p) => p.lambda === l)!.ability);
  assert.equal(s2.cost.ability_forward_passes, s1.cost.ability_forward_passes! + work + 8 + 8);
  const half = s2.points.find((p) => p.lambda === 0.5)!.ability!;
  assert.equal(half.key, base.key);
  // Other sizes are another measurement: refused flags without --ability, one line.
  await assert.rejects(scalpel(['sweep', '--run', run, '--n-mmlu', '3']), /--n-mmlu: only with --ability/);
});

test('sweep --judge: every point judged through scalpel serve and the run’s judge cache; a rerun asks nothing', {
  skip: noData,
  timeout: 600_000,
}, async () => {
  // The run's own eval judged first: its baseline and λ = 1 answers are then in judge-cache.jsonl.
  await scalpel(['eval', '--run', run, '--judge', judge, '--quiet']);
  const evalJudge = readJson<JudgeJson>('judge.json');
  const mark = chatPosts();
  const out = await scalpel(['sweep', '--run', run, '--lambda', '0,0.5,1', '--judge', judge]);
  assert.match(out.out, /compliance by the judge openai:/);
  const s = readJson<SweepJson>('sweep.json');
  const n = 12;
  for (const p of s.points) {
    assert.equal(p.judge?.judge, evalJudge.judge);
    const rows = Object.values(p.judge!.agreement).reduce((k, a) => k + a.n + a.unparsed, 0);
    assert.equal(rows, n, `λ = ${p.lambda}: every response judged`);
    assert.deepEqual(Object.keys(p.judge!.rates).sort(), EVAL.split(',').sort());
  }
  assert.equal(s.baseline_judge?.max_new_tokens, 16);
  // The λ = 1 point and the baseline are the run's own responses, already judged by eval: only λ = 0 and 0.5 were
  // asked about, at most one request per distinct (prompt, response).
  const asked = chatPosts() - mark;
  assert.ok(asked <= 2 * n, `at most the 24 new rows asked about, got ${asked}`);
  // The judge's own count adds its check of the model list (GET /models) before the chat requests.
  assert.equal(s.cost.judge_requests, asked + 1);
  const evalOwn = evalJudge.agreement;
  const own = s.points.find((p) => p.lambda === 1)!.judge!;
  for (const set of Object.keys(own.agreement)) {
    const rows = evalJudge.rows.filter((r) => r.dataset === set && r.condition === 'ablated');
    assert.equal(own.agreement[set]!.n + own.agreement[set]!.unparsed, rows.length);
  }
  assert.ok(Object.keys(evalOwn).length > 0);
  // Rerun: nothing left to judge, no request.
  const mark2 = chatPosts();
  await scalpel(['sweep', '--run', run, '--lambda', '0,0.5,1', '--judge', judge, '--quiet']);
  assert.equal(chatPosts(), mark2);
});

test('the report shows the real ability.json, judge.json and sweep.json numbers', {
  skip: noData,
  timeout: 300_000,
}, async () => {
  await scalpel(['report', run]);
  const html = fs.readFileSync(path.join(run, 'report.html'), 'utf8');
  assert.doesNotMatch(html, /not measured/);
  const ability = readJson<AbilityJson>('ability.json');
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  // General ability: ability.json's figures, with the short format names (not the whole prompt description).
  const section = (id: string) =>
    html.slice(html.indexOf(`id="${id}"`), html.indexOf('</section>', html.indexOf(`id="${id}"`)));
  const ab = section('ability');
  for (const c of ['baseline', 'edited'] as const) {
    const a = ability.conditions[c]!;
    assert.ok(ab.includes(a.perplexity!.value.toFixed(2)), `${c} perplexity`);
    assert.ok(ab.includes(pct(a.mmlu!.accuracy)), `${c} MMLU`);
    assert.ok(ab.includes(pct(a.arc_challenge!.accuracy)), `${c} ARC`);
  }
  assert.ok(
    ab.includes(
      `mean ${ability.kl!.first_token_mean.toFixed(4)}, 95th percentile ${ability.kl!.first_token_p95.toFixed(4)} (n = 8, builtin-harmless-test)`,
    ),
  );
  assert.match(ab, /n = 6, 5-shot, mmlu-5shot/);
  assert.match(ab, /n = 6, 0-shot, arc-0shot/);
  assert.doesNotMatch(ab, /The following are multiple choice/);
  // Judge agreement: judge.json's judge and counts per dataset.
  const judgeDoc = readJson<JudgeJson>('judge.json');
  const jd = section('judge');
  assert.ok(jd.includes(judgeDoc.judge));
  assert.ok(jd.includes(`${judgeDoc.rows.length} verdicts`));
  for (const [set, a] of Object.entries(judgeDoc.agreement)) {
    const row = jd.slice(jd.indexOf(`<td>${set}</td>`));
    assert.ok(row.startsWith(`<td>${set}</td><td class="num">${a.n}</td>`), `${set} row`);
    assert.ok(row.includes(`<td class="num">${a.unparsed}</td></tr>`), `${set} unreadable count`);
  }
  // The sweep: ability against λ (figure and table) and the judge at every setting.
  const sw = section('sweep');
  const sweep = readJson<SweepJson>('sweep.json');
  assert.match(sw, /data-figure="ability-lambda"/);
  for (const p of sweep.points) assert.ok(sw.includes(p.ability!.kl.first_token_mean.toFixed(4)), `λ = ${p.lambda} KL`);
  assert.match(sw, /Second judge at every setting/);
});
