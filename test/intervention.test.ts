// The typed intervention (src/method/intervention.ts): built from a run made in process on a tiny fixture model, its
// hooks bitwise equal to the construction it replaced (kept below as `previousHooks`), and its validation errors
// one line each, naming the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hookName, type HookContext, type HookMap } from '../src/engine/types.js';
import { ScalpelError } from '../src/errors.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { lambdaFlag } from '../src/cli/options.js';
import { bakeableDirection } from '../src/method/bake.js';
import { loadCandidates, slice } from '../src/method/candidates.js';
import { defaultConfig } from '../src/method/config.js';
import { loadEngineBackend } from '../src/method/engine-backend.js';
import { ablationHook, addHook, postInstructionAblationHook } from '../src/method/hooks.js';
import {
  candidateAblation,
  inRunFile,
  interventionFromRun,
  interventionHooks,
  validateIntervention,
  validateSettings,
  type Intervention,
} from '../src/method/intervention.js';
import { ablationDirection, dot } from '../src/method/math.js';
import { runPipeline } from '../src/method/pipeline.js';
import { FILES } from '../src/method/rundir.js';
import { mulberry32 } from '../src/rng.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIXTURES = path.join(root, 'test', 'fixtures', 'models');
const modelDir = path.join(FIXTURES, 'qwen2');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-intervention-'));
const runDir = path.join(tmp, 'run');

// The random-weight fixture refuses nothing: give it refusal tokens, keep every prompt, allow every layer and KL (as
// test/run.test.ts does), and select an actadd vector too (α = 1).
const config = {
  ...defaultConfig(false),
  nTrain: 6,
  nVal: 3,
  refusalTokens: [5, 17],
  filter: false,
  prunePercent: 0,
  klThreshold: 100,
  harmGuard: false,
  alpha: 1,
  actaddKlThreshold: 100,
};
const made = runPipeline(
  { runDir, modelDir, config, backend: async () => (await loadEngineBackend(modelDir)).backend },
  ['extract', 'select'],
);
made.catch(() => {}); // each test awaits it and reports the failure

const same = (a: Float32Array, b: Float32Array) =>
  a.length === b.length &&
  Buffer.compare(
    Buffer.from(a.buffer, a.byteOffset, a.byteLength),
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  ) === 0;

test('interventionFromRun: the run chose it; λ, α and the mode are dials on the chosen site', async () => {
  await made;
  const got = await interventionFromRun(runDir);
  assert.deepEqual(got.settings, { lambda: 1, alpha: 1, ablation: 'zero', strength: 1, target: 'false' });
  assert.equal(got.intervention.kind, 'ablate');
  assert.deepEqual(got.intervention.mode, { kind: 'zero' });
  assert.equal(got.intervention.scale, 1);
  // What select wrote into vector.safetensors is what the run applies.
  const vec = await readSafetensors(path.join(runDir, FILES.vector));
  assert.ok(same(got.intervention.direction, vec.get('direction')!.data as Float32Array));
  assert.ok(same(got.intervention.add!.vector, vec.get('actadd_r')!.data as Float32Array));
  assert.equal(got.intervention.add!.layer, got.selection.actadd!.chosen!.layer);
  assert.equal(got.intervention.add!.alpha, 1);
  assert.equal(got.chosen, got.selection.chosen);

  // λ recomputes ŵ from the stored w and r; α = 0 drops the addition; affine targets are the harmless means'
  // projections on the float64 direction.
  const cand = await loadCandidates(runDir);
  const { position_index: i, layer: l } = got.chosen;
  const w64 = ablationDirection(slice(cand.w, i, l, cand.L, cand.d), slice(cand.r, i, l, cand.L, cand.d), 0.25);
  const half = await interventionFromRun(runDir, { lambda: 0.25, alpha: 0, ablation: 'affine' });
  assert.ok(same(half.intervention.direction, Float32Array.from(w64)));
  assert.equal(half.intervention.add, undefined);
  assert.equal(half.intervention.mode.kind, 'affine');
  const targets = half.intervention.mode.kind === 'affine' ? half.intervention.mode.targets : [];
  assert.equal(targets.length, cand.k);
  for (let p = 0; p < cand.k; p++)
    for (let layer = 0; layer < cand.L; layer++)
      assert.equal(targets[p]![layer], dot(slice(cand.meanHarmless, p, layer, cand.L, cand.d), w64));
  assert.deepEqual(half.settings, { lambda: 0.25, alpha: 0, ablation: 'affine', strength: 1, target: 'false' });
});

