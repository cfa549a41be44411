// The project's own chat model (models/scalpel-tiny-chat) against transformers (tools/make_organism_fixture.py):
// the chat template and tokenizer give the same prompt ids, greedy continuations (stopping at EOS) are identical,
// and last-position logits agree within a small fraction of their spread, with no intervention, with directional
// ablation, with activation addition and with both, each through Scalpel's own hooks (src/method/hooks.ts).
// One prompt at a time and in one left-padded batch; portable kernels and the native path (a visible SKIP when
// the addon does not load here).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../src/model/load.js';
import { greedyGenerate, lastLogits } from '../src/engine/generate.js';
import type { HookMap } from '../src/engine/types.js';
import { encodeChat, type ChatMessage } from '../src/tokenizer/chat.js';
import { interventionHooks, type Intervention } from '../src/method/intervention.js';
import { kernelPaths } from './kernel-paths.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIXTURE = path.join(root, 'test/fixtures/expected/organism/scalpel-tiny-chat.json');
// Largest |Scalpel − transformers| logit difference allowed, as a fraction of the reference's max − min. Both
// compute in f32, so only summation order differs (measured: 4e-6 at most); the interventions move logits by
// 5–20 % of the spread, so a hook that is skipped, misplaced or mis-signed lands far outside.
const TOL = 1e-4;

interface LogitSummary {
  top: [number, number][];
  sampled: number[];
  stats: { min: number; max: number; mean: number; logsumexp: number };
  full?: number[];
}
type InterventionName = 'none' | 'ablate' | 'add' | 'ablate+add';
interface Case {
  prompt: number;
  intervention: InterventionName;
  greedy: number[];
  stopped_at_eos: boolean;
  last_logits: LogitSummary;
  effect_rel?: number;
}
interface Fixture {
  model_dir: string;
  regenerate: string;
  model_files_sha256: Record<string, string>;
  max_new_tokens: number;
  eos_token_ids: number[];
  logit_sample_stride: number;
  intervention: { direction: number[]; add_layer: number; add_alpha: number };
  prompts: { kind: string; messages: ChatMessage[]; rendered: string; input_ids: number[] }[];
  cases: Case[];
}

const fx = JSON.parse(fs.readFileSync(FIXTURE, 'utf8')) as Fixture;
const modelDir = path.join(root, fx.model_dir);
const rel = (p: string) => path.relative(root, p);

/** Model files whose bytes differ from the ones the fixture was made from (a retrained model, a new template…). */
function staleFiles(): string[] {
  const out: string[] = [];
  for (const [file, want] of Object.entries(fx.model_files_sha256)) {
    const p = path.join(modelDir, file);
    if (!fs.existsSync(p)) out.push(`${file} (missing)`);
    else if (createHash('sha256').update(fs.readFileSync(p)).digest('hex') !== want) out.push(file);
  }
  return out;
}
const stale = staleFiles();
// Every other test compares against the fixture; on a stale one they would only repeat this failure as noise.
const skipIfStale =
  stale.length > 0 ? `stale fixture (see the test 'organism fixture matches the model files')` : false;

test('organism fixture matches the model files', () => {
  assert.deepEqual(
    stale,
    [],
    `${rel(FIXTURE)} was made from other files in ${fx.model_dir} (changed: ${stale.join(', ')}); ` +
      `regenerate with ${fx.regenerate}`,
  );
});

test("organism: chat template and tokenizer give transformers' prompt ids; same EOS ids", {
  skip: skipIfStale,
}, async () => {
  const { tokenizer, chat, eosTokenIds } = await loadModel(modelDir);
  assert.ok(chat, `${fx.model_dir} has a chat template`);
  assert.deepEqual(eosTokenIds, fx.eos_token_ids);
  for (const [i, p] of fx.prompts.entries()) {
    assert.equal(chat.render(p.messages, { addGenerationPrompt: true }), p.rendered, `prompt ${i}: rendered text`);
    assert.deepEqual(
      encodeChat(tokenizer, chat, p.messages, { addGenerationPrompt: true }),
      p.input_ids,
      `prompt ${i}: ids`,
    );
  }
});

test('organism fixture: every intervention moves the logits well beyond the tolerance', () => {
  // Otherwise a hook that did nothing would still pass the parity test below.
  for (const c of fx.cases)
    if (c.intervention !== 'none')
      assert.ok(
        c.effect_rel! > 50 * TOL,
        `${c.intervention} on prompt ${c.prompt}: effect ${c.effect_rel} of the spread`,
      );
});

