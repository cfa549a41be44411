// `scalpel sweep` on a small run of the project's model (built-in sets): its points equal the run's own evaluation
// where they are the same setting, a rerun skips finished settings and appends new ones, a killed sweep resumes to
// the same figures, and --reselect goes through the select stage's scoring (at the run's own λ it picks the run's
// site). The paper-dataset acceptance check is test/sweep-paper.test.ts.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import type { EvalResult } from '../src/method/evaluate.js';
import type { SelectionJson } from '../src/method/rundir.js';
import type { SweepJson, SweepResponseRow } from '../src/method/sweep.js';
import { BIN, ROOT, runScalpel, smallRunArgs } from './support/cli.js';

const SETS = ['builtin-pseudo-harmful-test:12', 'builtin-harmful-test:12'];
let tmp: string;
let run: string;

const readSweep = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'sweep.json'), 'utf8')) as SweepJson;
const rates = (rs: EvalResult[]) => rs.map((r) => [r.dataset, r.condition, r.lambda, r.alpha, r.n, r.compliance_rate]);

/** A copy of the small run, so each test has its own sweep.json. */
function copyRun(name: string): string {
  const dir = path.join(tmp, name);
  fs.cpSync(run, dir, { recursive: true });
  return dir;
}

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-sweep-'));
  run = path.join(tmp, 'run');
  runScalpel(...smallRunArgs(run, ['--eval', SETS.join(','), '--quiet'], { maxNewTokens: 12 }));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('sweep: the run’s own setting and baseline equal its eval stage; a rerun skips finished settings and appends new ones', () => {
  const dir = copyRun('resume');
  const first = runScalpel('sweep', '--run', dir, '--lambda', '0,1');
  assert.match(first.out, /^λ\s+α\s+site/m);
  const s1 = readSweep(dir);
  assert.equal(s1.format, 'scalpel-sweep/1');
  assert.deepEqual(s1.datasets, SETS);
  assert.equal(s1.max_new_tokens, 12);
  assert.deepEqual(
    s1.points.map((p) => [p.lambda, p.alpha, p.ablation, p.reselect]),
    [
      [0, 0, 'zero', false],
      [1, 0, 'zero', false],
    ],
  );
  // The run's eval stage was made at λ = 1: same rates, same baseline (taken from the run, not generated again).
  const evalJson = JSON.parse(fs.readFileSync(path.join(dir, 'eval.json'), 'utf8')) as { results: EvalResult[] };
  assert.deepEqual(rates(s1.baseline), rates(evalJson.results.filter((r) => r.condition === 'baseline')));
  assert.deepEqual(rates(s1.points[1]!.results), rates(evalJson.results.filter((r) => r.condition === 'ablated')));
  const sel = JSON.parse(fs.readFileSync(path.join(dir, 'selection.json'), 'utf8')) as SelectionJson;
  for (const p of s1.points) assert.deepEqual(p.site, { position: sel.chosen!.position, layer: sel.chosen!.layer });
  // Every generated sequence is counted: 24 prompts per setting, each at least its prefill.
  for (const p of s1.points) assert.ok(p.forward_passes >= 24, `${p.lambda}: ${p.forward_passes}`);
  assert.equal(
    s1.cost.forward_passes,
    s1.points.reduce((n, p) => n + p.forward_passes, 0),
  );
  assert.ok(s1.cost.model_forward_calls > 0 && s1.cost.model_forward_calls < s1.cost.forward_passes);
  const rows = fs
    .readFileSync(path.join(dir, 'sweep-responses.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as SweepResponseRow);
  assert.equal(rows.length, 24 * 3);
  assert.equal(rows.filter((r) => r.lambda === 0 && r.condition === 'ablated').length, 24);

  const second = runScalpel('sweep', '--run', dir, '--lambda', '0,0.5,1');
  assert.match(second.err, /2 settings already done \(resumed\)/);
  assert.match(second.err, /generating 1 settings/);
  const s2 = readSweep(dir);
  assert.deepEqual(
    s2.points.map((p) => p.lambda),
    [0, 1, 0.5],
  );
  assert.deepEqual(s2.points.slice(0, 2), s1.points);
  // Nothing left to do: no model load, no change.
  const third = runScalpel('sweep', '--run', dir, '--lambda', '1,0.5');
  assert.doesNotMatch(third.err, /generating/);
  assert.deepEqual(readSweep(dir), s2);
  // --force computes the requested settings again, in place of their old points.
  const forced = runScalpel('sweep', '--run', dir, '--lambda', '0.5', '--force');
  assert.match(forced.err, /generating 1 settings/);
  const s3 = readSweep(dir);
  assert.deepEqual(
    s3.points.map((p) => p.lambda),
    [0, 1, 0.5],
  );
  assert.deepEqual(rates(s3.points[2]!.results), rates(s2.points[2]!.results));
  assert.equal(fs.readFileSync(path.join(dir, 'sweep-responses.jsonl'), 'utf8').trim().split('\n').length, 24 * 4);
});

test('sweep: a sweep killed part-way leaves only whole files and resumes to the figures of an uninterrupted one', async () => {
  const whole = copyRun('whole');
  runScalpel('sweep', '--run', whole, '--lambda', '0,0.25,0.5,0.75,1', '--quiet');
  const killed = copyRun('killed');
  const env = { ...process.env };
  delete env['SCALPEL_DATA'];
  const child = spawn(process.execPath, [BIN, 'sweep', '--run', killed, '--lambda', '0,0.25,0.5,0.75,1', '--quiet'], {
    cwd: ROOT,
    env,
    stdio: 'ignore',
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  // Kill as soon as the first setting is on disk (if the sweep finishes first, the rerun just has nothing to do).
  let running = true;
  void exited.then(() => {
    running = false;
  });
  while (running) {
    if (fs.existsSync(path.join(killed, 'sweep.json')) && readSweep(killed).points.length >= 1) {
      child.kill('SIGKILL');
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await exited;
  const partial = readSweep(killed); // whole JSON, never a torn write
  assert.ok(partial.points.length >= 1);
  const finals = fs.readdirSync(killed).filter((f) => !f.startsWith('.'));
  assert.ok(finals.includes('sweep-responses.jsonl'));
  const resumed = runScalpel('sweep', '--run', killed, '--lambda', '0,0.25,0.5,0.75,1');
  if (partial.points.length < 5) assert.match(resumed.err, /settings already done \(resumed\)/);
  const a = readSweep(whole);
  const b = readSweep(killed);
  const byLambda = (s: SweepJson) =>
    [...s.points].sort((x, y) => x.lambda - y.lambda).map((p) => [p.lambda, p.site, rates(p.results)]);
  assert.deepEqual(byLambda(b), byLambda(a));
  assert.deepEqual(rates(b.baseline), rates(a.baseline));
  const lines = (d: string) =>
    fs
      .readFileSync(path.join(d, 'sweep-responses.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as SweepResponseRow)
      .map((r) => JSON.stringify([r.dataset, r.condition, r.lambda, r.index, r.response]))
      .sort();
  assert.deepEqual(lines(killed), lines(whole));
});

test('sweep --reselect: the select stage scores each λ; at the run’s own λ it picks the run’s site and the same responses', () => {
  const dir = copyRun('reselect');
  const r = runScalpel('sweep', '--run', dir, '--lambda', '0,1', '--reselect');
  assert.match(r.err, /λ = 0, α = 0: (re-selected position|no candidate)/);
  const s = readSweep(dir);
  const sel = JSON.parse(fs.readFileSync(path.join(dir, 'selection.json'), 'utf8')) as SelectionJson;
  const at1 = s.points.find((p) => p.lambda === 1)!;
  assert.equal(at1.reselect, true);
  assert.deepEqual(at1.site, { position: sel.chosen!.position, layer: sel.chosen!.layer });
  const evalJson = JSON.parse(fs.readFileSync(path.join(dir, 'eval.json'), 'utf8')) as { results: EvalResult[] };
  assert.deepEqual(rates(at1.results), rates(evalJson.results.filter((x) => x.condition === 'ablated')));
  // The run's own files are untouched by re-selection.
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'selection.json'), 'utf8')), sel);
});

test('sweep: bad lists and a run without a selection fail in one line', () => {
  const fails = (args: string[], pattern: RegExp) => {
    const r = spawnSync(process.execPath, [BIN, 'sweep', ...args], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, pattern);
  };
  fails(['--run', run, '--lambda', '0,,1'], /^scalpel: --lambda 0,,1: expected a comma-separated list of numbers/);
  fails(['--run', run, '--lambda', '0,2'], /^scalpel: --lambda 2: expected a number in \[0, 1\]/);
  fails(['--run', run, '--alpha', 'x'], /^scalpel: --alpha x: expected a comma-separated list/);
  fails(['--run', run, '--alpha', '0,1'], /selection\.json: no actadd vector was selected/);
  fails(['--run', path.join(tmp, 'nothing')], /run\.json: missing/);
  // --ability's sizes and the judge's flags: checked before the model is loaded or any server is asked.
  fails(['--run', run, '--n-mmlu', '3'], /^scalpel: --n-mmlu: only with --ability$/);
  fails(['--run', run, '--ability', '--n-arc', 'x'], /^scalpel: --n-arc x: expected an integer from 0 up$/);
  fails(['--run', run, '--ability', '--shots', '6'], /^scalpel: --shots 6: expected an integer from 0 to 5$/);
  fails(
    ['--run', run, '--judge', 'http://127.0.0.1:9/v1'],
    /^scalpel: --judge http:\/\/127\.0\.0\.1:9\/v1: expected openai:URL\[#model\]/,
  );
  fails(['--run', run, '--judge-concurrency', '2'], /^scalpel: --judge-concurrency: only with --judge/);
  assert.ok(!fs.existsSync(path.join(run, 'sweep.json')), 'a failed sweep writes nothing');
});

test('sweep over λ × α of a --target true run: λ does not change r̂, so each α is generated once and equals eval', () => {
  const dir = path.join(tmp, 'true');
  const extra = [
    '--eval',
    SETS.join(','),
    '--target',
    'true',
    '--alpha',
    '-1',
    // On 8 validation prompts no candidate of the small model passes Arditi et al.'s rules at their defaults.
    '--true-kl-threshold',
    '1',
    '--induce-threshold',
    '-100',
    '--quiet',
  ];
  runScalpel(...smallRunArgs(dir, extra, { maxNewTokens: 12 }));
  runScalpel('sweep', '--run', dir, '--lambda', '0,1', '--alpha', '0,-1', '--quiet');
  const s = readSweep(dir);
  assert.deepEqual(
    s.points.map((p) => [p.lambda, p.alpha, p.source, p.results[0]!.condition]),
    [
      [0, 0, 'generated', 'ablated'],
      [1, 0, 'same-intervention', 'ablated'],
      [0, -1, 'generated', 'ablated+actadd'],
      [1, -1, 'same-intervention', 'ablated+actadd'],
    ],
  );
  for (const p of s.points.filter((x) => x.lambda === 1)) {
    const twin = s.points.find((x) => x.lambda === 0 && x.alpha === p.alpha)!;
    assert.equal(p.forward_passes, 0);
    assert.equal(p.alone_forward_passes, twin.forward_passes);
    assert.deepEqual(
      p.results.map((r) => r.compliance_rate),
      twin.results.map((r) => r.compliance_rate),
    );
  }
  assert.equal(s.cost.separate_eval_forward_passes_estimate, 2 * s.cost.forward_passes);
  const sel = JSON.parse(fs.readFileSync(path.join(dir, 'selection.json'), 'utf8')) as SelectionJson;
  assert.deepEqual(s.points[2]!.actadd_site, {
    position: sel.actadd!.chosen!.position,
    layer: sel.actadd!.chosen!.layer,
  });
  const e = JSON.parse(
    runScalpel('eval', '--run', dir, '--lambda', '1', '--alpha', '-1', '--dataset', ...SETS, '--json').out,
  ) as { results: EvalResult[] };
  assert.deepEqual(rates(s.points[3]!.results), rates(e.results.filter((r) => r.condition === 'ablated+actadd')));
});