test('interventionFromRun: a missing or unfinished run, or a bad stored setting, is one line naming the file', async () => {
  await made;
  const empty = path.join(tmp, 'empty');
  fs.mkdirSync(empty);
  await assert.rejects(
    interventionFromRun(empty),
    oneLine(/empty\/run\.json: missing; make the run with `scalpel run` first/),
  );
  fs.copyFileSync(path.join(runDir, FILES.run), path.join(empty, FILES.run));
  await assert.rejects(
    interventionFromRun(empty),
    oneLine(/empty: no finished select stage; run `scalpel select` first/),
  );
  const run = JSON.parse(fs.readFileSync(path.join(runDir, FILES.run), 'utf8'));
  await assert.rejects(
    interventionFromRun(runDir, { run: { ...run, config: { ...run.config, lambda: 7 } } }),
    oneLine(/run\/run\.json: config\.lambda is 7: expected a number in \[0, 1\]/),
  );
  await assert.rejects(interventionFromRun(runDir, { alpha: Number.NaN }), oneLine(/^--alpha NaN: expected a number$/));
});

/** Matches a ScalpelError whose message is one line and matches `re`. */
function oneLine(re: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof ScalpelError, String(e));
    assert.ok(!e.message.includes('\n'), e.message);
    assert.match(e.message, re);
    return true;
  };
}

// ---------------------------------------------------------------------------------------------------------------

/** The hook map as it was built before intervention.ts (from the ablation, affine targets and actadd spec). */
function previousHooks(
  numLayers: number,
  ablation?: { direction: ArrayLike<number>; affineTargets?: number[][] },
  actadd?: { layer: number; vector: ArrayLike<number>; alpha: number },
): HookMap {
  const map: HookMap = new Map();
  const push = (name: string, h: (a: Float32Array, c: HookContext) => void) => {
    const list = map.get(name);
    if (list) list.push(h);
    else map.set(name, [h]);
  };
  if (ablation) {
    const targets = ablation.affineTargets;
    const zero = targets
      ? postInstructionAblationHook(
          ablation.direction,
          targets.map(() => 0),
        )
      : ablationHook(ablation.direction, 0);
    for (let l = 0; l < numLayers; l++) {
      const pre = targets
        ? postInstructionAblationHook(
            ablation.direction,
            targets.map((t) => t[l]!),
          )
        : zero;
      push(hookName(l, 'hook_resid_pre'), pre);
      push(hookName(l, 'hook_attn_out'), zero);
      push(hookName(l, 'hook_mlp_out'), zero);
    }
  }
  if (actadd && actadd.alpha !== 0)
    push(hookName(actadd.layer, 'hook_resid_pre'), addHook(actadd.vector, actadd.alpha));
  return map;
}

/** Uniform in [−0.5, 0.5), from the project's own seeded generator. */
function rng(seed: number): () => number {
  const rand = mulberry32(seed);
  return () => rand() - 0.5;
}

test('interventionHooks: every kind gives the previous construction, bitwise, on random blocks', () => {
  const L = 3;
  const W = 8;
  const k = 2;
  const r = rng(11);
  const vec = (n: number) => Float32Array.from({ length: n }, () => r() * 4);
  const raw = vec(W);
  const n = Math.sqrt(dot(raw, raw));
  const direction = raw.map((x) => x / n);
  const targets = Array.from({ length: k }, () => Array.from({ length: L }, () => r() * 3));
  const add = { layer: 1, vector: vec(W), alpha: -1.5 };
  const cases: [string, Intervention, HookMap][] = [
    ['none', { kind: 'none' }, previousHooks(L)],
    ['zero', { kind: 'ablate', direction, mode: { kind: 'zero' }, scale: 1 }, previousHooks(L, { direction })],
    [
      'affine',
      { kind: 'ablate', direction, mode: { kind: 'affine', targets }, scale: 1 },
      previousHooks(L, { direction, affineTargets: targets }),
    ],
    [
      'zero + add',
      { kind: 'ablate', direction, mode: { kind: 'zero' }, scale: 1, add },
      previousHooks(L, { direction }, add),
    ],
    [
      'affine + add',
      { kind: 'ablate', direction, mode: { kind: 'affine', targets }, scale: 1, add },
      previousHooks(L, { direction, affineTargets: targets }, add),
    ],
    ['add', { kind: 'add', add }, previousHooks(L, undefined, add)],
    ['add, α = 0', { kind: 'add', add: { ...add, alpha: 0 } }, previousHooks(L, undefined, { ...add, alpha: 0 })],
  ];
  // A left-padded prefill block (row 0 starts with two padding columns) and a decode step.
  const batch = 2;
  const blocks = [
    { seq: 5, start: 0, valid: [0, 0, 1, 1, 1, 1, 1, 1, 1, 1] },
    { seq: 1, start: 5, valid: [1, 1] },
  ];
  for (const [label, iv, want] of cases) {
    const got = interventionHooks(iv, L);
    assert.deepEqual([...got.keys()], [...want.keys()], label);
    for (const [name, hooks] of want) {
      assert.equal(got.get(name)!.length, hooks.length, `${label} ${name}`);
      for (const b of blocks) {
        const ctx: HookContext = {
          name,
          layer: Number(name.split('.')[1]),
          batch,
          seq: b.seq,
          width: W,
          start: b.start,
          positions: Int32Array.from(b.valid, (v, j) => (v ? (j % b.seq) + b.start : -1)),
          valid: Uint8Array.from(b.valid),
        };
        const act = vec(batch * b.seq * W);
        const x = act.slice();
        const y = act.slice();
        for (const h of got.get(name)!) h(x, ctx);
        for (const h of hooks) h(y, ctx);
        assert.ok(same(x, y), `${label} ${name} seq ${b.seq}`);
      }
    }
  }
});

