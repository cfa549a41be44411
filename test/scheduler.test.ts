// The generation scheduler (src/engine/scheduler.ts): a sequence's tokens are the same alone and among 31 others
// joining and leaving at random steps with their own interventions and sampling, on both kernel paths; aborting
// frees a sequence's cache at once; the queue bound, stop rules, streaming and the event-loop driver.
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { tryNativeKernels } from '../src/engine/kernels/index.js';
import { jsKernels } from '../src/engine/kernels/js.js';
import type { Model } from '../src/engine/model.js';
import { Scheduler, SchedulerFullError, type SequenceRequest } from '../src/engine/scheduler.js';
import type { HookMap, Kernels } from '../src/engine/types.js';
import { ScalpelError } from '../src/errors.js';
import { interventionHooks } from '../src/method/intervention.js';
import { loadEngineModel, loadModel } from '../src/model/load.js';
import { mulberry32 } from '../src/rng.js';

const ROOT = process.cwd();
const ORGANISM = path.join(ROOT, 'models/scalpel-tiny-chat');
const FIXTURE = path.join(ROOT, 'test/fixtures/models/llama');

const native = process.env.SCALPEL_KERNELS === 'js' ? null : tryNativeKernels();

/** A unit direction and an added vector drawn from `rand`, of the model's width. */
function randomVector(width: number, rand: () => number, unit: boolean): Float32Array {
  const v = Float32Array.from({ length: width }, () => rand() * 2 - 1);
  const n = unit ? Math.hypot(...v) : 1;
  return v.map((x) => x / n);
}

/** 32 requests with mixed interventions (none, zero ablation, ablation + activation addition) and decoding. */
function requests(model: Model, seed: number): { req: SequenceRequest; join: number }[] {
  const rand = mulberry32(seed);
  const L = model.numLayers;
  const zero = { kind: 'zero' } as const;
  const ablate = interventionHooks(
    { kind: 'ablate', direction: randomVector(model.width, rand, true), mode: zero, scale: 1 },
    L,
  );
  const both = interventionHooks(
    {
      kind: 'ablate',
      direction: randomVector(model.width, rand, true),
      mode: zero,
      scale: 1,
      add: { layer: 1, vector: randomVector(model.width, rand, false), alpha: 2 },
    },
    L,
  );
  const choices: (HookMap | undefined)[] = [undefined, ablate, both];
  return Array.from({ length: 32 }, (_, i) => {
    const len = 1 + Math.floor(rand() * 30);
    const prompt = Array.from({ length: len }, () => Math.floor(rand() * model.vocabSize));
    const sampled = i % 4 === 3;
    return {
      join: Math.floor(rand() * 40),
      req: {
        prompt,
        maxNewTokens: 1 + Math.floor(rand() * 24),
        hooks: choices[i % 3],
        stopTokenIds: [Math.floor(rand() * model.vocabSize)],
        ...(sampled ? { sampling: { temperature: 0.8, topP: 0.9, topK: 40, seed: i } } : {}),
      },
    };
  });
}

const kernelSets: { name: string; kernels: Kernels | null; reason: string }[] = [
  { name: 'js', kernels: jsKernels, reason: '' },
  { name: 'native', kernels: native?.kernels ?? null, reason: native?.reason || 'SCALPEL_KERNELS=js' },
];

for (const { name, kernels, reason } of kernelSets) {
  test(`32 sequences joining at random steps with mixed interventions equal each run alone [${name}]`, async (t) => {
    if (!kernels) {
      if (process.env.SCALPEL_REQUIRE_NATIVE === '1') assert.fail(`native kernels required: ${reason}`);
      t.skip(`native kernels unavailable: ${reason}`);
      return;
    }
    for (const dir of [ORGANISM, FIXTURE]) {
      const model = await loadEngineModel(dir, { kernels });
      const reqs = requests(model, 7);
      const solo: number[][] = [];
      for (const { req } of reqs) {
        const alone = new Scheduler(model);
        const h = alone.submit(req);
        alone.drain();
        solo.push((await h.result).tokens);
      }

      // Together: at most 8 run at once, the rest wait; each joins at its own step.
      const s = new Scheduler(model, { maxSequences: 8 });
      const handles: Promise<number[]>[] = new Array(reqs.length);
      let stepNo = 0;
      let live = true;
      while (live || handles.filter(Boolean).length < reqs.length) {
        reqs.forEach(({ req, join }, i) => {
          if (join === stepNo) handles[i] = s.submit(req).result.then((r) => r.tokens);
        });
        live = s.step();
        stepNo++;
      }
      const together = await Promise.all(handles);
      assert.deepEqual(together, solo, `${path.basename(dir)}: tokens differ between alone and together`);
      assert.ok(
        solo.some((x, i) => x.length > 0 && reqs[i]!.req.hooks !== undefined),
        'some intervened sequence made tokens',
      );
      t.diagnostic(
        `${path.basename(dir)}: ${solo.reduce((a, x) => a + x.length, 0)} tokens over 32 sequences, ${stepNo} steps`,
      );
    }
  });
}

