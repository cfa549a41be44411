// Harm-aware selection (src/method/pareto.ts, pareto-search.ts) and the ablation strength it searches over: the
// front and the pick rule on hand-made points, strength 0 as the identity and strength 1 bit-equal to the full
// ablation (hooks and bake), and a real small run selected with --objective pareto whose pick eval and bake use.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { HookContext } from '../src/engine/types.js';
import { ablationHook, postInstructionAblationHook } from '../src/method/hooks.js';
import { bakeTensor } from '../src/method/bake.js';
import { validateSettings } from '../src/method/intervention.js';
import { isPoint } from '../src/method/pareto-search.js';
import {
  defaultPick,
  dominates,
  paretoFront,
  paretoRanks,
  pickFromChecks,
  ruleCandidates,
  type Objectives,
} from '../src/method/pareto.js';
import { DATASETS, loadPromptSet, promptKey } from '../src/method/datasets.js';
import { mulberry32 } from '../src/rng.js';
import { BIN, ROOT, runScalpel, TINY_CHAT } from './support/cli.js';

const DATA = path.join(ROOT, '..', 'shared', 'datasets', 'raw');

const pt = (pseudo_score: number, harmful_refusal: number, kl: number): Objectives => ({
  pseudo_score,
  harmful_refusal,
  kl,
});

test('the front keeps exactly the non-dominated points, ordered by pseudo-harmful score', () => {
  const points = [
    pt(-0.5, 90, 0.1), // 0 front
    pt(-0.4, 95, 0.1), // 1 front
    pt(-0.4, 90, 0.1), // 2 dominated by 1 (and 0)
    pt(-0.6, 80, 0.3), // 3 front (best score)
    pt(-0.2, 95, 0.05), // 4 front (lowest KL at 95)
    pt(-0.2, 95, 0.05), // 5 equal to 4: neither dominates, both stay
    pt(0.1, 94, 0.06), // 6 dominated by 4
    pt(-0.5, 90, 0.1), // 7 equal to 0
  ];
  assert.equal(dominates(points[1]!, points[2]!), true);
  assert.equal(dominates(points[4]!, points[5]!), false);
  assert.deepEqual(paretoRanks(points), [0, 0, 1, 0, 0, 0, 1, 0]);
  const front = paretoFront(points);
  assert.deepEqual(
    front.map((p) => points.indexOf(p)),
    [3, 0, 7, 1, 4, 5],
  );
  assert.deepEqual(
    front.map((p) => p.pseudo_score),
    [-0.6, -0.5, -0.5, -0.4, -0.2, -0.2],
  );
  // A brute-force check on random points: nothing on the front is dominated, everything off it is.
  const rnd = mulberry32(7);
  const many = Array.from({ length: 200 }, () => pt(rnd() - 0.5, Math.round(rnd() * 20) + 80, rnd() * 0.3));
  const f = new Set(paretoFront(many));
  for (const p of many) assert.equal(f.has(p), !many.some((q) => dominates(q, p)));
});

test('the default pick: the largest gain within 2 points of harmful refusal and the KL limit', () => {
  const rule = { baselinePseudo: 0.2, baselineHarmful: 90, tolerance: 2, klMax: 0.2 };
  const front = paretoFront([
    pt(-0.8, 60, 0.1), // big gain, loses 30 points
    pt(-0.5, 87.9, 0.1), // loses 2.1 points: out
    pt(-0.4, 88, 0.1), // loses exactly 2: the pick
    pt(-0.45, 95, 0.25), // keeps more, but KL over the limit
    pt(0.1, 92, 0.01), // keeps everything, smaller gain
  ]);
  const p = defaultPick(front, rule);
  assert.deepEqual(p, { index: front.findIndex((x) => x.pseudo_score === -0.4), met: true });
  // Nothing within 2 points: the gaining point keeping the most harmful refusal, flagged as not met.
  const none = paretoFront([pt(-0.8, 60, 0.1), pt(-0.3, 80, 0.1), pt(0.25, 95, 0)]);
  const q = defaultPick(none, rule);
  assert.equal(q.met, false);
  assert.equal(none[q.index]!.pseudo_score, -0.3);
  // A point with no gain (score above the baseline) is never the rule's pick, however safe.
  assert.equal(defaultPick(paretoFront([pt(0.3, 100, 0)]), rule).met, false);
});

