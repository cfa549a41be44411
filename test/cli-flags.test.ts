// The method's CLI flags, each through `scalpel` as a user runs it, on the committed small chat model with small
// samples (a few seconds each): the stage commands one at a time (`extract`, then `select` and `eval` on its run
// directory) give what `scalpel run` gives; `select --lambda` re-selects with the re-orthogonalized vector; `--paper`,
// `--force`, `--target true`, `--ablation affine` and `--alpha` each change what they promise (the stored config,
// the vector, the stage records, and the evaluated refusals), not just the exit code.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readSafetensors, readSafetensorsHeader } from '../src/io/safetensors.js';
import { BUILTIN_TEST } from '../src/method/datasets.js';
import { ROOT, runScalpel, SMALL_RUN_FLAGS, smallRunArgs } from './support/cli.js';

const root = ROOT;
const DATA = path.resolve(root, '..', 'shared', 'datasets', 'raw');
const MODEL = path.join(root, 'models', 'scalpel-tiny-chat');
const noData = fs.existsSync(DATA) ? false : `no shared data at ${DATA}`;
const SMALL = SMALL_RUN_FLAGS;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-flags-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const scalpel = runScalpel;
const json = (dir: string, f: string) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
const bytes = (dir: string, f: string) => fs.readFileSync(path.join(dir, f));
interface Row {
  dataset: string;
  condition: string;
  refusal: boolean;
}
const responses = (dir: string): Row[] =>
  fs
    .readFileSync(path.join(dir, 'responses.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
const refusals = (dir: string, condition: string) =>
  responses(dir).filter((r) => r.condition === condition && r.refusal).length;

const f32 = (t: { data: unknown }) => t.data as Float32Array;
/** Candidate `name` at (post-instruction index, layer) from candidates.safetensors ([k, L, width]). */
async function candidate(dir: string, name: string, index: number, layer: number): Promise<Float64Array> {
  const t = (await readSafetensors(path.join(dir, 'candidates.safetensors'))).get(name)!;
  const [, L, width] = t.shape as [number, number, number];
  const at = (index * L + layer) * width;
  return Float64Array.from(f32(t).subarray(at, at + width));
}
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
};
const cos = (a: ArrayLike<number>, b: ArrayLike<number>) => dot(a, b) / Math.sqrt(dot(a, a) * dot(b, b));
const vector = async (dir: string) => {
  const file = path.join(dir, 'vector.safetensors');
  return { meta: (await readSafetensorsHeader(file)).metadata!, t: await readSafetensors(file) };
};

// One reference: the whole pipeline in one command, default eval sets (the built-in test sets, BUILTIN_TEST prompts
// each).
const REF = path.join(tmp, 'ref');
const ref = () => {
  if (!fs.existsSync(path.join(REF, 'eval.json'))) scalpel(...smallRunArgs(REF, ['--quiet']));
  return REF;
};
/** A private copy of the reference run, to change. */
const copyOfRef = (name: string) => {
  const dir = path.join(tmp, name);
  fs.cpSync(ref(), dir, { recursive: true });
  return dir;
};

test('scalpel extract alone, then select and eval on its run directory: the same files as scalpel run', () => {
  const dir = path.join(tmp, 'staged');
  scalpel('extract', '--model', MODEL, '--out', dir, ...SMALL, '--quiet');
  assert.deepEqual(fs.readdirSync(dir).sort(), ['candidates.safetensors', 'run.json']);
  assert.deepEqual(Object.keys(json(dir, 'run.json').stages), ['extract']);
  assert.ok(bytes(dir, 'candidates.safetensors').equals(bytes(ref(), 'candidates.safetensors')), 'same candidates');

  const sel = scalpel('select', '--run', dir, '--quiet'); // model, samples and rules: the run's
  assert.match(sel.out, /chosen: position -\d, layer \d/);
  assert.deepEqual(json(dir, 'selection.json'), json(ref(), 'selection.json'));
  assert.ok(bytes(dir, 'vector.safetensors').equals(bytes(ref(), 'vector.safetensors')), 'same vector');
  assert.ok(json(dir, 'selection.json').chosen, 'a candidate was chosen');

  scalpel('eval', '--run', dir, '--quiet');
  assert.deepEqual(Object.keys(json(dir, 'run.json').stages), ['extract', 'select', 'eval']);
  assert.deepEqual(json(dir, 'eval.json'), json(ref(), 'eval.json'));
  assert.ok(bytes(dir, 'responses.jsonl').equals(bytes(ref(), 'responses.jsonl')), 'same responses');
  assert.equal(responses(dir).length, 2 * 3 * BUILTIN_TEST);
});

test('select --lambda 0.5 re-selects with w − 0.5 (w·r / |r|²) r and invalidates the old eval', async () => {
  const dir = copyOfRef('lambda');
  const before = bytes(dir, 'selection.json');
  const was = await vector(dir);
  scalpel('select', '--run', dir, '--lambda', '0.5', '--quiet');
  assert.ok(!bytes(dir, 'selection.json').equals(before), 'selection.json rewritten');
  const sel = json(dir, 'selection.json');
  assert.equal(sel.lambda, 0.5);
  const run = json(dir, 'run.json');
  assert.equal(run.config.lambda, 0.5);
  assert.equal(run.stages.eval, undefined, 'the λ = 1 eval no longer describes this run');

  const now = await vector(dir);
  assert.equal(now.meta['lambda'], '0.5');
  const { position_index: i, layer } = sel.chosen;
  const w = await candidate(dir, 'w', i, layer);
  const r = await candidate(dir, 'r', i, layer);
  const c = dot(w, r) / dot(r, r);
  const want = w.map((x, j) => x - 0.5 * c * r[j]!);
  const d = f32(now.t.get('direction')!);
  assert.ok(cos(d, want) > 1 - 1e-6, `direction is the λ = 0.5 vector at the chosen site (cos ${cos(d, want)})`);
  assert.ok(cos(d, r) > 0.05, `half of w's r component is left (cos(d, r) = ${cos(d, r)})`);
  // while the λ = 1 vector of the reference had none of it
  const d1 = f32(was.t.get('direction')!);
  const r1 = f32(was.t.get('r')!);
  assert.ok(Math.abs(cos(d1, r1)) < 1e-4, `λ = 1: orthogonal to r (cos ${cos(d1, r1)})`);
});

test('--paper: no harm guard, refusal tokens "I"/"As" without probing, zero ablation', () => {
  const dir = path.join(tmp, 'paper');
  scalpel(...smallRunArgs(dir, ['--paper', '--eval', 'builtin-harmful-test:4', '--quiet']));
  const run = json(dir, 'run.json');
  assert.equal(run.config.harmGuard, false);
  assert.equal(run.config.refusalTokens, 'paper');
  assert.equal(run.config.ablation, 'zero');
  assert.deepEqual(run.refusal_tokens.text, ['I', 'As']);
  // The default probes the harmful and pseudo-harmful training prompts by generation; the paper rule does not.
  assert.equal(run.stages.extract.decode_steps, 0);
  assert.ok(json(ref(), 'run.json').stages.extract.decode_steps > 0);
  const sel = json(dir, 'selection.json');
  assert.equal(sel.rules.harm_guard, false);
  assert.ok(
    sel.candidates.every((c: { harmful_score: number | null }) => c.harmful_score === null),
    'no candidate scored on harmful-val',
  );
  assert.equal(json(dir, 'eval.json').results[1].ablation, 'zero');
});

test('--force recomputes a finished stage; without it a rerun resumes and says so', () => {
  const dir = copyOfRef('force');
  const stamp = (s: string) => json(dir, 'run.json').stages[s].finished_at as string;
  const [extract, select, evaluated] = [stamp('extract'), stamp('select'), stamp('eval')];
  const resumed = scalpel(...smallRunArgs(dir));
  assert.match(resumed.err, /extract: already done with these settings \(resumed\)/);
  assert.match(resumed.err, /select: already done with these settings \(resumed\)/);
  assert.match(resumed.err, /eval: already done with these settings \(resumed\)/);
  assert.deepEqual([stamp('extract'), stamp('select'), stamp('eval')], [extract, select, evaluated]);

  const selection = json(dir, 'selection.json');
  const forced = scalpel('select', '--run', dir, '--force');
  assert.doesNotMatch(forced.err, /already done/);
  assert.notEqual(stamp('select'), select, 'select ran again');
  assert.equal(stamp('extract'), extract, 'extract was not rerun');
  assert.equal(stamp('eval'), evaluated, 'same settings: the eval still stands');
  assert.deepEqual(json(dir, 'selection.json'), selection, 'and selected the same (the method is deterministic)');
});

test('--target true: the true-refusal direction r̂ is chosen, and ablating it removes most harmful refusals', {
  skip: noData, // on the built-in sets at n = 8 no candidate induces refusal; the paper's harmful/harmless sets do
}, async () => {
  const dir = path.join(tmp, 'true');
  scalpel(...smallRunArgs(dir, ['--data-dir', DATA, '--target', 'true', '--eval', 'jbb-harmful:16']));
  const res = json(dir, 'eval.json').results;
  const sel = json(dir, 'selection.json');
  assert.equal(sel.target, 'true');
  assert.ok(sel.chosen);
  const v = await vector(dir);
  assert.equal(v.meta['target'], 'true');
  const r = await candidate(dir, 'r', sel.chosen.position_index, sel.chosen.layer);
  assert.ok(cos(f32(v.t.get('direction')!), r) > 1 - 1e-6, 'the direction is r at the chosen site');
  const rate = (cond: string) => res.find((x: { condition: string }) => x.condition === cond).refusal_rate;
  assert.ok(rate('baseline') >= 0.75, `JailbreakBench refused at baseline (${rate('baseline')})`);
  assert.ok(rate('ablated') <= 0.25, `and not with r ablated (${rate('ablated')})`);
});

test('--ablation affine: vector.safetensors holds the harmless-mean projections as affine_targets', async () => {
  const dir = path.join(tmp, 'affine');
  scalpel(...smallRunArgs(dir, ['--ablation', 'affine', '--eval', 'builtin-harmful-test:4']));
  const sel = json(dir, 'selection.json');
  assert.equal(sel.ablation, 'affine');
  const v = await vector(dir);
  assert.equal(v.meta['ablation'], 'affine');
  // [post-instruction position, layer]: each position's block input is set to its own harmless mean's projection.
  const t = v.t.get('affine_targets')!;
  const run = json(dir, 'run.json');
  const [k, L] = [run.post_instruction_tokens.ids.length, run.model.num_layers];
  assert.deepEqual(t.shape, [k, L]);
  const targets = f32(t);
  const d = f32(v.t.get('direction')!);
  const norm = Math.sqrt(dot(d, d));
  for (let i = 0; i < k; i++)
    for (let l = 0; l < L; l++) {
      const want = dot(await candidate(dir, 'mean_harmless', i, l), d) / norm;
      const got = targets[i * L + l]!;
      assert.ok(Math.abs(got - want) <= 1e-4 * (1 + Math.abs(want)), `position ${i}, layer ${l}: ${got} vs ${want}`);
    }
  assert.ok(
    targets.some((x) => Math.abs(x) > 1),
    'not all near zero (that would be zero ablation)',
  );
  for (const row of json(dir, 'eval.json').results.filter((x: { condition: string }) => x.condition !== 'baseline'))
    assert.equal(row.ablation, 'affine');
});

test('--alpha 1: an actadd site is selected, and adding r makes the model refuse harmless requests', () => {
  const dir = path.join(tmp, 'alpha');
  scalpel(...smallRunArgs(dir, ['--alpha', '1', '--eval', 'builtin-harmless-test:16']));
  const sel = json(dir, 'selection.json');
  assert.equal(sel.actadd.alpha, 1);
  assert.ok(sel.actadd.chosen, 'an activation-addition site');
  assert.equal(typeof sel.actadd.chosen.layer, 'number');
  assert.ok(sel.actadd.chosen.kl <= sel.actadd.kl_threshold);
  const ev = json(dir, 'eval.json').results;
  assert.deepEqual(
    ev.map((x: { condition: string }) => x.condition),
    ['baseline', 'ablated+actadd'],
  );
  assert.equal(ev[1].alpha, 1);
  // The model refuses 13 of the 100 built-in harmless test prompts at baseline (README), so about 2 of these 16.
  assert.ok(refusals(dir, 'baseline') <= 4, `harmless requests answered at baseline (${refusals(dir, 'baseline')})`);
  assert.ok(refusals(dir, 'ablated+actadd') >= 12, `refused with +r (${refusals(dir, 'ablated+actadd')} of 16)`);
});
