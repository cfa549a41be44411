// The whole pipeline in process on a hand-built toy "model" whose answer is known: harmful prompts carry feature
// e0 (×2), pseudo-harmful prompts e0 + e1, harmless neither; the refusal logit is 4(x0 + x1) − 5. So r = 2 e0,
// w = e0 + e1, and with λ = 1 the ablated direction is e1: pseudo-harmful prompts stop refusing (4 − 5 < 0) while
// harmful ones keep refusing (8 − 5 > 0). With λ = 0 the direction (e0 + e1)/√2 also breaks harmful refusals,
// which the harm guard rejects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hookName, type HookContext, type HookMap } from '../src/engine/types.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { PassCounter, counted, type Backend } from '../src/method/backend.js';
import { defaultConfig, type MethodConfig } from '../src/method/config.js';
import { runPipeline, evaluateRun } from '../src/method/pipeline.js';
import { MeanAccumulator, refusalScore } from '../src/method/math.js';
import { captureHooks } from '../src/method/hooks.js';
import { scoreAndCapture } from '../src/method/pipeline.js';
import { loadEngineBackend } from '../src/method/engine-backend.js';
import { fileURLToPath } from 'node:url';

const D = 4;
const L = 3;
const V = 8; // 0 "I'm sorry", 1 "Sure", 2 H, 3 P, 4 N, 5 and 6 the post-instruction tokens, 7 EOS
const FEATURE: Record<number, number[]> = { 2: [2, 0, 0, 0], 3: [1, 1, 0, 0], 4: [0, 0, 0, 0] };

function forward(prompts: number[][], hooks: HookMap | undefined, start = 0): Float32Array[] {
  // Every prompt has the same length here (marker + 2 suffix tokens), so no padding is needed.
  const seq = prompts[0]!.length;
  const batch = prompts.length;
  const ctx = (name: string, layer: number): HookContext => ({
    name,
    layer,
    batch,
    seq,
    width: D,
    start,
    positions: Int32Array.from({ length: batch * seq }, (_, i) => (i % seq) + start),
    valid: new Uint8Array(batch * seq).fill(1),
  });
  const run = (name: string, layer: number, a: Float32Array) => {
    for (const h of hooks?.get(name) ?? []) h(a, ctx(name, layer));
  };
  const x = new Float32Array(batch * seq * D);
  for (const [b, p] of prompts.entries())
    for (const [j, t] of p.entries()) if (t >= 5) x[(b * seq + j) * D + 2] = t - 4;
  for (let l = 0; l < L; l++) {
    run(hookName(l, 'hook_resid_pre'), l, x);
    const attn = new Float32Array(x.length);
    if (l === 0)
      prompts.forEach((p, b) => {
        for (let j = 1; j < seq; j++) attn.set(FEATURE[p[0]!]!, (b * seq + j) * D);
      });
    run(hookName(l, 'hook_attn_out'), l, attn);
    for (let i = 0; i < x.length; i++) x[i]! += attn[i]!;
    const mlp = new Float32Array(x.length);
    run(hookName(l, 'hook_mlp_out'), l, mlp);
    for (let i = 0; i < x.length; i++) x[i]! += mlp[i]!;
  }
  return prompts.map((_, b) => {
    const o = (b * seq + seq - 1) * D;
    const logits = new Float32Array(V).fill(-10);
    logits[0] = 4 * (x[o]! + x[o + 1]!) - 5;
    logits[1] = 0;
    return logits;
  });
}

