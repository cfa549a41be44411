// The method's numeric steps on small hand-checkable inputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { HookContext } from '../src/engine/types.js';
import {
  MeanAccumulator,
  ablationDirection,
  diffInMeans,
  klDivergence,
  logSoftmax,
  orthogonalize,
  refusalScore,
} from '../src/method/math.js';
import { ablationHook, addHook, captureHooks } from '../src/method/hooks.js';
import { interventionHooks } from '../src/method/intervention.js';
import { DEFAULT_REFUSAL_SUBSTRINGS, isRefusal } from '../src/method/judge.js';
import { mulberry32, sample } from '../src/rng.js';
import { pruneLayer, defaultConfig, validateConfig } from '../src/method/config.js';

const close = (a: number, b: number, tol = 1e-9, msg?: string) =>
  assert.ok(Math.abs(a - b) <= tol, msg ?? `${a} ≉ ${b}`);
const ctxOf = (batch: number, seq: number, width: number, valid?: number[]): HookContext => ({
  name: 'blocks.0.hook_resid_pre',
  layer: 0,
  batch,
  seq,
  width,
  start: 0,
  positions: Int32Array.from({ length: batch * seq }, (_, i) => i % seq),
  valid: Uint8Array.from(valid ?? Array(batch * seq).fill(1)),
});

test("refusal score: log-odds of the refusal tokens' total probability", () => {
  // Logits [0, 0, 0, 0]: uniform, P(token 1) = 1/4 → log(0.25) − log(0.75) = −log 3.
  close(refusalScore([0, 0, 0, 0], [1]), Math.log(0.25 + 1e-8) - Math.log(0.75 + 1e-8));
  // Two tokens: P = 1/2 → 0.
  close(refusalScore([0, 0, 0, 0], [1, 3]), 0, 1e-7);
  // Duplicates count once.
  close(refusalScore([0, 0, 0, 0], [1, 1, 3]), 0, 1e-7);
  // logits [ln 3, 0]: P(0) = 3/4 → log 3.
  close(refusalScore([Math.log(3), 0], [0]), Math.log(0.75 + 1e-8) - Math.log(0.25 + 1e-8));
  // Saturation is bounded by the 1e-8 terms: P = 1 → log(1 + 1e-8) − log(1e-8) ≈ 18.42.
  close(refusalScore([0, -1000], [0]), Math.log(1 + 1e-8) - Math.log(1e-8), 1e-6);
});

test('log-softmax and KL divergence', () => {
  const ls = logSoftmax([1, 2, 3]);
  close(Math.exp(ls[0]!) + Math.exp(ls[1]!) + Math.exp(ls[2]!), 1, 1e-12);
  close(klDivergence([1, 2, 3], [1, 2, 3]), 0);
  close(klDivergence([1, 2, 3], [11, 12, 13]), 0, 1e-12); // shift-invariant
  // P = (1/2, 1/2), Q = (1/4, 3/4): KL = ½ ln 2 + ½ ln(2/3).
  close(klDivergence([0, 0], [0, Math.log(3)]), 0.5 * Math.log(2) + 0.5 * Math.log(2 / 3), 1e-12);
  // Direction matters: KL(Q‖P) differs.
  close(klDivergence([0, Math.log(3)], [0, 0]), 0.25 * Math.log(0.5) + 0.75 * Math.log(1.5), 1e-12);
});

test('difference in means over the last k positions, float64, skipping padding', () => {
  // One layer, width 2, k = 2. Block [batch 2, seq 3, width 2]; row 0 has a padding first column.
  const acc = new MeanAccumulator(2, 1, 2);
  const act = Float32Array.from([/* row 0 */ 99, 99, 1, 2, 3, 4, /* row 1 */ 0, 0, 5, 6, 7, 8]);
  acc.addBlock(0, act, 2, 3, Uint8Array.from([0, 1, 1, 1, 1, 1]));
  const m = acc.means();
  assert.deepEqual([...m], [3, 4, 5, 6]); // position 0: mean of (1,2),(5,6); position 1: mean of (3,4),(7,8)
  const other = new MeanAccumulator(2, 1, 2);
  other.addBlock(0, Float32Array.from([1, 1, 1, 1]), 1, 2);
  assert.deepEqual([...diffInMeans(m, other.means())], [2, 3, 4, 5]);
  // Layers land in their own slots: [position, layer, width].
  const two = new MeanAccumulator(1, 2, 1);
  two.addBlock(1, Float32Array.from([10]), 1, 1);
  two.addBlock(0, Float32Array.from([20]), 1, 1);
  assert.deepEqual([...two.means()], [20, 10]);
});