test('interventions are per sequence: the same prompt with and without hooks in one batch', async () => {
  const model = await loadEngineModel(ORGANISM);
  const rand = mulberry32(3);
  const hooks = interventionHooks(
    { kind: 'add', add: { layer: 2, vector: randomVector(model.width, rand, false), alpha: 8 } },
    model.numLayers,
  );
  const prompt = [1, 2, 3, 4, 5];
  const s = new Scheduler(model);
  const plain = s.submit({ prompt, maxNewTokens: 12 });
  const steered = s.submit({ prompt, maxNewTokens: 12, hooks });
  s.drain();
  const [a, b] = await Promise.all([plain.result, steered.result]);
  const alone = new Scheduler(model);
  const ref = alone.submit({ prompt, maxNewTokens: 12 });
  alone.drain();
  assert.deepEqual(a.tokens, (await ref.result).tokens);
  assert.notDeepEqual(a.tokens, b.tokens);
});

test('an aborted sequence leaves the batch and frees its cache at once; the others go on unchanged', async () => {
  const model = await loadEngineModel(ORGANISM);
  const prompts = [
    [5, 6, 7],
    [8, 9, 10, 11],
    [12, 13],
  ];
  const s = new Scheduler(model);
  const ctl = new AbortController();
  const hs = prompts.map((prompt, i) =>
    s.submit({ prompt, maxNewTokens: 40, ...(i === 1 ? { signal: ctl.signal } : {}) }),
  );
  for (let i = 0; i < 5; i++) s.step();
  assert.equal(s.running, 3);
  const before = s.cacheBytes;
  ctl.abort();
  assert.equal(s.running, 2);
  assert.ok(s.cacheBytes < before, `cache bytes ${before} → ${s.cacheBytes}`);
  const aborted = await hs[1]!.result;
  assert.equal(aborted.finishReason, 'abort');
  assert.equal(aborted.tokens.length, 5);
  s.drain();
  assert.equal(s.running, 0);
  assert.equal(s.cacheBytes, 0);
  for (const i of [0, 2]) {
    const alone = new Scheduler(model);
    const h = alone.submit({ prompt: prompts[i]!, maxNewTokens: 40 });
    alone.drain();
    assert.deepEqual((await hs[i]!.result).tokens, (await h.result).tokens);
  }
  // Aborted while waiting, and before submitting.
  const s2 = new Scheduler(model, { maxSequences: 1 });
  const first = s2.submit({ prompt: [1, 2], maxNewTokens: 3 });
  const ctl2 = new AbortController();
  const queued = s2.submit({ prompt: [1, 2], maxNewTokens: 3, signal: ctl2.signal });
  assert.equal(s2.waiting, 1);
  ctl2.abort();
  assert.equal(s2.waiting, 0);
  assert.equal((await queued.result).finishReason, 'abort');
  const pre = s2.submit({ prompt: [1], maxNewTokens: 3, signal: AbortSignal.abort() });
  assert.equal((await pre.result).finishReason, 'abort');
  s2.drain();
  assert.equal((await first.result).tokens.length, 3);
});

