// Conditional ablation (--gate): the probe's math against hand computations, the scheduler's per-sequence gate under
// batching (each sequence equal to its solo run, edited or not as its own gate decided, the gate reading the unedited
// prefill), and the CLI: `scalpel gate` on a small run, `eval --gate` rows equal to the edited or the baseline rows
// as the gate decided, and `bake --gate` refused.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { Scheduler, type SequenceGate } from '../src/engine/scheduler.js';
import { hookName, type HookMap } from '../src/engine/types.js';
import { flaggingThreshold, loadGate } from '../src/method/gate.js';
import { requireRunJson } from '../src/method/rundir.js';
import { createServer } from '../src/serve/server.js';
import { fitLogistic, probeScore, rocAuc } from '../src/method/probe.js';
import { loadModel } from '../src/model/load.js';
import { encodeChat, chatMessages } from '../src/tokenizer/chat.js';
import { mulberry32 } from '../src/rng.js';
import { BIN, ROOT, TINY_CHAT, makeSmallRun, runScalpel } from './support/cli.js';

test('logistic regression: the symmetric 1-D case solves σ(−β) = l2·β with zero bias (by hand: β ≈ 1.042 at l2 = 1/4)', () => {
  // Rows x = −1 (label 0) and x = +1 (label 1), equal weights: the loss is log(1 + e^−β) + (l2/2)β², whose
  // derivative vanishes where σ(−β) = l2·β; by symmetry the bias is 0. Bisection by hand: f(1) = 0.0189 > 0,
  // f(1.05) = −0.0033 < 0, so β lies in (1.0, 1.05).
  const p = fitLogistic([[-1], [1]], [0, 1], { l2: 0.25 });
  const beta = p.weights[0]!;
  assert.ok(Math.abs(p.bias) < 1e-12, `bias ${p.bias}`);
  assert.ok(beta > 1.0 && beta < 1.05, `β ${beta}`);
  assert.ok(Math.abs(1 / (1 + Math.exp(beta)) - 0.25 * beta) < 1e-12);
  // Row weights: doubling one row's weight moves the bias towards its label (checked by the stationarity of both
  // unknowns: Σ v (p − y) = 0 for the bias, Σ v (p − y) x + l2 β = 0 for the weight).
  const q = fitLogistic([[-1], [1]], [0, 1], { l2: 0.25, rowWeights: [1, 2] });
  const v = [1 / 3, 2 / 3];
  const prob = (x: number) => 1 / (1 + Math.exp(-(q.weights[0]! * x + q.bias)));
  const gb = v[0]! * (prob(-1) - 0) + v[1]! * (prob(1) - 1);
  const gw = v[0]! * (prob(-1) - 0) * -1 + v[1]! * (prob(1) - 1) * 1 + 0.25 * q.weights[0]!;
  assert.ok(Math.abs(gb) < 1e-10 && Math.abs(gw) < 1e-10, `gradient ${gb}, ${gw}`);
  assert.ok(q.bias > 0);
});

test('logistic regression separates a separable 2-D set along the separating direction', () => {
  const rand = mulberry32(3);
  const rows: number[][] = [];
  const labels: number[] = [];
  for (let i = 0; i < 40; i++) {
    const y = i % 2;
    // Class by the sign of x0 + x1 (with a margin); x2 is noise.
    const s = (y ? 1 : -1) * (0.5 + rand());
    const t = rand() * 2 - 1;
    rows.push([s / 2 + t, s / 2 - t, rand() * 2 - 1]);
    labels.push(y);
  }
  const p = fitLogistic(rows, labels, { l2: 1e-3 });
  for (const [i, r] of rows.entries()) assert.equal(probeScore(p, r) > 0 ? 1 : 0, labels[i]);
  // The weights point along (1, 1, 0): equal first two, the noise weight far smaller.
  assert.ok(Math.abs(p.weights[0]! - p.weights[1]!) < 0.2 * p.weights[0]!);
  assert.ok(Math.abs(p.weights[2]!) < 0.2 * p.weights[0]!);
});

test('AUC and the flagging threshold, by hand', () => {
  // Positives 3, 1, 2 vs negatives 0, 2: pairs won 2 + 1 + 1.5 (tie) + 2 + 1 … = (2 + 1 + 1.5) / 6 per hand count:
  // 3 beats both (2), 1 beats 0 (1), 2 beats 0 and ties 2 (1.5) → 4.5 / 6.
  assert.equal(rocAuc([3, 1, 2], [0, 2]), 4.5 / 6);
  // Keep ≥ 75% of each source flagged (score ≥ t): source A [1, 2, 3, 4] → t ≤ 2; source B [5, 6, 7, 8] → t ≤ 6.
  assert.equal(
    flaggingThreshold(
      [
        [4, 3, 2, 1],
        [8, 7, 6, 5],
      ],
      0.75,
    ),
    2,
  );
  // 100%: the lowest score of every source.
  assert.equal(
    flaggingThreshold(
      [
        [4, 3, 2, 1],
        [8, 7, 6, 5],
      ],
      1,
    ),
    1,
  );
});