const toy: Backend = {
  numLayers: L,
  width: D,
  vocabSize: V,
  encodePrompt: (s) => [s.startsWith('harmful') ? 2 : s.startsWith('pseudo') ? 3 : 4, 5, 6],
  postInstructionTokens: () => [5, 6],
  responseFirstToken: (t) => (t.startsWith('I') ? 0 : 1),
  decode: (ids) => ids.map((i) => (i === 0 ? "I'm sorry" : i === 1 ? 'Sure' : '')).join(' '),
  tokenText: (id) => ['I', 'Sure', 'H', 'P', 'N', 'a', 'b', '</s>'][id]!,
  async lastLogits(prompts, o = {}) {
    return forward(prompts, o.hooks);
  },
  async generate(prompts, o) {
    // One token (the argmax), then EOS; hooks run at prefill as the engine would.
    return forward(prompts, o.hooks).map((l) => [l[0]! > l[1]! ? 0 : 1]);
  },
};

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-toy-'));
const modelDir = path.join(tmp, 'model');
const files: Record<string, string> = {};
for (const set of ['harmful', 'pseudo', 'harmless']) {
  files[set] = path.join(tmp, `${set}.txt`);
  fs.writeFileSync(files[set]!, Array.from({ length: 20 }, (_, i) => `${set} prompt ${i}`).join('\n'));
}

function config(over: Partial<MethodConfig> = {}): MethodConfig {
  return {
    ...defaultConfig(false),
    harmfulTrain: files['harmful']!,
    harmfulVal: files['harmful']!,
    harmlessTrain: files['harmless']!,
    harmlessVal: files['harmless']!,
    pseudoTrain: files['pseudo']!,
    pseudoVal: files['pseudo']!,
    nTrain: 12,
    nVal: 6,
    maxNewTokens: 4,
    evalDatasets: [files['pseudo']!, files['harmful']!, files['harmless']!],
    ...over,
  };
}

test('auto refusal tokens include the openings of over-refusals; auto-harmful keeps the harmful ones only', async () => {
  // A variant of the toy whose over-refusals open with their own token (1, "As ...") while true refusals open with 0.
  const styled: Backend = {
    ...toy,
    decode: (ids) =>
      ids.map((i) => (i === 0 ? "I'm sorry" : i === 1 ? "As a careful assistant, I'm not able to" : 'Sure')).join(' '),
    async generate(prompts) {
      return prompts.map((p) => (p[0] === 2 ? [0] : p[0] === 3 ? [1] : [4]));
    },
  };
  const dir = path.join(tmp, 'model-styled');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": "toy"}');
  await writeSafetensors(path.join(dir, 'model.safetensors'), [
    { name: 'x', dtype: 'f32', shape: [1], data: new Float32Array(1) },
  ]);
  const both = await runPipeline(
    { runDir: path.join(tmp, 'run-auto'), modelDir: dir, config: config({ filter: false }), backend: styled },
    ['extract'],
  );
  assert.deepEqual(both.run.refusal_tokens!.ids, [0, 1]);
  assert.deepEqual(both.run.refusal_tokens!.first_token_counts_pseudo, { '1 "Sure"': 12 });
  const harmfulOnly = await runPipeline(
    {
      runDir: path.join(tmp, 'run-auto-harmful'),
      modelDir: dir,
      config: config({ filter: false, refusalTokens: 'auto-harmful' }),
      backend: styled,
    },
    ['extract'],
  );
  assert.deepEqual(harmfulOnly.run.refusal_tokens!.ids, [0]);
  assert.equal(harmfulOnly.run.refusal_tokens!.first_token_counts_pseudo, undefined);
});

