// `--search halving` (src/method/select-halving.ts): the rung schedule, that halving scores only new prompts and
// keeps the candidates the rule prefers, and on a real run of the project's model that it picks the exhaustive
// sweep's candidate for fewer forward passes, marks halved-out rows as estimates, and keys the stage by the search.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Slot } from '../src/method/candidates.js';
import {
  fallbackOrder,
  rankScorings,
  rungSizes,
  successiveHalving,
  type Scoring,
} from '../src/method/select-halving.js';
import { mulberry32 } from '../src/rng.js';
import { BIN, runScalpel, TINY_CHAT } from './support/cli.js';

test('rungs double from 4 prompts up to n-val, which is always the last', () => {
  assert.deepEqual(rungSizes(32), [4, 8, 16, 32]);
  assert.deepEqual(rungSizes(16), [4, 8, 16]);
  assert.deepEqual(rungSizes(20), [4, 8, 16, 20]);
  assert.deepEqual(rungSizes(4), [4]);
  assert.deepEqual(rungSizes(3), [3]);
});

test('halving scores only the new prompts, keeps the best third, and ranks over-limit KL last', async () => {
  // 90 synthetic candidates: candidate j's per-prompt score is j/90 plus noise; every fifth one is over the KL limit.
  const rnd = mulberry32(3);
  const slots: Slot[] = Array.from({ length: 90 }, (_, j) => ({
    i: j % 5,
    l: Math.floor(j / 5),
    row: { position: 0, layer: 0, refusal_score: null, kl: null, harmful_score: null, rejected: null },
  }));
  const truth = (s: Slot) => (s.l * 5 + s.i) / 90;
  const overKl = (s: Slot) => (s.l * 5 + s.i) % 5 === 0;
  let measured = 0;
  const calls: [number, number][] = [];
  const r = await successiveHalving(slots, 32, 0.2, async (h, to) => {
    calls.push([h.pseudo.length, to]);
    assert.ok(to > h.pseudo.length, 'a candidate is never scored twice on the same prompts');
    while (h.pseudo.length < to) {
      h.pseudo.push(truth(h.slot) + (rnd() - 0.5) * 0.05);
      h.kl.push(overKl(h.slot) ? 0.5 : 0.05);
      measured++;
    }
  });
  assert.deepEqual(
    r.rungs.map((x) => [x.n, x.candidates]),
    [
      [4, 90],
      [8, 30],
      [16, 10],
      [32, 4],
    ],
  );
  assert.equal(r.full.length + r.dropped.length, 90);
  for (const h of r.full) assert.equal(h.pseudo.length, 32);
  // 90·4 + 30·4 + 10·8 + 4·16 prompts: a fifth of scoring all 90 on 32.
  assert.equal(measured, 90 * 4 + 30 * 4 + 10 * 8 + 4 * 16);
  assert.ok(measured < (90 * 32) / 4);
  // The lowest true score within the KL limit (candidate 1) survives and ranks first; no over-limit one survives.
  assert.equal(truth(r.full[0]!.slot), 1 / 90);
  assert.ok(r.full.every((h) => !overKl(h.slot)));
  // The fallback walks the halved-out candidates from the latest rung down, best estimate first within a rung.
  const order = fallbackOrder(r.dropped, 0.2);
  assert.equal(order.length, 86);
  assert.deepEqual(
    [order[0]!.pseudo.length, order[5]!.pseudo.length, order[6]!.pseudo.length, order[25]!.pseudo.length],
    [16, 16, 8, 8],
  );
  assert.equal(order[26]!.pseudo.length, 4);
  assert.deepEqual(order.slice(0, 6), rankScorings(order.slice(0, 6), 0.2));
  // An over-limit candidate ranks after every within-limit one whatever its score.
  const mk = (score: number, kl: number): Scoring => ({ slot: slots[0]!, pseudo: [score], kl: [kl] });
  const ranked = rankScorings([mk(-5, 0.3), mk(0.4, 0.1), mk(-0.1, 0.2)], 0.2);
  assert.deepEqual(
    ranked.map((h) => h.pseudo[0]),
    [-0.1, 0.4, -5],
  );
});