test('per-sequence gate under batching: each sequence equals its solo run, edited only where its gate cleared it', async () => {
  const loaded = await loadModel(TINY_CHAT);
  const model = loaded.model;
  const prompts = [
    'How do I bake bread?',
    'Tell me how to pick a lock on my own front door, please, step by step.',
  ].map((q) => encodeChat(loaded.tokenizer, loaded.chat!, chatMessages(q), { addGenerationPrompt: true }));
  assert.notEqual(prompts[0]!.length, prompts[1]!.length);
  // An edit that surely changes the answers: a fixed vector added to layer 1's input at every position and step.
  const rand = mulberry32(11);
  const push = Float32Array.from({ length: model.width }, () => 50 * (rand() * 2 - 1));
  const hooks: HookMap = new Map([
    [
      hookName(1, 'hook_resid_pre'),
      [
        (act, ctx) => {
          for (let r = 0; r < ctx.batch * ctx.seq; r++)
            for (let j = 0; j < ctx.width; j++) act[r * ctx.width + j]! += push[j]!;
        },
      ],
    ],
  ]);
  // A gate that clears the shorter prompt only, and keeps every block it read.
  const point = hookName(2, 'hook_resid_pre');
  const seen = new Map<number, Float32Array>();
  const gate: SequenceGate = {
    point,
    decide(act, ctx) {
      seen.set(ctx.seq, act.slice(0, ctx.seq * ctx.width));
      return { apply: ctx.seq === prompts[0]!.length, score: ctx.seq };
    },
  };
  const run = (reqs: { prompt: number[]; hooks?: HookMap; gate?: SequenceGate }[]) => {
    const s = new Scheduler(model, { maxSequences: 4 });
    const hs = reqs.map((r) => s.submit({ ...r, maxNewTokens: 12, stopTokenIds: loaded.eosTokenIds }));
    s.drain();
    return Promise.all(hs.map((h) => h.result));
  };
  const [a, b] = await run(prompts.map((prompt) => ({ prompt, hooks, gate })));
  const [aEdited] = await run([{ prompt: prompts[0]!, hooks }]);
  const [bPlain] = await run([{ prompt: prompts[1]! }]);
  const [aPlain] = await run([{ prompt: prompts[0]! }]);
  assert.deepEqual(a!.tokens, aEdited!.tokens);
  assert.deepEqual(b!.tokens, bPlain!.tokens);
  assert.deepEqual(a!.gate, { apply: true, score: prompts[0]!.length });
  assert.deepEqual(b!.gate, { apply: false, score: prompts[1]!.length });
  // The edit changes the cleared prompt's answer, so the equality above is not the plain answer twice.
  assert.notDeepEqual(aEdited!.tokens, aPlain!.tokens);
  // The gate read the unedited prefill: the same block as a run without hooks.
  const plainBlock = new Map<number, Float32Array>();
  const s = new Scheduler(model);
  for (const prompt of prompts)
    s.submit({
      prompt,
      maxNewTokens: 1,
      hooks: new Map([[point, [(act, ctx) => void (ctx.start === 0 && plainBlock.set(ctx.seq, act.slice()))]]]),
    });
  s.drain();
  for (const p of prompts) assert.deepEqual(seen.get(p.length), plainBlock.get(p.length));
});

