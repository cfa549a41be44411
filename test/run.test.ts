// End to end: `scalpel run` with small n on the project's own small chat model (or, until it exists, a fixture
// model), resume, λ as a cheap dial, and bad input that leaves RUN untouched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensorsHeader } from '../src/io/safetensors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = path.join(root, 'bin', 'scalpel.js');
const DATA = path.resolve(root, '..', 'shared', 'datasets', 'raw');
// SCALPEL_E2E_MODEL picks another trained chat model (e.g. a candidate of the model organism).
const tiny = process.env['SCALPEL_E2E_MODEL'] ?? path.join(root, 'models', 'scalpel-tiny-chat');
const haveTiny =
  fs.existsSync(path.join(tiny, 'config.json')) && fs.readdirSync(tiny).some((f) => f.endsWith('.safetensors'));
const model = haveTiny ? tiny : path.join(root, 'test', 'fixtures', 'models', 'qwen2');
const other = path.join(root, 'test', 'fixtures', 'models', 'llama');
// The small chat model runs with its own refusal tokens and the filter, on the public sets it was made for (no harm
// guard: with n_val = 4 it could reject every candidate). The random-weight fixture refuses nothing: give it refusal
// tokens, keep every prompt, allow its last layer.
const modelFlags = haveTiny
  ? ['--data-dir', DATA, '--no-harm-guard']
  : ['--refusal-tokens', '5,17', '--no-filter', '--prune', '0', '--kl-threshold', '100', '--no-harm-guard'];
const small = [
  '--n-train',
  '8',
  '--n-val',
  '4',
  '--max-new-tokens',
  '8',
  '--quiet',
  '--eval',
  'builtin-pseudo-harmful-test:6,builtin-harmful-test:6',
];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-run-'));
const scalpel = (...args: string[]) => {
  const env = { ...process.env };
  delete env['SCALPEL_DATA'];
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env, cwd: root });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const snapshot = (dir: string) =>
  fs.existsSync(dir)
    ? Object.fromEntries(
        fs
          .readdirSync(dir)
          .sort()
          .map((f) => [f, fs.readFileSync(path.join(dir, f)).toString('base64')]),
      )
    : null;
const RUN = path.join(tmp, 'run');

test('scalpel run: all stages, run directory files, table', { timeout: 120_000 }, async () => {
  const r = scalpel('run', '--model', model, '--out', RUN, ...small, ...modelFlags);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /chosen: position -\d+, layer \d+/);
  assert.match(r.out, /compliance rate/);
  assert.match(r.out, /builtin-pseudo-harmful-test:6\s+6\s/);
  assert.deepEqual(fs.readdirSync(RUN).sort(), [
    'candidates.safetensors',
    'eval.json',
    'responses.jsonl',
    'run.json',
    'selection.json',
    'vector.safetensors',
  ]);

  const run = JSON.parse(fs.readFileSync(path.join(RUN, 'run.json'), 'utf8'));
  assert.equal(run.model.dir, model);
  assert.equal(run.seeds.sample, 1);
  assert.ok(run.refusal_tokens.ids.length > 0);
  assert.equal(run.data.harmful_train.sampled, 8);
  assert.equal(run.data.pseudo_val.sampled, 4);
  assert.ok(run.data.harmless_train.kept >= 1);
  for (const s of ['extract', 'select', 'eval']) {
    assert.ok(run.stages[s].forward_passes > 0, s);
    assert.ok(run.stages[s].seconds >= 0, s);
  }
  const L = run.model.num_layers;
  const k = run.post_instruction_tokens.ids.length;

  const cand = await readSafetensorsHeader(path.join(RUN, 'candidates.safetensors'));
  assert.deepEqual(cand.entries.get('r')!.shape, [k, L, run.model.width]);
  assert.deepEqual(cand.entries.get('w')!.shape, [k, L, run.model.width]);

  const sel = JSON.parse(fs.readFileSync(path.join(RUN, 'selection.json'), 'utf8'));
  assert.equal(sel.candidates.length, k * L);
  for (const c of sel.candidates)
    assert.deepEqual(Object.keys(c).sort(), ['harmful_score', 'kl', 'layer', 'position', 'refusal_score', 'rejected']);
  assert.ok(sel.chosen);
  const vec = await readSafetensorsHeader(path.join(RUN, 'vector.safetensors'));
  assert.equal(vec.metadata!['layer'], String(sel.chosen.layer));
  assert.equal(vec.metadata!['position'], String(sel.chosen.position));
  assert.equal(vec.metadata!['lambda'], '1');
  assert.deepEqual(vec.entries.get('direction')!.shape, [run.model.width]);
  assert.ok(vec.entries.has('r'));

  const ev = JSON.parse(fs.readFileSync(path.join(RUN, 'eval.json'), 'utf8'));
  assert.equal(ev.results.length, 4);
  for (const row of ev.results) {
    assert.equal(row.n, 6);
    assert.ok(['baseline', 'ablated'].includes(row.condition));
    assert.ok(Math.abs(row.compliance_rate + row.refusal_rate - 1) < 1e-12);
    for (const key of ['dataset', 'condition', 'lambda', 'alpha', 'n', 'compliance_rate', 'refusal_rate'])
      assert.ok(key in row, key);
  }
  const lines = fs.readFileSync(path.join(RUN, 'responses.jsonl'), 'utf8').trim().split('\n');
  assert.equal(lines.length, 24);
  const first = JSON.parse(lines[0]!);
  assert.equal(typeof first.response, 'string');
  assert.equal(typeof first.refusal, 'boolean');
});