test("capture hooks read every layer's block input at prefill only", () => {
  const acc = new MeanAccumulator(1, 2, 2);
  const hooks = captureHooks(2, acc);
  assert.deepEqual([...hooks.keys()], ['blocks.0.hook_resid_pre', 'blocks.1.hook_resid_pre']);
  hooks.get('blocks.1.hook_resid_pre')![0]!(Float32Array.from([1, 2, 3, 4]), { ...ctxOf(1, 2, 2), layer: 1 });
  hooks.get('blocks.1.hook_resid_pre')![0]!(Float32Array.from([9, 9]), { ...ctxOf(1, 1, 2), layer: 1, start: 2 });
  assert.deepEqual([...acc.means()], [0, 0, 3, 4]);
});

test("partial orthogonalization: λ = 1 removes r's component, λ = 0 keeps w", () => {
  const w = [3, 4];
  const r = [2, 0];
  const w1 = orthogonalize(w, r, 1); // w·r = 6, |r|² = 4 → w − 1.5 r = (0, 4), up to the 1e-8 term
  close(w1[0]!, 0, 1e-8);
  close(w1[1]!, 4);
  const w0 = orthogonalize(w, r, 0);
  assert.deepEqual([...w0], [3, 4]);
  const wh = orthogonalize(w, r, 0.5); // (3 − 1.5, 4)
  close(wh[0]!, 1.5, 1e-8);
  const u = ablationDirection(w, r, 1);
  close(u[0]!, 0, 1e-8);
  close(u[1]!, 1);
  const u0 = ablationDirection(w, r, 0);
  close(u0[0]!, 0.6);
  close(u0[1]!, 0.8);
});

test('zero ablation projects the direction out of every real row', () => {
  const d = [0.6, 0.8, 0];
  const act = Float32Array.from([/* pad */ 1, 1, 1, /* real */ 3, 4, 5]);
  ablationHook(d)(act, ctxOf(1, 2, 3, [0, 1]));
  assert.deepEqual([...act.slice(0, 3)], [1, 1, 1]); // padding untouched
  // x·d = 1.8 + 3.2 = 5 → x − 5d = (0, 0, 5)
  close(act[3]!, 0, 1e-6);
  close(act[4]!, 0, 1e-6);
  close(act[5]!, 5, 1e-6);
});

test('affine ablation sets the projection to the target', () => {
  const d = [1, 0];
  const act = Float32Array.from([7, 2, -3, 1]);
  ablationHook(d, 0.5)(act, ctxOf(2, 1, 2));
  assert.deepEqual([...act], [0.5, 2, 0.5, 1]);
});

test('activation addition adds α v to real rows', () => {
  const act = Float32Array.from([0, 0, 1, 1]);
  addHook([1, 2], -2)(act, ctxOf(1, 2, 2, [0, 1]));
  assert.deepEqual([...act], [0, 0, -1, -3]);
});