test('the generation check: candidates by gain, the first within 2 generated points, else the most kept', () => {
  const rule = { baselinePseudo: 0.2, baselineHarmful: 100, tolerance: 2, klMax: 0.2 };
  const front = paretoFront([
    pt(-0.8, 90, 0.1), // 0: loses 10 first-token points, still checked: generation decides
    pt(-0.4, 100, 0.1), // 1: the first-token pick
    pt(-0.3, 98, 0.05), // 2
    pt(-0.35, 100, 0.3), // KL over the limit: out
    pt(0.0, 100, 0.01), // 3
    pt(0.5, 100, 0), // no gain: out
  ]);
  const at = (score: number) => front.findIndex((p) => p.pseudo_score === score);
  assert.deepEqual(ruleCandidates(front, rule), [at(-0.8), at(-0.4), at(-0.3), at(0.0)]);
  assert.equal(defaultPick(front, rule).index, at(-0.4), 'the first-token rule alone would take the second');
  // Generated refusal: baseline 90%. The first two lose 3 and 6 generated points; the next keeps 88 (2 lost): met.
  const checks = [
    { index: at(-0.8), generated: 87 },
    { index: at(-0.4), generated: 84 },
    { index: at(-0.3), generated: 88 },
  ];
  assert.deepEqual(pickFromChecks(front, rule, checks, 90), { index: at(-0.3), met: true });
  // None within 2 points: the checked point keeping the most generated refusal, flagged; ties go to the larger gain.
  const none = [
    { index: at(-0.8), generated: 70 },
    { index: at(-0.4), generated: 80 },
    { index: at(-0.3), generated: 86 },
    { index: at(0.0), generated: 86 },
  ];
  assert.deepEqual(pickFromChecks(front, rule, none, 90), { index: at(-0.3), met: false });
  // The first-token measure does not screen: a point it says loses 10 points but whose answers keep refusing is met.
  assert.deepEqual(pickFromChecks(front, rule, [{ index: at(-0.8), generated: 90 }], 90), {
    index: at(-0.8),
    met: true,
  });
  // Nothing to check (no gain within the KL limit): the old fallback (lowest KL), not met.
  const none2 = paretoFront([pt(0.3, 100, 0.1), pt(-0.3, 80, 0.4)]);
  assert.deepEqual(ruleCandidates(none2, rule), []);
  assert.deepEqual(pickFromChecks(none2, rule, [], Number.NaN), { index: 1, met: false });
});

function ctxOf(batch: number, seq: number, width: number): HookContext {
  return {
    layer: 0,
    point: 'hook_resid_pre',
    batch,
    seq,
    width,
    start: 0,
    valid: new Uint8Array(batch * seq).fill(1),
  } as unknown as HookContext;
}

test('strength 1 is bit-identical to the full ablation and strength 0 leaves activations unchanged', () => {
  const rnd = mulberry32(3);
  const width = 16;
  const raw = Float32Array.from({ length: width }, () => rnd() - 0.5);
  const n = Math.hypot(...raw);
  const d = raw.map((v) => v / n);
  const block = Float32Array.from({ length: 2 * 5 * width }, () => rnd() * 4 - 2);
  const run = (hook: ReturnType<typeof ablationHook>) => {
    const act = block.slice();
    hook(act, ctxOf(2, 5, width));
    return act;
  };
  assert.deepEqual(run(ablationHook(d, 0, 1)), run(ablationHook(d, 0)));
  assert.deepEqual(run(ablationHook(d, 0.7, 1)), run(ablationHook(d, 0.7)));
  assert.deepEqual(
    run(postInstructionAblationHook(d, [0.3, -0.2], 1)),
    run(postInstructionAblationHook(d, [0.3, -0.2])),
  );
  assert.deepEqual(run(ablationHook(d, 0, 0)), block);
  assert.deepEqual(run(postInstructionAblationHook(d, [0.3, -0.2], 0)), block);
  // Half strength: the projection on d is halved (zero mode), or moved half way to its target (affine).
  const half = run(ablationHook(d, 0, 0.5));
  const full = run(ablationHook(d, 0));
  for (let row = 0; row < 10; row++) {
    const proj = (a: Float32Array) => a.slice(row * width, (row + 1) * width).reduce((s, v, j) => s + v * d[j]!, 0);
    assert.ok(Math.abs(proj(half) - proj(block) / 2) < 1e-5);
    assert.ok(Math.abs(proj(full)) < 1e-5);
  }
  // The bake: W − s·ŵŵᵀW, s = 1 the same bytes as today's default, s = 0 the weights unchanged.
  const w = {
    name: 'model.layers.0.mlp.down_proj.weight',
    dtype: 'f32',
    shape: [width, 3],
    data: Float32Array.from({ length: width * 3 }, () => rnd()),
  };
  const dd = Float64Array.from(d);
  const t = w as Parameters<typeof bakeTensor>[0];
  assert.deepEqual(bakeTensor(t, dd, 1).data, bakeTensor(t, dd).data);
  assert.deepEqual(new Float32Array(bakeTensor(t, dd, 0).data.buffer), w.data);
  assert.throws(() => validateSettings({ strength: 1.5 }), { message: '--strength 1.5: expected a number in [0, 1]' });
});

