// `scalpel ability` against transformers: the token ids of the MMLU (5-shot) and ARC prompts, every choice's
// log-likelihood and every token's log-probability in a WikiText-2 window equal the committed reference of
// tools/make_ability_fixtures.py within 1e-4, and accuracy / perplexity follow from them. Then the engine helper
// against lastLogits, KL against itself, and the command on a small run.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { lastLogits } from '../src/engine/generate.js';
import { sequenceLogProbs } from '../src/engine/logprobs.js';
import { hookName, type HookMap } from '../src/engine/types.js';
import { firstTokenKl, measureAbility, percentile, prepareAbility } from '../src/method/ability.js';
import { logSoftmax } from '../src/method/math.js';
import { loadModel } from '../src/model/load.js';
import { BIN, ROOT, TINY_CHAT, makeSmallRun, runScalpel } from './support/cli.js';
import { startRawServer } from './support/raw-server.js';

const DATA = path.resolve(ROOT, '..', 'shared', 'datasets', 'raw');
const noData = fs.existsSync(DATA) ? false : `no shared data at ${DATA}`;
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'expected', 'ability');
const TOL = 1e-4;

interface McRow {
  id: string;
  answer: number;
  context_ids: number[];
  continuation_ids: number[][];
  truncated: number;
  loglik: number[];
  pred: number;
  pred_norm?: number;
}
interface Fixture {
  model_dir: string;
  mmlu: McRow[];
  mmlu_accuracy: number;
  arc: McRow[];
  arc_accuracy: number;
  arc_acc_norm: number;
  ppl: {
    title: string;
    doc_tokens: number;
    window: number;
    prefix_token: number;
    first_window: { ids: number[]; logprobs: number[] };
    windows: { start: number; tokens: number; logprob_sum: number }[];
    perplexity: number;
  };
}