test('candidateAblation is what select scores: zero-length and affine shapes follow the candidates', async () => {
  await made;
  const cand = await loadCandidates(runDir);
  const site = { positionIndex: cand.k - 1, layer: cand.L - 1 };
  const zero = candidateAblation(cand, site, { target: 'true', ablation: 'zero', lambda: 1 });
  const r = slice(cand.r, site.positionIndex, site.layer, cand.L, cand.d);
  const norm = Math.sqrt(dot(r, r));
  assert.ok(
    same(
      zero.direction,
      Float32Array.from(r, (x) => x / norm),
    ),
  );
  const affine = candidateAblation(cand, site, { target: 'false', ablation: 'affine', lambda: 0 });
  assert.equal(affine.mode.kind === 'affine' && affine.mode.targets.every((t) => t.length === cand.L), true);
});

test('validation: one-line ScalpelErrors naming the field and what was expected', () => {
  const fails = (f: () => unknown, re: RegExp) => assert.throws(f, oneLine(re));
  fails(() => validateSettings({ lambda: 1.5 }), /^--lambda 1\.5: expected a number in \[0, 1\]$/);
  fails(() => validateSettings({ lambda: -0.1 }), /^--lambda -0\.1: expected a number in \[0, 1\]$/);
  fails(() => validateSettings({ alpha: Number.POSITIVE_INFINITY }), /^--alpha Infinity: expected a number$/);
  fails(
    () => validateSettings({ ablation: 'half' as 'zero' }, inRunFile('/r/run.json')),
    /^\/r\/run\.json: config\.ablation is half: expected zero or affine$/,
  );
  fails(() => lambdaFlag('2'), /^--lambda 2: expected a number in \[0, 1\]$/);
  fails(() => lambdaFlag(' '), /^--lambda {2}: expected a number in \[0, 1\]$/);
  fails(() => lambdaFlag('abc'), /^--lambda abc: expected a number in \[0, 1\]$/);
  assert.equal(lambdaFlag(undefined), undefined);
  assert.equal(lambdaFlag('0.5'), 0.5);
  validateSettings({ lambda: 0, alpha: -3, ablation: 'affine' });

  const direction = Float32Array.of(1, 0);
  const add = { layer: 1, vector: Float32Array.of(0, 1), alpha: 2 };
  fails(
    () => validateIntervention({ kind: 'ablate', direction, mode: { kind: 'zero' }, scale: 1.5 }, 2),
    /^intervention\.scale 1\.5: expected an ablation strength in \[0, 1\]$/,
  );
  fails(
    () =>
      validateIntervention(
        { kind: 'ablate', direction: Float32Array.of(Number.NaN, 0), mode: { kind: 'zero' }, scale: 1 },
        2,
      ),
    /^intervention\.direction: expected finite values$/,
  );
  fails(
    () => validateIntervention({ kind: 'ablate', direction, mode: { kind: 'affine', targets: [[1]] }, scale: 1 }, 2),
    /^intervention\.mode\.targets\[0\]: expected \[position\]\[layer\] finite numbers, 2 layers per position$/,
  );
  fails(
    () => interventionHooks({ kind: 'add', add: { ...add, layer: 2 } }, 2),
    /^intervention\.add\.layer 2: expected an integer in \[0, 2\)$/,
  );
  fails(
    () => interventionHooks({ kind: 'add', add: { ...add, alpha: Number.NaN } }, 2),
    /^intervention\.add\.alpha NaN: expected a number$/,
  );

  // What cannot be baked, in the order a user fixes it: the mode, then α, then the architecture.
  const llama = path.join(FIXTURES, 'llama');
  const zero = { kind: 'ablate', direction, mode: { kind: 'zero' }, scale: 1 } as const;
  fails(
    () => bakeableDirection({ ...zero, mode: { kind: 'affine', targets: [[0, 0]] } }, llama, inRunFile('/r/run.json')),
    /^\/r\/run\.json: config\.ablation is affine, which needs a bias on the residual stream .*; bake a run made with --ablation zero$/,
  );
  fails(
    () => bakeableDirection({ ...zero, add }, llama, inRunFile('/r/run.json')),
    /^\/r\/run\.json: config\.alpha is 2; activation addition cannot be written into weights without a bias; rerun select with --alpha 0/,
  );
  fails(() => bakeableDirection({ kind: 'add', add }, llama), /^--alpha 2; activation addition cannot be written/);
  fails(() => bakeableDirection({ kind: 'none' }, llama), /^bake: the intervention ablates no direction/);
  fails(
    () => bakeableDirection(zero, path.join(FIXTURES, 'gemma2')),
    /gemma2\/config\.json: gemma2 normalises each block's output .*; use run-time ablation/,
  );
  assert.equal(bakeableDirection({ ...zero, add: { ...add, alpha: 0 } }, llama), direction);
});