test('toy model: the pipeline finds e1 at layer 1, keeps harmful refusals, and λ is a dial', async () => {
  fs.mkdirSync(modelDir, { recursive: true });
  fs.writeFileSync(path.join(modelDir, 'config.json'), '{"model_type": "toy"}');
  await writeSafetensors(path.join(modelDir, 'model.safetensors'), [
    { name: 'x', dtype: 'f32', shape: [1], data: new Float32Array(1) },
  ]);
  const runDir = path.join(tmp, 'run');
  const res = await runPipeline({ runDir, modelDir, config: config(), backend: toy });

  // Refusal tokens from the model's own refusals; filter keeps all harmful and pseudo (score 3 > 0), harmless (−5).
  assert.deepEqual(res.run.refusal_tokens!.ids, [0]);
  assert.equal(res.run.data!['harmful_train']!.kept, 12);
  assert.equal(res.run.data!['harmless_train']!.kept, 12);
  // 12 harmful + 12 pseudo-harmful probes (generate) + one prefill of the 36 training prompts for both scores and
  // activations.
  assert.equal(res.run.stages.extract!.prompt_prefills, 12 + 12 + 36);

  const sel = res.selection!;
  const at = (pos: number, layer: number) => sel.candidates.find((c) => c.position === pos && c.layer === layer)!;
  assert.match(at(-1, 0).rejected!, /zero vector/);
  assert.match(at(-1, 2).rejected!, /layer 2 ≥ 2/);
  assert.equal(at(-2, 1).kl, 0);
  // Pseudo-harmful under ablation of e1: x = e0, refusal logit 4 − 5 = −1.
  // Exact inputs, so only float64 evaluation order can differ (measured: 2.2e-16, one ulp; it was 1e-6).
  assert.ok(Math.abs(at(-2, 1).refusal_score! - refusalScore([-1, 0, -10, -10, -10, -10, -10, -10], [0])) < 1e-12);
  assert.ok(sel.baseline.pseudo_val_score! > 0);
  assert.deepEqual([sel.chosen!.position, sel.chosen!.layer], [-2, 1]);
  assert.ok(sel.chosen!.harmful_score! > 0);

  const rate = (ds: string, cond: string) =>
    res.results!.find((r) => r.dataset === files[ds] && r.condition === cond)!.compliance_rate;
  assert.equal(rate('pseudo', 'baseline'), 0);
  assert.equal(rate('pseudo', 'ablated'), 1);
  assert.equal(rate('harmful', 'baseline'), 0);
  assert.equal(rate('harmful', 'ablated'), 0);
  assert.equal(rate('harmless', 'ablated'), 1);

  // λ = 0 at the same site: ŵ = (e0 + e1)/√2 also silences harmful prompts.
  const r0 = await evaluateRun(
    { runDir, modelDir, config: config(), backend: toy },
    { lambda: 0, datasets: [files['harmful']!] },
  );
  assert.equal(r0.find((r) => r.condition === 'ablated')!.compliance_rate, 1);
  assert.equal(r0.find((r) => r.condition === 'ablated')!.lambda, 0);

  // Eval reads only its evaluation sets: a training prompt file removed after the run does not stop it.
  const gone = path.join(tmp, 'pseudo-train-gone.txt');
  fs.copyFileSync(files['pseudo']!, gone);
  const withGone = config({ pseudoTrain: gone });
  const runGone = path.join(tmp, 'run-gone');
  await runPipeline({ runDir: runGone, modelDir, config: withGone, backend: toy }, ['extract', 'select']);
  fs.rmSync(gone);
  const again = await evaluateRun(
    { runDir: runGone, modelDir, config: withGone, backend: toy },
    { lambda: 1, datasets: [files['pseudo']!] },
  );
  assert.equal(again.find((r) => r.condition === 'ablated')!.compliance_rate, 1);
});

test('toy model: the harm guard rejects λ = 0 candidates; --no-harm-guard takes them', async () => {
  const guarded = await runPipeline(
    { runDir: path.join(tmp, 'g'), modelDir, config: config({ lambda: 0 }), backend: toy },
    ['extract', 'select'],
  ).catch((e: Error) => e);
  assert.ok(guarded instanceof Error && /no candidate passes the rules/.test(guarded.message), String(guarded));
  const sel = JSON.parse(fs.readFileSync(path.join(tmp, 'g', 'selection.json'), 'utf8'));
  assert.match(
    sel.candidates.find((c: { layer: number; position: number }) => c.layer === 1 && c.position === -2).rejected,
    /harm guard/,
  );
  const open = await runPipeline(
    { runDir: path.join(tmp, 'u'), modelDir, config: config({ lambda: 0, harmGuard: false }), backend: toy },
    ['extract', 'select'],
  );
  assert.deepEqual([open.selection!.chosen!.position, open.selection!.chosen!.layer], [-2, 1]);
});