test('select --search halving on a real run: the exhaustive pick, fewer forward passes, estimates marked', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-halving-'));
  const ex = path.join(tmp, 'exhaustive');
  // n-val 16 and no pruning: 24 candidates on the project's model, enough for three rungs (4, 8, 16 prompts).
  const flags = ['--n-train', '16', '--n-val', '16', '--prune', '0', '--quiet'];
  runScalpel('extract', '--model', TINY_CHAT, '--out', ex, ...flags);
  const hv = path.join(tmp, 'halving');
  fs.cpSync(ex, hv, { recursive: true });
  runScalpel('select', '--run', ex, ...flags);
  runScalpel('select', '--run', hv, ...flags, '--search', 'halving');
  const read = (dir: string, f: string) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
  const [selEx, selHv] = [read(ex, 'selection.json'), read(hv, 'selection.json')];
  assert.deepEqual([selHv.chosen.position, selHv.chosen.layer], [selEx.chosen.position, selEx.chosen.layer]);
  // The chosen candidate was scored on every prompt: its figures are the exhaustive sweep's, to float precision.
  assert.ok(Math.abs(selHv.chosen.refusal_score - selEx.chosen.refusal_score) < 1e-5);
  assert.ok(Math.abs(selHv.chosen.kl - selEx.chosen.kl) < 1e-5);
  const passes = (dir: string) => read(dir, 'run.json').stages.select.prompt_prefills as number;
  assert.ok(passes(hv) < passes(ex), `halving ${passes(hv)} vs exhaustive ${passes(ex)} prompt passes`);
  assert.deepEqual(
    selHv.rules.search.rungs.map((x: { n: number }) => x.n),
    [4, 8, 16],
  );
  const dropped = selHv.candidates.filter((c: { rejected: string | null }) => c.rejected?.startsWith('halved out'));
  assert.ok(dropped.length > 0);
  for (const c of dropped) assert.equal(typeof c.refusal_score, 'number');
  // The search is part of the select stage's key: the same search again is skipped, the other one recomputes.
  const rerun = (...extra: string[]) => runScalpel('select', '--run', hv, ...flags.slice(0, -1), ...extra).err;
  assert.match(rerun('--search', 'halving'), /select: already done with these settings/);
  assert.doesNotMatch(rerun('--search', 'exhaustive'), /select: already done/);
  // When no survivor passes the rules, the halved-out candidates are scored in full before giving up: with a KL
  // limit of 0 nothing passes, and every row then holds full-n figures, none an estimate.
  const none = spawnSync(
    process.execPath,
    [BIN, 'select', '--run', hv, ...flags, '--search', 'halving', '--kl-threshold', '0'],
    { encoding: 'utf8' },
  );
  assert.equal(none.status, 1, none.stderr);
  assert.match(none.stderr, /no candidate passes the rules/);
  const rows = read(hv, 'selection.json').candidates.filter((c: { kl: number | null }) => c.kl !== null);
  assert.equal(rows.length, selEx.candidates.filter((c: { kl: number | null }) => c.kl !== null).length);
  assert.ok(rows.every((c: { rejected: string }) => /^KL /.test(c.rejected)));
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('bad --search: one line naming the flag', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-halving-flags-'));
  const out = path.join(tmp, 'run');
  for (const [args, pattern] of [
    [['--search', 'random'], /^scalpel: --search random: expected exhaustive or halving$/],
    [
      ['--search', 'halving', '--target', 'true'],
      /^scalpel: --search halving: ranks candidates by the pseudo-harmful score; use it with --target false$/,
    ],
  ] as [string[], RegExp][]) {
    const r = spawnSync(process.execPath, [BIN, 'run', '--model', TINY_CHAT, '--out', out, ...args], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
    assert.match(r.stderr.trimEnd(), pattern);
    assert.ok(!fs.existsSync(out));
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});
