// `scalpel eval --model M` with no run: the baseline of any model. Its rows must be the numbers a run's baseline rows
// give on the same sets (built-in sets, and a subset of the paper's), a folder written by `scalpel bake` must give the
// run's ablated rows, and --out must write the run's file formats into a folder that is not a run and holds nothing
// else.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultConfig } from '../src/method/config.js';
import { evaluateModel } from '../src/method/pipeline.js';
import type { Backend } from '../src/method/backend.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = path.join(root, 'bin', 'scalpel.js');
const DATA = path.resolve(root, '..', 'shared', 'datasets', 'raw');
const MODEL = path.join(root, 'models', 'scalpel-tiny-chat');
const noData = fs.existsSync(DATA) ? false : `no shared data at ${DATA}`;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-evalmodel-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const scalpel = (...args: string[]) => {
  const env = { ...process.env };
  delete env['SCALPEL_DATA'];
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env, cwd: root });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const ok = (...args: string[]) => {
  const r = scalpel(...args);
  assert.equal(r.code, 0, `scalpel ${args.join(' ')}: ${r.err}`);
  return r;
};
const json = (dir: string, f: string) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));

interface Result {
  dataset: string;
  condition: string;
  n: number;
  compliance_rate: number;
  refusal_rate: number;
}
interface Row {
  dataset: string;
  condition: string;
  index: number;
  prompt: string;
  response: string;
  refusal: boolean;
}
const rows = (dir: string): Row[] =>
  fs
    .readFileSync(path.join(dir, 'responses.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
const only = <T extends { condition: string }>(xs: T[], condition: string) =>
  xs.filter((x) => x.condition === condition);
/** A row's measurement without its condition (and λ, α, target, ablation, which only an intervened row has). */
const rates = (r: Result) => [r.dataset, r.n, r.compliance_rate, r.refusal_rate];
const texts = (r: Row) => [r.dataset, r.index, r.prompt, r.response, r.refusal];

test('built-in sets: eval --model gives the baseline rows of scalpel run, and --out writes them in its formats', {
  timeout: 180_000,
}, () => {
  const run = path.join(tmp, 'builtin-run');
  // Default evaluation sets and settings on both sides; small training samples, since the baseline ignores them.
  ok('run', '--model', MODEL, '--out', run, '--n-train', '16', '--n-val', '8', '--quiet');
  const out = path.join(tmp, 'builtin-eval');
  const r = ok('eval', '--model', MODEL, '--out', out, '--json', '--quiet');
  const got = JSON.parse(r.out).results;
  const want = only<Result>(json(run, 'eval.json').results, 'baseline');
  assert.deepEqual(
    want.map((x) => x.dataset),
    ['builtin-pseudo-harmful-test', 'builtin-harmful-test', 'builtin-harmless-test'],
  );
  assert.deepEqual(got, want);
  // The directory is not a run: the run's eval.json and responses.jsonl formats, and nothing else.
  assert.deepEqual(fs.readdirSync(out).sort(), ['eval.json', 'responses.jsonl']);
  assert.deepEqual(json(out, 'eval.json'), { results: want });
  assert.deepEqual(rows(out), only(rows(run), 'baseline'));
  // `eval --out RUN` still means the run, as it did before a model could be evaluated alone.
  const stored = fs.readFileSync(path.join(run, 'run.json'));
  const viaOut = ok('eval', '--model', MODEL, '--out', run, '--json', '--quiet').out;
  assert.equal(viaOut, ok('eval', '--run', run, '--json', '--quiet').out);
  assert.deepEqual(JSON.parse(viaOut), json(run, 'eval.json'));
  assert.deepEqual(fs.readFileSync(path.join(run, 'run.json')), stored);
  // The table, one column.
  const table = ok('eval', '--model', MODEL, '--dataset', 'builtin-harmful-test:4', '--quiet').out;
  assert.match(table, /dataset\s+n\s+baseline\n/);
  assert.match(table, /builtin-harmful-test:4\s+4\s+\d+\.\d%\n/);
});

test("paper's sets: eval --model = the run's baseline rows; the baked folder with no run = the run's ablated rows", {
  timeout: 240_000,
  skip: noData,
}, () => {
  const sets = ['or-bench-hard-test:20', 'xstest-safe:20'];
  const common = ['--data-dir', DATA, '--max-new-tokens', '16', '--quiet'];
  const run = path.join(tmp, 'paper-run');
  ok(
    'run',
    '--model',
    MODEL,
    '--out',
    run,
    '--n-train',
    '32',
    '--n-val',
    '8',
    '--no-harm-guard',
    '--eval',
    sets.join(','),
    ...common,
  );
  const all: Result[] = json(run, 'eval.json').results;
  const [baseline, ablated] = [only(all, 'baseline'), only(all, 'ablated')];
  assert.deepEqual(
    baseline.map((x) => [x.dataset, x.n]),
    sets.map((s) => [s, 20]),
  );
  // Otherwise the baked check below could pass with a bake that did nothing.
  assert.notDeepEqual(ablated.map(rates), baseline.map(rates), 'the ablation changes the rates');

  const plain = JSON.parse(ok('eval', '--model', MODEL, '--dataset', ...sets, '--json', ...common).out).results;
  assert.deepEqual(plain, baseline);

  const baked = path.join(tmp, 'paper-baked');
  ok('bake', '--run', run, '--out', baked, '--quiet');
  const out = path.join(tmp, 'paper-baked-eval');
  const b = JSON.parse(ok('eval', '--model', baked, '--dataset', ...sets, '--out', out, '--json', ...common).out);
  assert.deepEqual(only(b.results, 'baseline').length, b.results.length);
  assert.deepEqual(b.results.map(rates), ablated.map(rates));
  assert.deepEqual(rows(out).map(texts), only(rows(run), 'ablated').map(texts));
});

test('--out: an earlier model evaluation is replaced; a run (library) or any other folder is refused, untouched', {
  timeout: 120_000,
}, async () => {
  const out = path.join(tmp, 'again');
  ok('eval', '--model', MODEL, '--dataset', 'builtin-harmful-test:3', '--out', out, '--quiet');
  ok('eval', '--model', MODEL, '--dataset', 'builtin-harmless-test:2', '--out', out, '--quiet');
  assert.deepEqual(
    json(out, 'eval.json').results.map((x: Result) => x.dataset),
    ['builtin-harmless-test:2'],
  );
  assert.equal(rows(out).length, 2);

  const other = path.join(tmp, 'other');
  fs.mkdirSync(other);
  fs.writeFileSync(path.join(other, 'notes.txt'), 'mine');
  const r = scalpel('eval', '--model', MODEL, '--dataset', 'builtin-harmful-test:1', '--out', other);
  assert.equal(r.code, 1);
  assert.match(
    r.err,
    /^scalpel: --out .*other: holds files other than eval\.json and responses\.jsonl \(notes\.txt\); choose an empty or new directory\n$/,
  );
  assert.deepEqual(fs.readdirSync(other), ['notes.txt']);

  // The CLI reads a folder holding run.json as the run (`eval --out RUN` has always meant --run); the library,
  // asked to write a model's evaluation there, refuses before loading the model.
  const fakeRun = path.join(tmp, 'fake-run');
  fs.mkdirSync(fakeRun);
  fs.writeFileSync(path.join(fakeRun, 'run.json'), '{}');
  const backend = (): Promise<Backend> => assert.fail('the model must not be loaded');
  await assert.rejects(
    evaluateModel({ config: defaultConfig(false), backend, outDir: fakeRun }),
    /fake-run: is a Scalpel run; evaluate it with --run/,
  );
  assert.deepEqual(fs.readdirSync(fakeRun), ['run.json']);
});