test('the waiting queue is bounded; bad requests fail at submit with one line', async () => {
  const model = await loadEngineModel(FIXTURE);
  const s = new Scheduler(model, { maxSequences: 1, maxWaiting: 2 });
  const hs = [0, 1, 2].map(() => s.submit({ prompt: [1, 2, 3], maxNewTokens: 2 }));
  assert.equal(s.running, 1); // the first runs at once; two wait
  assert.equal(s.waiting, 2);
  assert.throws(() => s.submit({ prompt: [1], maxNewTokens: 2 }), SchedulerFullError);
  s.drain();
  await Promise.all(hs.map((h) => h.result));
  const bad: [Partial<SequenceRequest>, RegExp][] = [
    [{ prompt: [] }, /prompt is empty/],
    [{ prompt: [model.vocabSize] }, /outside the vocabulary/],
    [{ maxNewTokens: -1 }, /maxNewTokens/],
    [{ sampling: { temperature: -1 } }, /temperature/],
    [{ sampling: { topP: 0 } }, /topP/],
    [{ sampling: { topK: 1.5 } }, /topK/],
    [{ stopStrings: ['x'] }, /decode function/],
  ];
  for (const [patch, re] of bad) {
    assert.throws(
      () => s.submit({ prompt: [1], maxNewTokens: 2, ...patch }),
      (e: unknown) => e instanceof ScalpelError && re.test(e.message) && !e.message.includes('\n'),
    );
  }
});

test('stop strings, stop tokens, streaming and the event-loop driver', async () => {
  const m = await loadModel(ORGANISM);
  const decode = (ids: readonly number[]) => m.tokenizer.decode(ids, { skipSpecialTokens: true });
  const s = new Scheduler(m.model, { decode });
  const prompt = m.chat!.render([{ role: 'user', content: 'How do I bake bread?' }], { addGenerationPrompt: true });
  const ids = m.tokenizer.encode(prompt, { addSpecialTokens: false });
  // The full answer, driven by the scheduler's own loop (no drain): the promise settles by itself.
  const full = await s.submit({ prompt: ids, maxNewTokens: 48, stopTokenIds: m.eosTokenIds }).result;
  const text = decode(full.tokens);
  assert.ok(text.length > 10, text);
  // A stop string from the middle of that answer ends generation right after the token that completes it.
  const stop = text.slice(6, 9);
  const cut = await s.submit({ prompt: ids, maxNewTokens: 48, stopStrings: [stop] }).result;
  assert.equal(cut.finishReason, 'stop');
  assert.equal(cut.stopString, stop);
  assert.ok(decode(cut.tokens).includes(stop));
  assert.ok(!decode(cut.tokens.slice(0, -1)).includes(stop));
  assert.deepEqual(cut.tokens, full.tokens.slice(0, cut.tokens.length));
  // A stop token: its first occurrence ends the sequence and is not returned.
  const at = full.tokens[4]!;
  const stopped = await s.submit({ prompt: ids, maxNewTokens: 48, stopTokenIds: [at] }).result;
  assert.deepEqual(stopped.tokens, full.tokens.slice(0, full.tokens.indexOf(at)));
  assert.equal(stopped.finishReason, 'stop');
  // Streaming yields the same tokens as the result.
  const h = s.submit({ prompt: ids, maxNewTokens: 20 });
  const streamed: number[] = [];
  for await (const t of h) streamed.push(t);
  assert.deepEqual(streamed, (await h.result).tokens);
  assert.equal((await h.result).finishReason, 'length');
});

test('sampling: a seed gives the same tokens every time, top-k 1 is greedy, and temperature spreads choices', async () => {
  const model = await loadEngineModel(ORGANISM);
  const s = new Scheduler(model);
  const prompt = [3, 1, 4, 1, 5, 9, 2, 6];
  const run = (sampling: SequenceRequest['sampling']) => s.submit({ prompt, maxNewTokens: 16, sampling }).result;
  const greedy = (await run(undefined)).tokens;
  assert.deepEqual((await run({ temperature: 1, topK: 1, seed: 5 })).tokens, greedy);
  const a = await run({ temperature: 1.5, seed: 11 });
  const b = await run({ temperature: 1.5, seed: 11 });
  assert.deepEqual(a.tokens, b.tokens);
  const seeds = await Promise.all([1, 2, 3, 4, 5, 6].map((seed) => run({ temperature: 1.5, seed })));
  assert.ok(new Set(seeds.map((r) => r.tokens.join(','))).size > 1, 'different seeds give different samples');
});
