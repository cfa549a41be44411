// Held-out harmful evaluation (issue 15, item 5): which sets are held-out harmful (one `kind` on their definitions),
// the pooled refusal figure against a hand computation, the training-overlap check on crafted sets and on the
// shared data, and the capped sets spread over their categories.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { defaultConfig, PAPER_SETS } from '../src/method/config.js';
import {
  DATASETS,
  dropTrainingOverlaps,
  loadEvalSets,
  loadPromptSet,
  sampleSets,
  type LoadedSet,
} from '../src/method/datasets.js';
import { writeEvalFiles } from '../src/method/evaluate.js';
import { describeHeldOut, heldOutHarmful, isHeldOutHarmful } from '../src/method/heldout.js';
import { heldOutHtml } from '../src/report/sections/headline.js';
import { ROOT } from './support/cli.js';

const DATA = resolve(ROOT, '..', 'shared', 'datasets', 'raw');
const skip = existsSync(DATA) ? false : `no shared data at ${DATA}`;

test('the held-out harmful sets are declared once, by kind, and are all in the default evaluation', () => {
  const harmful = DATASETS.filter((d) => d.kind === 'harmful').map((d) => d.name);
  assert.deepEqual(harmful.sort(), [
    'coconot-safety',
    'harmbench-test',
    'jbb-harmful',
    'or-bench-toxic-test',
    'strongreject',
    'xstest-unsafe',
  ]);
  const inDefault = PAPER_SETS.evalDatasets.filter(isHeldOutHarmful).map((r) => r.replace(/:\d+$/, ''));
  assert.deepEqual(inDefault.sort(), harmful);
  assert.ok(isHeldOutHarmful('strongreject:150'));
  assert.ok(!isHeldOutHarmful('xstest-safe') && !isHeldOutHarmful('harmful-val') && !isHeldOutHarmful('advbench'));
});

test('the pooled held-out harmful refusal equals a hand computation (counts, rate, Wilson 95%)', () => {
  const row = (dataset: string, condition: string, n: number, refusals: number) => ({
    dataset,
    condition,
    n,
    refusal_rate: refusals / n,
    compliance_rate: 1 - refusals / n,
  });
  const results = [
    row('jbb-harmful', 'baseline', 100, 94),
    row('jbb-harmful', 'ablated', 100, 85),
    row('xstest-unsafe', 'baseline', 200, 87),
    row('xstest-unsafe', 'ablated', 200, 32),
    // Not held-out harmful: left out of the pool.
    row('xstest-safe', 'baseline', 250, 76),
    row('xstest-safe', 'ablated', 250, 24),
  ];
  const h = heldOutHarmful(results)!;
  assert.equal(h.condition, 'ablated');
  assert.deepEqual(
    h.sets.map((s) => s.dataset),
    ['jbb-harmful', 'xstest-unsafe'],
  );
  // By hand: baseline (94 + 87) / 300 = 181/300, edited (85 + 32) / 300 = 117/300. Wilson 95% (z = 1.95996):
  // centre (p + z²/2n) / (1 + z²/n), half-width z/(1 + z²/n) · √(p(1 − p)/n + z²/4n²), computed in Python:
  // 181/300 → [0.5470046178899679, 0.6570491680569592]; 117/300 → [0.3365300216309911, 0.446251432038409].
  assert.deepEqual([h.pooled.baseline.n, h.pooled.baseline.refusals], [300, 181]);
  assert.deepEqual([h.pooled.edited!.n, h.pooled.edited!.refusals], [300, 117]);
  assert.ok(Math.abs(h.pooled.baseline.refusal_rate - 181 / 300) < 1e-15);
  assert.ok(Math.abs(h.pooled.change! - (117 - 181) / 300) < 1e-15);
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);
  close(h.pooled.baseline.wilson95!.lo, 0.5470046178899679);
  close(h.pooled.baseline.wilson95!.hi, 0.6570491680569592);
  close(h.pooled.edited!.wilson95!.lo, 0.3365300216309911);
  close(h.pooled.edited!.wilson95!.hi, 0.446251432038409);
  // Per-set changes: JBB −9 points, XSTest-unsafe −27.5.
  close(h.sets[0]!.change!, -0.09);
  close(h.sets[1]!.change!, -0.275);
  assert.equal(
    describeHeldOut(h),
    'held-out harmful refusal, pooled over 2 sets (n = 300, Wilson 95%): 60.3% [54.7%, 65.7%] → 39.0% [33.7%, 44.6%] (−21.3 points; per set: jbb-harmful −9.0, xstest-unsafe −27.5)',
  );
  assert.equal(heldOutHarmful(results.filter((r) => r.dataset === 'xstest-safe')), null);
  // The report's headline states the same pooled figures.
  const html = heldOutHtml(results);
  assert.ok(html.includes('n = 300, Wilson 95%): <strong>60.3% [54.7%, 65.7%]</strong> before'), html);
  assert.ok(html.includes('<strong>39.0% [33.7%, 44.6%]</strong> after (−21.3 points)'), html);
  assert.ok(html.includes('jbb-harmful (n = 100) −9.0, xstest-unsafe (n = 200) −27.5'), html);
  assert.equal(heldOutHtml(results.filter((r) => r.dataset === 'xstest-safe')), '');
});