const close = (a: number, b: number, tol: number, what: string) =>
  assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs transformers ${b} (|Δ| ${Math.abs(a - b)} > ${tol})`);

for (const name of ['llama', 'scalpel-tiny-chat']) {
  test(`ability on ${name}: prompt ids and per-item log-likelihoods equal transformers' within 1e-4`, {
    skip: noData,
  }, async () => {
    const fx = JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}.json`), 'utf8')) as Fixture;
    const m = await loadModel(path.join(ROOT, fx.model_dir));
    const inputs = prepareAbility(m, { nMmlu: fx.mmlu.length, nArc: fx.arc.length, nPplDocs: 1, shots: 5 }, DATA);
    for (const [task, rows, reqs] of [
      ['mmlu', fx.mmlu, inputs.mmlu],
      ['arc', fx.arc, inputs.arc],
    ] as const) {
      assert.equal(reqs.length, rows.length, task);
      rows.forEach((row, i) => {
        assert.equal(reqs[i]!.id, row.id, `${task} ${i}: id`);
        assert.deepEqual(reqs[i]!.context, row.context_ids, `${task} ${row.id}: context ids`);
        assert.deepEqual(reqs[i]!.continuations, row.continuation_ids, `${task} ${row.id}: continuation ids`);
        assert.equal(reqs[i]!.truncated, row.truncated, `${task} ${row.id}: tokens truncated`);
      });
    }
    // The windows: the article's token count and the first window's ids.
    assert.equal(inputs.ppl.docs[0]!.title, fx.ppl.title);
    assert.equal(inputs.ppl.docs[0]!.tokens, fx.ppl.doc_tokens);
    assert.equal(inputs.ppl.window, fx.ppl.window);
    assert.deepEqual(inputs.ppl.windows[0]!.ids, fx.ppl.first_window.ids);
    assert.equal(inputs.ppl.windows.length, fx.ppl.windows.length);

    const { ability, items } = measureAbility(m, inputs, { batchSize: 4 });
    for (const [task, rows] of [
      ['mmlu', fx.mmlu],
      ['arc_challenge', fx.arc],
    ] as const) {
      for (const row of rows) {
        const it = items.find((x) => x.task === task && x.id === row.id);
        assert.ok(it && it.task !== 'wikitext2', `${task} ${row.id}: no item`);
        for (const [c, ll] of row.loglik.entries()) close(it.loglik[c]!, ll, TOL, `${task} ${row.id} choice ${c}`);
        assert.equal(it.pred, row.pred, `${task} ${row.id}: prediction`);
        if (row.pred_norm !== undefined) assert.equal(it.pred_norm, row.pred_norm, `${task} ${row.id}: acc_norm pred`);
      }
    }
    // Accuracy is the share of items whose best choice is the answer, from those same log-likelihoods.
    close(ability.mmlu!.accuracy, fx.mmlu_accuracy, 1e-8, 'mmlu accuracy');
    assert.equal(ability.mmlu!.n, fx.mmlu.length);
    close(ability.arc_challenge!.accuracy, fx.arc_accuracy, 1e-8, 'arc accuracy');
    close(ability.arc_challenge!.acc_norm, fx.arc_acc_norm, 1e-8, 'arc acc_norm');

    // Every token of the first window, and each window's sum.
    const [first] = sequenceLogProbs(m.model, [{ ids: fx.ppl.first_window.ids, from: 1 }]);
    assert.equal(first!.length, fx.ppl.first_window.logprobs.length);
    for (const [t, lp] of fx.ppl.first_window.logprobs.entries()) close(first![t]!, lp, TOL, `window 0 token ${t + 1}`);
    const doc = items.find((x) => x.task === 'wikitext2');
    assert.ok(doc && doc.task === 'wikitext2');
    const refSum = fx.ppl.windows.reduce((s, w) => s + w.logprob_sum, 0);
    // Sums of thousands of token log-probabilities: 1e-4 per token at most, in practice far less.
    close(doc.logprob_sum, refSum, TOL * fx.ppl.doc_tokens * 0.01, 'article log-prob sum');
    assert.equal(ability.perplexity!.tokens, fx.ppl.doc_tokens);
    close(ability.perplexity!.value, Math.exp(-doc.logprob_sum / doc.tokens), 1e-9 * ability.perplexity!.value, 'ppl');
    close(Math.log(ability.perplexity!.value), Math.log(fx.ppl.perplexity), TOL, 'log perplexity');
  });
}

test('sequenceLogProbs: the last position equals lastLogits, alone and batched with padding, with hooks', async () => {
  const m = await loadModel(path.join(ROOT, 'test', 'fixtures', 'models', 'llama'));
  const seqs = [
    [768, 5, 17, 300, 42, 9],
    [768, 11, 12],
    [768, 400, 401, 402, 403, 404, 405, 406, 407],
  ];
  // A hook that edits the stream (adds a fixed vector at layer 0, the same on every row), so a capture that ignored
  // hooks would differ.
  const shift = (act: Float32Array, ctx: { width: number }) => {
    for (let i = 0; i < act.length; i++) act[i] = act[i]! + 0.05 * ((i % ctx.width) % 7);
  };
  const hooks: HookMap = new Map([[hookName(0, 'hook_resid_pre'), [shift]]]);
  for (const h of [undefined, hooks]) {
    const batched = sequenceLogProbs(
      m.model,
      seqs.map((ids) => ({ ids, from: 1 })),
      { hooks: h, batchSize: 3 },
    );
    seqs.forEach((ids, i) => {
      const alone = sequenceLogProbs(m.model, [{ ids, from: 1 }], { hooks: h })[0]!;
      const lp = logSoftmax(lastLogits(m.model, [ids.slice(0, -1)], { hooks: h })[0]!);
      close(batched[i]!.at(-1)!, lp[ids.at(-1)!]!, 1e-5, `seq ${i} last token vs lastLogits`);
      for (const [t, x] of batched[i]!.entries()) close(x, alone[t]!, 1e-5, `seq ${i} token ${t}: batched vs alone`);
    });
  }
  assert.throws(() => sequenceLogProbs(m.model, [{ ids: [1, 2], from: 0 }]), /from = 0/);
  assert.throws(() => sequenceLogProbs(m.model, [{ ids: [1, 99999], from: 1 }]), /outside the vocabulary/);
});

test('first-token KL: zero against itself, positive under an ablation; percentile as numpy', async () => {
  const m = await loadModel(TINY_CHAT);
  const prompts = ['<|bos|><|user|>\nHi<|end|>\n<|assistant|>\n', 'Tell me a story about a cat.'].map((t) =>
    m.tokenizer.encode(t, { addSpecialTokens: false }),
  );
  const none = firstTokenKl(m, prompts, new Map());
  assert.deepEqual(none.values, [0, 0]);
  assert.equal(none.mean, 0);
  const d = new Float32Array(m.model.width).fill(1 / Math.sqrt(m.model.width));
  const ablate = (act: Float32Array, ctx: { width: number }) => {
    for (let r = 0; r < act.length / ctx.width; r++) {
      let p = 0;
      for (let i = 0; i < ctx.width; i++) p += act[r * ctx.width + i]! * d[i]!;
      for (let i = 0; i < ctx.width; i++) act[r * ctx.width + i]! -= 3 * p * d[i]!;
    }
  };
  const hooks: HookMap = new Map([[hookName(2, 'hook_resid_pre'), [ablate]]]);
  const edited = firstTokenKl(m, prompts, hooks);
  assert.ok(
    edited.values.every((v) => v > 0),
    `${edited.values}`,
  );
  close(percentile([1, 2, 3, 4], 95), 3.85, 1e-12, 'percentile');
  assert.equal(percentile([5], 95), 5);
});

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-ability-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('scalpel ability --run on a small run: ability.json in the contract shape; --model gives the same baseline', {
  skip: noData,
}, () => {
  const run = path.join(tmp, 'run');
  makeSmallRun(run);
  const sizes = ['--n-mmlu', '10', '--n-arc', '8', '--n-ppl-docs', '1', '--n-kl', '12', '--data-dir', DATA];
  const r = runScalpel('ability', '--run', run, ...sizes, '--quiet');
  assert.match(r.out, /mmlu 5-shot acc\s+10 /);
  assert.match(r.out, /first-token KL\(baseline ‖ edited\) on builtin-harmless-test \(n=12\)/);
  const j = JSON.parse(fs.readFileSync(path.join(run, 'ability.json'), 'utf8'));
  const runJson = JSON.parse(fs.readFileSync(path.join(run, 'run.json'), 'utf8'));
  const selection = JSON.parse(fs.readFileSync(path.join(run, 'selection.json'), 'utf8'));
  assert.equal(j.format, 'scalpel-ability/1');
  assert.equal(j.model_fingerprint, runJson.model.fingerprint);
  assert.deepEqual(j.settings.site, { position: selection.chosen.position, layer: selection.chosen.layer });
  assert.equal(j.settings.lambda, 1);
  for (const c of ['baseline', 'edited']) {
    const a = j.conditions[c];
    assert.equal(a.mmlu.n, 10);
    assert.equal(a.mmlu.shots, 5);
    assert.match(a.mmlu.format, /The following are multiple choice questions/);
    assert.equal(a.arc_challenge.n, 8);
    assert.equal(a.arc_challenge.shots, 0);
    assert.equal(a.perplexity.docs, 1);
    assert.ok(a.perplexity.value > 1 && Number.isFinite(a.perplexity.value));
    for (const x of [a.mmlu.accuracy, a.arc_challenge.accuracy]) assert.ok(x >= 0 && x <= 1);
  }
  assert.equal(j.kl.n, 12);
  assert.equal(j.kl.dataset, 'builtin-harmless-test');
  assert.ok(j.kl.first_token_mean > 0 && j.kl.first_token_p95 >= 0);
  // Items: every MC item and article once per condition.
  const items = fs
    .readFileSync(path.join(run, 'ability-items.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(items.length, 2 * (10 + 8 + 1));

  // The model alone: the same baseline, no edit, no KL, nothing written without --out.
  const b = runScalpel('ability', '--model', TINY_CHAT, ...sizes.slice(0, 6), '--data-dir', DATA, '--json', '--quiet');
  const alone = JSON.parse(b.out);
  assert.deepEqual(alone.conditions.baseline, j.conditions.baseline);
  assert.equal(alone.conditions.edited, null);
  assert.equal(alone.kl, null);
  assert.equal(alone.settings, null);
});

test('scalpel ability without a data directory fetches the samples it needs (pinned, verified) and reads them from the cache', {
  skip: noData,
}, async () => {
  const server = await startRawServer(DATA);
  try {
    const cache = path.join(tmp, 'cache');
    const sizes = ['--n-mmlu', '3', '--n-arc', '2', '--n-ppl-docs', '0', '--json', '--quiet'];
    const env: NodeJS.ProcessEnv = { ...process.env, SCALPEL_CACHE: cache, SCALPEL_DATASETS_ENDPOINT: server.url };
    delete env['SCALPEL_DATA'];
    // Spawned asynchronously: the raw-file server runs in this process and must keep answering.
    const child = spawn(process.execPath, [BIN, 'ability', '--model', TINY_CHAT, ...sizes], { env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const status = await new Promise<number | null>((res) => child.on('close', res));
    const r = { status, stdout, stderr };
    assert.equal(r.status, 0, r.stderr);
    // MMLU's ten files and ARC's one; WikiText-2 was not asked for.
    assert.equal(server.count(), 11);
    assert.ok(fs.existsSync(path.join(cache, 'datasets', 'mmlu', 'dev', 'world_religions_dev.csv')));
    assert.ok(!fs.existsSync(path.join(cache, 'datasets', 'wikitext2')));
    const fromRaw = JSON.parse(runScalpel('ability', '--model', TINY_CHAT, ...sizes, '--data-dir', DATA).out);
    assert.deepEqual(JSON.parse(r.stdout).conditions, fromRaw.conditions);
  } finally {
    await server.close();
  }
});