/** max |got − ref| over every stored logit and summary statistic, as a fraction of the reference spread. */
function logitError(got: Float32Array, ref: LogitSummary, stride: number): number {
  const spread = ref.stats.max - ref.stats.min;
  let err = 0;
  const at = (id: number, want: number) => (err = Math.max(err, Math.abs(got[id]! - want)));
  for (const [id, v] of ref.top) at(id, v);
  for (const [k, v] of ref.sampled.entries()) at(k * stride, v);
  for (const [id, v] of (ref.full ?? []).entries()) at(id, v);
  let min = Infinity,
    max = -Infinity,
    sum = 0;
  for (const v of got) {
    min = Math.min(min, v);
    max = Math.max(max, v);
    sum += v;
  }
  let lse = 0;
  for (const v of got) lse += Math.exp(v - max);
  const stats = { min, max, mean: sum / got.length, logsumexp: max + Math.log(lse) };
  for (const k of ['min', 'max', 'mean', 'logsumexp'] as const) err = Math.max(err, Math.abs(stats[k] - ref.stats[k]));
  return err / spread;
}

function hooksFor(name: InterventionName, numLayers: number): HookMap | undefined {
  const { direction, add_layer, add_alpha } = fx.intervention;
  const add = { layer: add_layer, vector: Float32Array.from(direction), alpha: add_alpha };
  const ablate = { kind: 'ablate', direction: Float32Array.from(direction), mode: { kind: 'zero' }, scale: 1 } as const;
  const iv: Intervention | undefined =
    name === 'ablate'
      ? ablate
      : name === 'ablate+add'
        ? { ...ablate, add }
        : name === 'add'
          ? { kind: 'add', add }
          : undefined;
  return iv ? interventionHooks(iv, numLayers) : undefined;
}

for (const kp of kernelPaths()) {
  test(`organism parity with transformers [${kp.label}]`, {
    skip: skipIfStale || kp.skip,
    timeout: 300_000,
  }, async (t) => {
    const kernels = kp.get();
    const { model, eosTokenIds } = await loadModel(modelDir, { kernels });
    const opts = { maxNewTokens: fx.max_new_tokens, eosTokenIds };
    const groups = new Map<InterventionName, Case[]>();
    for (const c of fx.cases) groups.set(c.intervention, [...(groups.get(c.intervention) ?? []), c]);
    let worst = 0;
    for (const [name, cases] of groups) {
      const hooks = hooksFor(name, model.numLayers);
      const prompts = cases.map((c) => fx.prompts[c.prompt]!.input_ids);
      const label = (c: Case, how: string) => `${name} prompt ${c.prompt} (${fx.prompts[c.prompt]!.kind}) ${how}`;
      // one prompt at a time
      for (const [i, c] of cases.entries()) {
        const logits = lastLogits(model, [prompts[i]!], { hooks })[0]!;
        assert.equal(logits.length, model.vocabSize);
        const e = logitError(logits, c.last_logits, fx.logit_sample_stride);
        worst = Math.max(worst, e);
        assert.ok(e <= TOL, `${label(c, 'single')}: logit error ${e.toExponential(2)} of the spread`);
        assert.deepEqual(
          greedyGenerate(model, [prompts[i]!], { ...opts, hooks })[0],
          c.greedy,
          `${label(c, 'single')}: greedy`,
        );
      }
      // all of the group in one left-padded batch (rows of different lengths, finishing at different steps)
      const batchSize = prompts.length;
      const logits = lastLogits(model, prompts, { hooks, batchSize });
      const greedy = greedyGenerate(model, prompts, { ...opts, hooks, batchSize });
      for (const [i, c] of cases.entries()) {
        const e = logitError(logits[i]!, c.last_logits, fx.logit_sample_stride);
        worst = Math.max(worst, e);
        assert.ok(e <= TOL, `${label(c, 'batched')}: logit error ${e.toExponential(2)} of the spread`);
        assert.deepEqual(greedy[i], c.greedy, `${label(c, 'batched')}: greedy`);
      }
    }
    t.diagnostic(
      `scalpel-tiny-chat [${kernels.name}]: ${fx.cases.length} cases, max logit error ${worst.toExponential(2)} of spread`,
    );
  });
}