test('rerun resumes every finished stage and changes nothing', { timeout: 60_000 }, () => {
  const before = snapshot(RUN);
  const r = scalpel('run', '--model', model, '--out', RUN, ...small.filter((a) => a !== '--quiet'), ...modelFlags);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /extract: already done.*\n.*select: already done.*\n.*eval: already done/s);
  assert.deepEqual(snapshot(RUN), before);
});

test('scalpel eval --lambda: ŵ recomputed at the chosen site, RUN untouched', { timeout: 60_000 }, () => {
  const before = snapshot(RUN);
  const r = scalpel(
    'eval',
    '--run',
    RUN,
    '--lambda',
    '0.5',
    '--dataset',
    'builtin-pseudo-harmful-test:6',
    '--json',
    '--quiet',
  );
  assert.equal(r.code, 0, r.err);
  const res = JSON.parse(r.out).results;
  assert.equal(res.length, 2);
  assert.equal(res[1].lambda, 0.5);
  assert.equal(res[1].condition, 'ablated');
  assert.deepEqual(snapshot(RUN), before);
});

test("scalpel bake / generate --run: the baked model with no hooks, and the original with the run's hooks, write the ablated responses of the run", {
  timeout: 120_000,
}, () => {
  const before = snapshot(RUN);
  const baked = path.join(tmp, 'baked');
  const r = scalpel('bake', '--run', RUN, '--out', baked);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /baked the false-refusal vector \(λ = 1\) of position -\d+, layer \d+ into \d+ tensors/);
  assert.deepEqual(snapshot(RUN), before);
  assert.ok(fs.existsSync(path.join(baked, 'scalpel_bake.json')));
  const all = fs
    .readFileSync(path.join(RUN, 'responses.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const baseline = new Map(
    all.filter((x) => x.condition === 'baseline').map((x) => [`${x.dataset}/${x.index}`, x.response]),
  );
  // Responses the ablation changed: a bake that did nothing would reproduce the baseline instead.
  const rows = all
    .filter((x) => x.condition === 'ablated' && baseline.get(`${x.dataset}/${x.index}`) !== x.response)
    .slice(0, 3);
  assert.ok(rows.length >= 1, 'the ablation changed at least one response');
  for (const row of rows) {
    const g = scalpel(
      'generate',
      '--model',
      baked,
      '--chat',
      '--prompt',
      row.prompt,
      '--max-new-tokens',
      String(row.max_new_tokens),
      '--json',
    );
    assert.equal(g.code, 0, g.err);
    assert.equal(JSON.parse(g.out).text, row.response, `baked: ${row.prompt}`);
    // and the same response from the original model with the run's hooks
    const h = scalpel(
      'generate',
      '--run',
      RUN,
      '--chat',
      '--prompt',
      row.prompt,
      '--max-new-tokens',
      String(row.max_new_tokens),
      '--json',
    );
    assert.equal(h.code, 0, h.err);
    assert.equal(JSON.parse(h.out).text, row.response, `generate --run: ${row.prompt}`);
  }
});

test('bad input: one-line errors, exit 1, nothing written', { timeout: 60_000 }, () => {
  const before = snapshot(RUN);
  const empty = path.join(tmp, 'empty.txt');
  fs.writeFileSync(empty, '');
  const bad = path.join(tmp, 'bad.json');
  fs.writeFileSync(bad, '[{"prompt": "a"');
  const fresh = path.join(tmp, 'fresh');
  const cases: [string[], RegExp][] = [
    [['run', '--model', model, '--out', fresh, '--harmful-train', 'no-such-set'], /unknown dataset "no-such-set"/],
    [['run', '--model', model, '--out', fresh, '--pseudo-train', empty], /empty\.txt: file is empty/],
    [['run', '--model', model, '--out', fresh, '--harmless-val', bad], /bad\.json: malformed JSON/],
    [['run', '--model', model, '--out', fresh, '--lambda', '1.5'], /--lambda 1\.5: expected a number in \[0, 1\]/],
    [['run', '--model', model, '--out', fresh, '--lambda', 'abc'], /--lambda abc: expected a number/],
    [['eval', '--run', RUN, '--lambda', '-0.25'], /--lambda -0\.25: expected a number in \[0, 1\]/],
    [['run', '--model', other, '--out', RUN], /RUN was made with a different model/],
    [['eval', '--model', other, '--run', RUN], /RUN was made with a different model/],
    [['select', '--model', other, '--run', RUN], /RUN was made with a different model/],
    [['eval', '--run', RUN, '--dataset', 'nope'], /unknown dataset "nope"/],
    [['generate', '--model', model, '--prompt', 'hi', '--lambda', '0.5'], /--lambda: only with --run RUN/],
    [['bake', '--run', RUN, '--out', RUN], /run: exists and is not empty; choose a new directory/],
    [['bake', '--run', RUN, '--out', fresh, '--lambda', '2'], /--lambda 2: expected a number in \[0, 1\]/],
    [['bake', '--model', other, '--run', RUN, '--out', fresh], /RUN was made with a different model/],
  ];
  for (const [args, re] of cases) {
    const r = scalpel(...args);
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, re);
    assert.equal(
      r.err
        .trim()
        .split('\n')
        .filter((l) => !l.includes('native kernels')).length,
      1,
      r.err,
    );
  }
  assert.equal(fs.existsSync(fresh), false);
  assert.deepEqual(snapshot(RUN), before);
});

test('scalpel datasets lists names with sizes and sources', () => {
  const r = scalpel('datasets', '--data-dir', DATA);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /or-bench-hard-test\s+132\s+mainlp\/False-Refusal-Mitigation/);
  assert.match(r.out, /builtin-pseudo-harmful-train\s+128\s/);
});
