// Hooks (TransformerLens names): what they see, that in-place edits flow downstream, and that absent hooks cost nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadModel } from '../src/model/load.js';
import { greedyGenerate, lastLogits } from '../src/engine/generate.js';
import { HOOK_POINTS, hookName, type Hook, type HookContext, type HookMap } from '../src/engine/types.js';

const ROOT = process.cwd();
const fixture = (name: string) =>
  JSON.parse(fs.readFileSync(path.join(ROOT, 'test/fixtures/expected', `${name}.json`), 'utf8')) as {
    model_dir: string;
    cases: { input_ids: number[]; debug: { embed_last: number[]; resid_post_last: number[][] } }[];
  };

const allNames = (layers: number): string[] => [
  'hook_embed',
  ...Array.from({ length: layers }, (_, l) => HOOK_POINTS.map((p) => hookName(l, p))).flat(),
];

interface Seen {
  act: Float32Array;
  ctx: HookContext;
}
/** Hooks on every point that record a copy of what they see. */
function recorder(layers: number): { hooks: HookMap; seen: Seen[] } {
  const seen: Seen[] = [];
  const hooks: HookMap = new Map();
  for (const n of allNames(layers))
    hooks.set(n, [
      (act, ctx) =>
        seen.push({ act: act.slice(), ctx: { ...ctx, positions: ctx.positions.slice(), valid: ctx.valid.slice() } }),
    ]);
  return { hooks, seen };
}

test('recording hooks see every point in order, with shapes, positions and the padding mask', async () => {
  for (const name of ['llama', 'gemma2']) {
    const fx = fixture(name);
    const { model } = await loadModel(path.join(ROOT, fx.model_dir));
    const L = model.numLayers;
    const D = model.width;
    const prompts = [fx.cases[0]!.input_ids, fx.cases[1]!.input_ids]; // different lengths
    const S = Math.max(...prompts.map((p) => p.length));
    const { hooks, seen } = recorder(L);
    lastLogits(model, prompts, { hooks, batchSize: 2 });
    assert.deepEqual(
      seen.map((s) => s.ctx.name),
      allNames(L),
    );
    for (const { act, ctx } of seen) {
      assert.equal(ctx.batch, 2);
      assert.equal(ctx.seq, S);
      assert.equal(ctx.width, D);
      assert.equal(ctx.start, 0);
      assert.equal(ctx.layer, ctx.name === 'hook_embed' ? -1 : Number(ctx.name.split('.')[1]));
      assert.equal(act.length, 2 * S * D);
      // rows are sorted by length inside the engine; row b holds a prompt of length len, left-padded
      const lens = [...prompts.map((p) => p.length)].sort((a, b) => a - b);
      for (let b = 0; b < 2; b++)
        for (let i = 0; i < S; i++) {
          const pad = S - lens[b]!;
          assert.equal(ctx.valid[b * S + i], i >= pad ? 1 : 0);
          assert.equal(ctx.positions[b * S + i], i >= pad ? i - pad : -1);
        }
      assert.ok(act.every(Number.isFinite), `${ctx.name}: finite`);
    }
    // residual stream algebra: resid_mid = resid_pre + attn_out, resid_post = resid_mid + mlp_out, next pre = post
    const get = (n: string) => seen.find((s) => s.ctx.name === n)!.act;
    assert.deepEqual(get('blocks.0.hook_resid_pre'), get('hook_embed'));
    for (let l = 0; l < L; l++) {
      const pre = get(hookName(l, 'hook_resid_pre')),
        attn = get(hookName(l, 'hook_attn_out'));
      const mid = get(hookName(l, 'hook_resid_mid')),
        mlp = get(hookName(l, 'hook_mlp_out'));
      const post = get(hookName(l, 'hook_resid_post'));
      for (let i = 0; i < pre.length; i++) {
        assert.equal(mid[i], Math.fround(pre[i]! + attn[i]!));
        assert.equal(post[i], Math.fround(mid[i]! + mlp[i]!));
      }
      if (l + 1 < L) assert.deepEqual(get(hookName(l + 1, 'hook_resid_pre')), post);
    }
  }
});

test('hook_embed and resid_post match transformers (embedding output and decoder-layer outputs)', async (t) => {
  let worst = 0;
  for (const name of ['llama', 'qwen3', 'gemma2', 'gemma3', 'phi3']) {
    const fx = fixture(name);
    const { model } = await loadModel(path.join(ROOT, fx.model_dir));
    for (const c of fx.cases.slice(0, 2)) {
      const { hooks, seen } = recorder(model.numLayers);
      lastLogits(model, [c.input_ids], { hooks });
      const lastRow = (n: string) => {
        const a = seen.find((s) => s.ctx.name === n)!.act;
        return a.subarray(a.length - model.width);
      };
      const close = (got: Float32Array, ref: number[], what: string) => {
        const scale = Math.max(...ref.map(Math.abs));
        for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got[i]! - ref[i]!) / scale);
        for (let i = 0; i < ref.length; i++)
          assert.ok(Math.abs(got[i]! - ref[i]!) <= 1e-4 * scale, `${name} ${what}[${i}]: ${got[i]} vs ${ref[i]}`);
      };
      close(lastRow('hook_embed'), c.debug.embed_last, 'hook_embed');
      for (let l = 0; l < model.numLayers; l++)
        close(lastRow(hookName(l, 'hook_resid_post')), c.debug.resid_post_last[l]!, `resid_post ${l}`);
    }
  }
  t.diagnostic(`hook_embed / resid_post vs transformers: max error ${worst.toExponential(2)} of max |ref|`);
});