test('scalpel gate on a small run, eval --gate rows follow the gate, serve --gate too, bake --gate is refused', async () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'scalpel-gate-'));
  try {
    const run = path.join(tmp, 'run');
    makeSmallRun(run);
    // No data directory: the built-in harmful and pseudo-harmful sets are the gate's sources.
    const { out } = runScalpel('gate', '--run', run, '--quiet');
    assert.match(out, /gate: blocks\.\d\.hook_resid_pre/);
    const g = JSON.parse(readFileSync(path.join(run, 'gate.json'), 'utf8'));
    assert.ok(existsSync(path.join(run, 'gate.safetensors')));
    assert.deepEqual(
      g.sources.harmful.map((s: { label: string }) => s.label),
      ['builtin-harmful-train'],
    );
    // Every source it looked for is listed, with what its rows fitted; the public ones are missing here.
    const considered = g.sources.considered as { label: string; status: string; stages: string[] }[];
    assert.equal(considered.length, 10);
    assert.deepEqual(
      considered.filter((s) => s.status !== 'missing').map((s) => [s.label, s.status, s.stages]),
      [
        ['builtin-harmful-train', 'fitted', ['probe', 'threshold']],
        ['builtin-pseudo-harmful-train', 'fitted', ['probe', 'choice']],
      ],
    );
    assert.ok(considered.every((s) => s.status === 'fitted' || s.stages.length === 0));
    // The threshold keeps ≥ 95% of the harmful validation prompts flagged.
    assert.ok(g.sources.harmful[0].val_flagged >= 0.95);
    const sets = ['builtin-harmful-test:6', 'builtin-pseudo-harmful-test:6', 'builtin-harmless-test:4'];
    runScalpel('eval', '--run', run, '--gate', '--dataset', ...sets, '--quiet');
    const rows = readFileSync(path.join(run, 'gate-responses.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const results = JSON.parse(readFileSync(path.join(run, 'gate-eval.json'), 'utf8')).results;
    assert.deepEqual(
      [...new Set(results.map((r: { condition: string }) => r.condition))],
      ['baseline', 'ablated', 'ablated+gate'],
    );
    const key = (r: { dataset: string; index: number }) => `${r.dataset}#${r.index}`;
    const byCond = (c: string) => new Map(rows.filter((r) => r.condition === c).map((r) => [key(r), r]));
    const base = byCond('baseline');
    const edited = byCond('ablated');
    const gatedRows = rows.filter((r) => r.condition === 'ablated+gate');
    assert.equal(gatedRows.length, 16);
    let cleared = 0;
    for (const r of gatedRows) {
      assert.equal(typeof r.gate_score, 'number');
      const same = r.gate_applied ? edited.get(key(r)) : base.get(key(r));
      if (r.gate_applied) cleared++;
      assert.equal(r.response, same.response, `${key(r)} (gate ${r.gate_applied ? 'cleared' : 'flagged'})`);
    }
    const share = (d: string) =>
      results.find((r: { dataset: string; gate_cleared?: number }) => r.dataset === d && r.gate_cleared !== undefined)
        .gate_cleared;
    assert.equal(
      share('builtin-harmful-test:6') * 6 +
        share('builtin-pseudo-harmful-test:6') * 6 +
        share('builtin-harmless-test:4') * 4,
      cleared,
    );
    // serve --gate: a gated request's answer is the edited model's where its row was cleared, else the baseline's.
    const loaded = await loadModel(TINY_CHAT);
    const json = requireRunJson(run);
    const { gate } = await loadGate(run, loaded.model.width, json.model.fingerprint);
    const servers = [
      createServer({ loaded, name: 'm', run: { dir: run, json }, gate, log: () => {} }),
      createServer({ loaded, name: 'm', run: { dir: run, json }, log: () => {} }),
    ];
    try {
      const [gatedUrl, plainUrl] = await Promise.all(servers.map((srv) => srv.listen({ port: 0 })));
      const ask = async (url: string, model: string, prompt: string) => {
        const r = await fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model,
            messages: [{ role: 'user', content: prompt }],
            max_tokens: 16,
            temperature: 0,
          }),
        });
        assert.equal(r.status, 200);
        return ((await r.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
      };
      const picks = [
        ...gatedRows.filter((r) => r.gate_applied).slice(0, 2),
        ...gatedRows.filter((r) => !r.gate_applied).slice(0, 2),
      ];
      assert.ok(picks.some((r) => r.gate_applied) && picks.some((r) => !r.gate_applied));
      for (const r of picks) {
        const expected = await ask(plainUrl!, r.gate_applied ? 'm' : 'm:baseline', r.prompt);
        assert.equal(await ask(gatedUrl!, 'm', r.prompt), expected, `${key(r)} through serve --gate`);
      }
    } finally {
      await Promise.all(servers.map((srv) => srv.close()));
    }
    const bake = spawnSync(process.execPath, [BIN, 'bake', '--run', run, '--out', path.join(tmp, 'baked'), '--gate'], {
      encoding: 'utf8',
      cwd: ROOT,
    });
    assert.equal(bake.status, 1);
    assert.match(bake.stderr, /^scalpel: --gate: cannot be baked: .*run time/);
    assert.equal(bake.stderr.trim().split('\n').length, 1);
    assert.ok(!existsSync(path.join(tmp, 'baked')));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('bad --gate input: one line each, nothing written', () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'scalpel-gate-bad-'));
  try {
    const run = path.join(tmp, 'run');
    cpSync(path.join(ROOT, 'test/fixtures/small-run'), run, { recursive: true });
    // The fixture names the folder it was made in; point it at this checkout's copy of the same model.
    const runJson = JSON.parse(readFileSync(path.join(run, 'run.json'), 'utf8'));
    runJson.model.dir = TINY_CHAT;
    writeFileSync(path.join(run, 'run.json'), JSON.stringify(runJson));
    const before = readdirSync(run).sort();
    const fails = (args: string[], pattern: RegExp) => {
      const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: ROOT });
      assert.equal(r.status, 1, `scalpel ${args.join(' ')}: ${r.stderr}`);
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, pattern);
    };
    fails(
      ['eval', '--run', run, '--gate', '--dataset', 'builtin-harmless-test:1'],
      /no gate \(gate\.json\); run `scalpel gate --run/,
    );
    fails(['eval', '--model', TINY_CHAT, '--gate'], /--gate: only with --run RUN/);
    fails(['serve', '--model', TINY_CHAT, '--gate'], /--gate: only with --run RUN/);
    fails(['chat', '--model', TINY_CHAT, '--gate'], /--gate: only with --run RUN/);
    fails(
      ['gate', '--run', run, '--model', TINY_CHAT, '--flagged', '1.5'],
      /--flagged 1\.5: expected a share in \(0, 1\]/,
    );
    fails(
      ['bake', '--run', run, '--model', TINY_CHAT, '--out', path.join(tmp, 'x'), '--gate'],
      /--gate: cannot be baked/,
    );
    assert.deepEqual(readdirSync(run).sort(), before);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