test('a real small run selected with --objective pareto: pareto.json, and a pick that eval and bake use', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-pareto-'));
  const run = path.join(tmp, 'run');
  runScalpel('extract', '--model', TINY_CHAT, '--out', run, '--n-train', '16', '--n-val', '4', '--quiet');
  // The pool is a flag; a test set here (never in a real run) lets eval, which refuses validation prompts, recheck it.
  const pool = 'builtin-harmful-test:8';
  const flags = ['--objective', 'pareto', '--prune', '0.5', '--harmful-pool', pool, '--max-new-tokens', '8', '--quiet'];
  runScalpel('select', '--run', run, ...flags);
  const pareto = JSON.parse(fs.readFileSync(path.join(run, 'pareto.json'), 'utf8'));
  assert.equal(pareto.format, 'scalpel-pareto/1');
  assert.ok(pareto.front.length >= 1);
  for (const p of pareto.front) assert.ok(!pareto.points.some((q: Objectives) => dominates(q, p)));
  assert.equal(pareto.harmful_pool.n, 8);
  // The pick was checked by generation: the rule's candidates in order of gain, stopping at the first that keeps
  // its generated refusal within 2 points; the pick satisfies that or is flagged as not met.
  const check = pareto.pick_check;
  const rule = {
    baselinePseudo: pareto.baseline.pseudo_score,
    baselineHarmful: pareto.baseline.harmful_refusal,
    tolerance: 2,
    klMax: 0.2,
  };
  const order = ruleCandidates(pareto.front, rule);
  assert.ok(order.length >= 1, 'the seeded run has a candidate to check');
  assert.equal(check.max_new_tokens, 8);
  assert.equal(check.n, 8);
  const base = check.baseline.harmful_refusal_generated;
  const within = (g: number) => g >= base - 2;
  assert.deepEqual(
    check.checked.map((c: { position: number; layer: number; lambda: number; ablation: string; strength: number }) =>
      pareto.front.findIndex(
        (p: typeof c) =>
          p.position === c.position &&
          p.layer === c.layer &&
          p.lambda === c.lambda &&
          p.ablation === c.ablation &&
          p.strength === c.strength,
      ),
    ),
    order.slice(0, check.checked.length),
  );
  const rates: number[] = check.checked.map((c: { harmful_refusal_generated: number }) => c.harmful_refusal_generated);
  for (const r of rates) assert.equal((r * 8) / 100, Math.round((r * 8) / 100), 'a share of the 8 pool prompts');
  assert.ok(
    rates.slice(0, -1).every((r) => !within(r)),
    'the walk stops at the first that passes',
  );
  const chosen = pareto.front[pareto.pick.index];
  assert.equal(chosen.harmful_refusal_generated, pareto.pick.met ? rates.at(-1) : Math.max(...rates));
  if (pareto.pick.met) assert.ok(within(chosen.harmful_refusal_generated));
  else assert.ok(rates.every((r) => !within(r)) && check.checked.length === order.length);
  // Forward passes counted: the search spends fewer than scoring every edit of the space; the check's generation
  // (one prefill per prompt, one decode step per token after the first) is its own entry, and run.json agrees.
  const runJson = JSON.parse(fs.readFileSync(path.join(run, 'run.json'), 'utf8'));
  const fp = pareto.forward_passes;
  assert.equal(fp.pick.points_checked, check.checked.length);
  assert.equal(fp.pick.prompt_prefills, 8 * (1 + check.checked.length));
  assert.ok(fp.pick.decode_steps > 0 && fp.pick.decode_steps <= 7 * 8 * (1 + check.checked.length));
  assert.equal(fp.pick.forward_passes, fp.pick.prompt_prefills + fp.pick.decode_steps);
  assert.equal(runJson.stages.select.prompt_prefills, fp.search + fp.pick.prompt_prefills);
  assert.equal(runJson.stages.select.decode_steps, fp.pick.decode_steps);
  assert.ok(fp.search < fp.exhaustive);
  // eval on the same 8 pool prompts at the pick (its own generation path) finds the same refusal rates.
  const poolEval = JSON.parse(
    runScalpel('eval', '--run', run, '--dataset', pool, '--max-new-tokens', '8', '--json', '--quiet').out,
  );
  const rateOf = (cond: string) =>
    100 * poolEval.results.find((r: { condition: string }) => r.condition === cond).refusal_rate;
  assert.equal(rateOf('baseline'), base);
  assert.equal(rateOf('ablated'), chosen.harmful_refusal_generated);
  // The report's front table shows the generated rate beside the first-token one, and says how the pick was checked.
  runScalpel('report', run);
  const html = fs.readFileSync(path.join(run, 'report.html'), 'utf8');
  assert.match(html, /generated refused/);
  assert.match(
    html,
    new RegExp(
      `${pareto.pick.index} \\(pick\\)</td>(<td[^>]*>[^<]*</td>){7}<td[^>]*>${chosen.harmful_refusal_generated.toFixed(1)}%`,
    ),
  );
  assert.match(html, /The pick is checked by generation/);
  // A rerun of the stage (--force) reuses the search and the stored checks: no generation, no forward pass.
  {
    const { err } = runScalpel('select', '--run', run, ...flags.filter((f) => f !== '--quiet'), '--force');
    assert.match(err, /reusing the search/);
    assert.match(err, /, stored: /);
    const again = JSON.parse(fs.readFileSync(path.join(run, 'run.json'), 'utf8'));
    assert.equal(again.stages.select.forward_passes, 0);
    const p2 = JSON.parse(fs.readFileSync(path.join(run, 'pareto.json'), 'utf8'));
    assert.deepEqual([p2.pick, p2.pick_check, p2.forward_passes], [pareto.pick, check, fp]);
  }
  // A check cut short (what a killed select leaves: the points generated so far, no pick) resumes where it stopped.
  {
    const file = path.join(run, 'pareto.json');
    const cut = JSON.parse(fs.readFileSync(file, 'utf8'));
    cut.pick_check.checked.pop();
    cut.pick.index = -1;
    fs.writeFileSync(file, JSON.stringify(cut));
    runScalpel('select', '--run', run, ...flags, '--force');
    const again = JSON.parse(fs.readFileSync(path.join(run, 'run.json'), 'utf8'));
    assert.equal(again.stages.select.prompt_prefills, 8, 'only the missing point is generated');
    const p2 = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.deepEqual([p2.pick, p2.pick_check], [pareto.pick, check]);
  }
  // Another --max-new-tokens is another check (the search is still reused: only generation is spent).
  {
    runScalpel('select', '--run', run, ...flags.map((f) => (f === '8' ? '6' : f)));
    const again = JSON.parse(fs.readFileSync(path.join(run, 'run.json'), 'utf8'));
    const p3 = JSON.parse(fs.readFileSync(path.join(run, 'pareto.json'), 'utf8'));
    assert.equal(p3.pick_check.max_new_tokens, 6);
    assert.equal(again.stages.select.prompt_prefills, p3.forward_passes.pick.prompt_prefills);
    assert.ok(again.stages.select.decode_steps > 0);
  }
  runScalpel('select', '--run', run, ...flags);
  // The pick is the run's configuration, selection.json's choice and vector.safetensors' direction.
  const sel = JSON.parse(fs.readFileSync(path.join(run, 'selection.json'), 'utf8'));
  assert.deepEqual(
    [sel.chosen.position, sel.chosen.layer, sel.lambda, sel.ablation, sel.strength],
    [chosen.position, chosen.layer, chosen.lambda, chosen.ablation, chosen.strength],
  );
  assert.deepEqual(
    [runJson.config.lambda, runJson.config.ablation, runJson.config.strength],
    [chosen.lambda, chosen.ablation, chosen.strength],
  );
  const evalOut = JSON.parse(
    runScalpel(
      'eval',
      '--run',
      run,
      '--dataset',
      'builtin-harmful-test:4',
      '--max-new-tokens',
      '4',
      '--json',
      '--quiet',
    ).out,
  );
  assert.equal(evalOut.results[0].n, 4);

  // --pick another point (a zero-ablation one, so it can be baked): no new search, and bake applies its strength.
  const zeroAt = pareto.front.findIndex((p: { ablation: string }) => p.ablation === 'zero');
  assert.ok(zeroAt >= 0, 'the front has a zero-ablation point (seeded: it does)');
  {
    const { err } = runScalpel(
      'select',
      '--run',
      run,
      ...flags.filter((f) => f !== '--quiet'),
      '--pick',
      String(zeroAt),
    );
    assert.match(err, /reusing the search/);
    const again = JSON.parse(fs.readFileSync(path.join(run, 'run.json'), 'utf8'));
    assert.equal(again.stages.select.forward_passes, 0, 'an explicit --pick is not checked by generation');
    const p = pareto.front[zeroAt];
    assert.equal(again.config.strength, p.strength);
    const bad = spawnSync(process.execPath, [
      BIN,
      'bake',
      '--run',
      run,
      '--out',
      path.join(tmp, 'b'),
      '--strength',
      '1.5',
    ]);
    assert.match(String(bad.stderr), /^scalpel: --strength 1\.5: expected a number in \[0, 1\]\n$/);
    runScalpel('bake', '--run', run, '--out', path.join(tmp, 'baked'), '--quiet');
    const bake = JSON.parse(fs.readFileSync(path.join(tmp, 'baked', 'scalpel_bake.json'), 'utf8'));
    assert.equal(bake.strength ?? 1, p.strength);
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('harmful-val-pool: ≥ 256 prompts of several sources, none in harmful-train or a harmful test set', {
  skip: !fs.existsSync(DATA) && 'no shared data',
}, () => {
  const pool = loadPromptSet('harmful-val-pool', DATA).prompts;
  assert.equal(pool.length, 964);
  const keys = new Set(pool.map(promptKey));
  assert.equal(keys.size, pool.length, 'no duplicates');
  const heldOut = DATASETS.filter((d) => d.kind === 'harmful').map((d) => d.name);
  assert.ok(heldOut.includes('jbb-harmful') && heldOut.includes('coconot-safety'), 'the held-out harmful sets');
  for (const other of ['harmful-train', 'harmful-test', ...heldOut])
    for (const p of loadPromptSet(other, DATA).prompts) assert.ok(!keys.has(promptKey(p)), `${other}: ${p}`);
  // Every source contributes: count the pool's prompts by the part they came from.
  const from = (name: string) => loadPromptSet(name, DATA).prompts.filter((p) => keys.has(promptKey(p))).length;
  assert.deepEqual(['harmful-val', 'advbench', 'tdc2023-dev', 'or-bench-toxic-val'].map(from), [39, 370, 3, 555]);
  assert.equal(loadPromptSet('harmful-val-pool:10', DATA).prompts.length, 10);
});

test('harmful-val-team: the 260 team-written harmful prompts, in no public set the project model trains or is tested on', {
  skip: !fs.existsSync(DATA) && 'no shared data',
}, () => {
  const team = loadPromptSet('harmful-val-team', DATA).prompts;
  assert.equal(team.length, 260);
  const keys = new Set(team.map(promptKey));
  assert.equal(keys.size, 260, 'no duplicates');
  // The recipe's harmful training sources (tools/train_chat_model.py) and every held-out harmful evaluation set.
  const trained = ['harmful-train', 'harmful-val', 'advbench', 'malicious-instruct', 'tdc2023-dev', 'or-bench-toxic'];
  const heldOut = DATASETS.filter((d) => d.kind === 'harmful').map((d) => d.name);
  for (const other of [...trained, ...heldOut])
    for (const p of loadPromptSet(other, DATA).prompts) assert.ok(!keys.has(promptKey(p)), `${other}: ${p}`);
});

test('bad --strength, --objective and --pick: one line naming the flag, nothing written', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-pareto-flags-'));
  const out = path.join(tmp, 'run');
  const cases: [string[], RegExp][] = [
    [
      ['run', '--model', TINY_CHAT, '--out', out, '--strength', '2'],
      /^scalpel: --strength 2: expected a number in \[0, 1\]$/,
    ],
    [
      ['run', '--model', TINY_CHAT, '--out', out, '--objective', 'best'],
      /^scalpel: --objective best: expected refusal-score or pareto$/,
    ],
    [
      ['run', '--model', TINY_CHAT, '--out', out, '--pick', '1'],
      /^scalpel: --pick 1: only --objective pareto takes --pick$/,
    ],
  ];
  for (const [args, pattern] of cases) {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, pattern);
    assert.ok(!fs.existsSync(out), `${args.join(' ')} wrote a run`);
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('a stored pareto point is only trusted when every field is readable', () => {
  const good = {
    position_index: 0,
    position: -4,
    layer: 2,
    lambda: 1,
    ablation: 'zero',
    strength: 0.5,
    pseudo_score: -0.2,
    harmful_refusal: 97,
    kl: 0.03,
    harmful_score: 2.8,
    n: [32, 128, 32],
  };
  assert.equal(isPoint(good), true);
  for (const bad of [
    null,
    5,
    { ...good, kl: 'x' },
    { ...good, ablation: 'half' },
    { ...good, layer: 1.5 },
    { ...good, pseudo_score: Number.NaN },
  ])
    assert.equal(isPoint(bad), false, JSON.stringify(bad));
});