test("greedy generation runs hooks at prefill and at every decode step, on each sequence's own rows", async () => {
  const fx = fixture('llama');
  const { model } = await loadModel(path.join(ROOT, fx.model_dir));
  const prompts = [fx.cases[0]!.input_ids, fx.cases[2]!.input_ids];
  const calls: HookContext[] = [];
  const hooks: HookMap = new Map([
    [hookName(1, 'hook_resid_post'), [(_a, ctx) => calls.push({ ...ctx, positions: ctx.positions.slice() })]],
  ]);
  greedyGenerate(model, prompts, { maxNewTokens: 5, eosTokenIds: [], hooks });
  // The scheduler hands each sequence's block to its hooks alone: a prefill, then 4 decode steps each (the 5th
  // token needs no forward), with no left padding, so positions are 0 … len−1 and then len, len+1, …
  assert.equal(calls.length, 2 * 5);
  for (const p of prompts) {
    const prefill = calls.find((c) => c.start === 0 && c.seq === p.length)!;
    assert.deepEqual([...prefill.positions], [...p.keys()]);
    assert.equal(prefill.batch, 1);
    assert.ok(prefill.valid.every((v) => v === 1));
    for (let t = 0; t < 4; t++) {
      const step = calls.find((c) => c.seq === 1 && c.start === p.length + t && c.positions[0] === p.length + t);
      assert.ok(step, `decode step ${t} of the ${p.length}-token prompt`);
      assert.equal(step!.batch, 1);
    }
  }
});

test('in-place edits flow downstream; a no-op hook changes nothing', async () => {
  const fx = fixture('qwen2');
  const { model } = await loadModel(path.join(ROOT, fx.model_dir));
  const prompts = fx.cases.slice(0, 3).map((c) => c.input_ids);
  const base = lastLogits(model, prompts);

  const noop: Hook = () => {};
  const noopHooks: HookMap = new Map(allNames(model.numLayers).map((n) => [n, [noop]]));
  assert.deepEqual(lastLogits(model, prompts, { hooks: noopHooks }), base);

  // zeroing attention output of layer 0 makes resid_mid equal resid_pre
  let pre: Float32Array | undefined, mid: Float32Array | undefined;
  const hooks: HookMap = new Map([
    [
      hookName(0, 'hook_resid_pre'),
      [
        (a: Float32Array) => {
          pre = a.slice();
        },
      ],
    ],
    [hookName(0, 'hook_attn_out'), [(a: Float32Array) => a.fill(0)]],
    [
      hookName(0, 'hook_resid_mid'),
      [
        (a: Float32Array) => {
          mid = a.slice();
        },
      ],
    ],
  ]);
  const edited = lastLogits(model, prompts, { hooks });
  assert.deepEqual(mid, pre);
  assert.notDeepEqual(edited, base);

  // an edit of each row's last position after the last layer reaches that row's logits
  const last = model.numLayers - 1;
  const bump: Hook = (a, ctx) => {
    for (let b = 0; b < ctx.batch; b++) {
      const o = ((b + 1) * ctx.seq - 1) * ctx.width;
      for (let d = 0; d < ctx.width; d++) a[o + d] = a[o + d]! + (d % 2 ? 3 : -3);
    }
  };
  const bumped = lastLogits(model, prompts, { hooks: new Map([[hookName(last, 'hook_resid_post'), [bump]]]) });
  for (let i = 0; i < prompts.length; i++) assert.notDeepEqual(bumped[i], base[i]);
});

test('no hooks: an empty map is never consulted', async () => {
  const fx = fixture('llama');
  const { model } = await loadModel(path.join(ROOT, fx.model_dir));
  let gets = 0;
  class CountingMap extends Map<string, Hook[]> {
    override get(key: string) {
      gets++;
      return super.get(key);
    }
  }
  const prompts = [fx.cases[0]!.input_ids];
  const a = lastLogits(model, prompts, { hooks: new CountingMap() });
  greedyGenerate(model, prompts, { maxNewTokens: 3, eosTokenIds: [], hooks: new CountingMap() });
  assert.equal(gets, 0);
  assert.deepEqual(a, lastLogits(model, prompts));
});