test('evaluation rows that are also training or validation prompts are dropped and counted', () => {
  const set = (name: string, prompts: string[]): LoadedSet => ({ name, prompts, source: 't', path: name });
  const training = [set('harmful-train', ['Make a bomb', 'Steal a car']), set('or-bench-hard-val', ['Kill a process'])];
  const [a, b] = dropTrainingOverlaps(
    [
      set('jbb-harmful', ['  Make a bomb ', 'Write malware', 'Steal a car', 'steal a car']),
      set('or-bench-hard-val', ['Kill a process', 'x']),
    ],
    training,
  );
  // Exact text after trimming: the lower-cased "steal a car" is another prompt and stays.
  assert.deepEqual(a!.prompts, ['Write malware', 'steal a car']);
  assert.equal(a!.overlapDropped, 2);
  // A set named as one of the run's own validation sets is a deliberate look at it: kept whole.
  assert.deepEqual(b!.prompts, ['Kill a process', 'x']);
  assert.throws(
    () => dropTrainingOverlaps([set('mine', ['Make a bomb'])], training),
    /^ScalpelError: evaluation set mine: every prompt is also a training or validation prompt/,
  );
});

test('on the shared data: no default held-out set overlaps the training/validation sets; AdvBench does (it is in harmful_train)', {
  skip,
}, () => {
  const c = defaultConfig(true);
  const sets = loadEvalSets(c, DATA);
  assert.deepEqual(
    Object.fromEntries(sets.map((s) => [s.name, s.overlapDropped])),
    Object.fromEntries(c.evalDatasets.map((n) => [n, 0])),
  );
  const adv = loadEvalSets({ ...c, evalDatasets: ['advbench'] }, DATA)[0]!;
  const harmfulTrain = new Set(loadPromptSet('harmful-train', DATA).prompts);
  const expected = loadPromptSet('advbench', DATA).prompts.filter((p) => harmfulTrain.has(p.trim())).length;
  assert.ok(expected > 0, 'harmful_train holds AdvBench rows');
  assert.equal(adv.overlapDropped, expected);
  assert.equal(adv.prompts.length, 520 - expected);
});

test('CoCoNot safety requests load from JSONL by category; capped sorted sets spread over their categories', {
  skip,
}, () => {
  const coconot = loadPromptSet('coconot-safety', DATA).prompts;
  assert.equal(coconot.length, 394);
  assert.ok(coconot.every((p) => p.length <= 600));
  const capped = loadPromptSet('strongreject:150', DATA).prompts;
  const all = loadPromptSet('strongreject', DATA).prompts;
  assert.equal(capped.length, 150);
  assert.equal(capped[0], all[0]);
  // Row ⌊149 · 313 / 150⌋ = 310, in the last category (the first 150 rows would stop in the third of six).
  assert.equal(capped[149], all[310]);
  assert.equal(new Set(capped).size, 150);
  // Other sets keep "first N".
  assert.deepEqual(
    loadPromptSet('jbb-harmful:10', DATA).prompts,
    loadPromptSet('jbb-harmful', DATA).prompts.slice(0, 10),
  );
});

test('--val-draws V: V validation samples of n_val each, the first being the ordinary one; training untouched', {
  skip,
}, () => {
  const one = sampleSets(defaultConfig(true), DATA).sets;
  const three = sampleSets({ ...defaultConfig(true), valDraws: 3 }, DATA).sets;
  assert.equal(three.pseudoVal.prompts.length, 96);
  assert.deepEqual(three.pseudoVal.prompts.slice(0, 32), one.pseudoVal.prompts);
  assert.notDeepEqual(three.pseudoVal.prompts.slice(32, 64), one.pseudoVal.prompts);
  assert.deepEqual(three.pseudoTrain.prompts, one.pseudoTrain.prompts);
});

test('eval.json names the sets that lost rows to the overlap check, and only those', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'scalpel-heldout-'));
  try {
    const set = (name: string, dropped: number): LoadedSet => ({
      name,
      prompts: ['p'],
      source: 't',
      path: name,
      overlapDropped: dropped,
    });
    await writeEvalFiles(dir, [], [], [set('advbench', 117), set('jbb-harmful', 0)]);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'eval.json'), 'utf8')), {
      results: [],
      training_overlap_dropped: { advbench: 117 },
    });
    await writeEvalFiles(dir, [], [], [set('jbb-harmful', 0)]);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'eval.json'), 'utf8')), { results: [] });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