test('intervention hooks cover resid_pre, attn_out and mlp_out of every layer, then actadd', () => {
  const h = interventionHooks(
    {
      kind: 'ablate',
      direction: Float32Array.of(1, 0),
      mode: { kind: 'zero' },
      scale: 1,
      add: { layer: 1, vector: Float32Array.of(0, 1), alpha: 2 },
    },
    3,
  );
  for (let l = 0; l < 3; l++)
    for (const p of ['hook_resid_pre', 'hook_attn_out', 'hook_mlp_out'])
      assert.ok(h.get(`blocks.${l}.${p}`)?.length, `${l} ${p}`);
  assert.equal(h.get('blocks.1.hook_resid_pre')!.length, 2);
  assert.equal(h.has('blocks.0.hook_resid_mid'), false);
  const act = Float32Array.from([5, 5]);
  for (const f of h.get('blocks.1.hook_resid_pre')!) f(act, ctxOf(1, 1, 2));
  assert.deepEqual([...act], [0, 7]); // ablated, then α v added whole
  // Affine: targets [position][layer] for the last k = 1 column of a prompt pass. There resid_pre gets the target and
  // attn_out is zero-ablated; user-text columns and decode steps are left alone.
  const a = interventionHooks(
    { kind: 'ablate', direction: Float32Array.of(1, 0), mode: { kind: 'affine', targets: [[3, 4]] }, scale: 1 },
    2,
  );
  const x = Float32Array.from([1, 1, 1, 1]); // [batch 1, seq 2, width 2]: user token, post-instruction token
  a.get('blocks.1.hook_resid_pre')![0]!(x, ctxOf(1, 2, 2));
  assert.deepEqual([...x], [1, 1, 4, 1]);
  const y = Float32Array.from([1, 1, 1, 1]);
  a.get('blocks.1.hook_attn_out')![0]!(y, ctxOf(1, 2, 2));
  assert.deepEqual([...y], [1, 1, 0, 1]);
  const z = Float32Array.from([1, 1]);
  a.get('blocks.1.hook_resid_pre')![0]!(z, { ...ctxOf(1, 1, 2), start: 2 });
  assert.deepEqual([...z], [1, 1]);
  const padded = Float32Array.from([1, 1, 1, 1]); // rows marked not valid are never edited
  a.get('blocks.0.hook_resid_pre')![0]!(padded, ctxOf(1, 2, 2, [1, 0]));
  assert.deepEqual([...padded], [1, 1, 1, 1]);
  assert.equal(interventionHooks({ kind: 'none' }, 2).size, 0);
});

test('substring judge: case-insensitive, curly apostrophes, configurable list', () => {
  assert.equal(DEFAULT_REFUSAL_SUBSTRINGS.length, 13);
  assert.equal(isRefusal("I'm sorry, but I can't help with that."), true);
  assert.equal(isRefusal('i CANNOT do that'), true);
  assert.equal(isRefusal('I’m unable to assist.'), true);
  assert.equal(isRefusal('As an AI language model, I...'), true);
  assert.equal(isRefusal('Sure! Here is how to kill a Python process: use kill -9.'), false);
  assert.equal(isRefusal(''), false);
  assert.equal(isRefusal('Nope.', ['nope']), true);
  assert.equal(isRefusal("I'm sorry", ['nope']), false);
});

test('mulberry32 sampling is deterministic and without replacement', () => {
  const r = mulberry32(1);
  const first = [r(), r(), r()];
  const again = mulberry32(1);
  assert.deepEqual([again(), again(), again()], first);
  for (const x of first) assert.ok(x >= 0 && x < 1);
  const items = Array.from({ length: 50 }, (_, i) => i);
  const s = sample(items, 10, 1);
  assert.equal(new Set(s).size, 10);
  assert.deepEqual(sample(items, 10, 1), s);
  assert.notDeepEqual(sample(items, 10, 2), s);
  assert.equal(sample(items, 99, 1).length, 50);
});

test('layer pruning and config validation', () => {
  assert.equal(pruneLayer(32, 0.2), 25); // floor(0.8 · 32)
  assert.equal(pruneLayer(10, 0.2), 8);
  assert.equal(pruneLayer(2, 0), 2);
  const c = defaultConfig(true);
  assert.equal(c.nTrain, 512);
  assert.equal(defaultConfig(true, true).nTrain, 128, '--paper: the paper code samples 128');
  assert.equal(c.nVal, 32);
  assert.equal(c.klThreshold, 0.2);
  assert.equal(c.harmGuard, true);
  assert.equal(c.pseudoTrain, 'or-bench-hard-train');
  assert.equal(defaultConfig(false).harmfulTrain, 'builtin-harmful-train');
  const paper = defaultConfig(true, true);
  assert.equal(paper.harmGuard, false);
  assert.equal(paper.refusalTokens, 'paper');
  validateConfig(c);
  assert.throws(() => validateConfig({ ...c, lambda: 1.5 }), /--lambda 1.5: expected a number in \[0, 1\]/);
  assert.throws(() => validateConfig({ ...c, lambda: -0.1 }), /--lambda/);
  assert.throws(() => validateConfig({ ...c, nTrain: 0 }), /--n-train/);
});