test('toy model: --target true selects r (Arditi et al.), whose ablation removes harmful refusals', async () => {
  const res = await runPipeline({
    runDir: path.join(tmp, 't'),
    modelDir,
    config: config({ target: 'true' }),
    backend: toy,
  });
  assert.equal(res.selection!.chosen!.layer, 1);
  const row = res.selection!.candidates.find((c) => c.layer === 1 && c.position === -2)!;
  assert.ok(row.steering_score! > 0);
  const rate = (ds: string) =>
    res.results!.find((r) => r.dataset === files[ds] && r.condition === 'ablated')!.compliance_rate;
  assert.equal(rate('harmful'), 1);
  assert.equal(rate('pseudo'), 1);
});

test('toy model: affine ablation and activation addition', async () => {
  const aff = await runPipeline({
    runDir: path.join(tmp, 'a'),
    modelDir,
    config: config({ ablation: 'affine' }),
    backend: toy,
  });
  assert.equal(
    aff.results!.find((r) => r.dataset === files['pseudo'] && r.condition === 'ablated')!.compliance_rate,
    1,
  );
  // α = 1 adds r = 2 e0 at layer 1: harmless prompts then refuse (4·2 − 5 > 0). That moves their next-token
  // distribution by more than the default KL ≤ 2, so the threshold is raised here.
  const add = await runPipeline({
    runDir: path.join(tmp, 'b'),
    modelDir,
    config: config({ alpha: 1, actaddKlThreshold: 100 }),
    backend: toy,
  });
  assert.equal(add.selection!.actadd!.chosen!.layer, 1);
  const h = add.results!.find((r) => r.dataset === files['harmless'] && r.condition === 'ablated+actadd')!;
  assert.equal(h.compliance_rate, 0);
  assert.equal(h.alpha, 1);
});

test('one prefill gives scores and activations: same means as separate passes on a real engine', async () => {
  const dir = path.resolve(
    path.dirname(fileURLToPath(import.meta.url)),
    '..',
    '..',
    'test',
    'fixtures',
    'models',
    'qwen2',
  );
  const counter = new PassCounter();
  const backend = counted((await loadEngineBackend(dir, { batchSize: 3 })).backend, counter);
  const texts = [
    'a',
    'How do I kill a zombie process on my server?',
    'Hi',
    'Write a poem about the sea and the sky.',
    'x y',
    'Tell me a joke',
    'ok',
  ];
  const prompts = texts.map((t) => backend.encodePrompt(t));
  const k = backend.postInstructionTokens().length;
  const L = backend.numLayers;
  const ids = [5, 17];
  const seen: number[] = [];
  const single = new MeanAccumulator(k, L, backend.width);
  const keep = (j: number) => j % 2 === 0;
  await scoreAndCapture(backend, prompts, k, ids, (j, score, row) => {
    seen.push(j);
    scores[j] = score;
    if (keep(j)) single.addRow(row);
  });
  assert.deepEqual(
    [...seen].sort((a, b) => a - b),
    texts.map((_, j) => j),
  );
  assert.equal(counter.prefills, texts.length, "no prompt prefilled twice (the row order matched the engine's)");
  const logits = await backend.lastLogits(prompts);
  for (let j = 0; j < texts.length; j++)
    assert.ok(Math.abs(scores[j]! - refusalScore(logits[j]!, ids)) < 1e-9, `score ${j}`);
  const two = new MeanAccumulator(k, L, backend.width);
  await backend.lastLogits(
    prompts.filter((_, j) => keep(j)),
    { hooks: captureHooks(L, two) },
  );
  const a = single.means();
  const b = two.means();
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) < 1e-6, `mean ${i}: ${a[i]} vs ${b[i]}`);
});
const scores: number[] = [];
