// Kill-and-resume (issue 16): `scalpel run`, `sweep`, `bake`, `datasets fetch` (from the raw-file stand-in on
// 127.0.0.1) and a model download (`generate --model org/name` from the Hub stand-in), each SIGKILLed at seeded
// random points and rerun: every rerun must give outputs byte-identical to an uninterrupted run, no file may ever be
// partial under its final name, and no temp file may be left behind (test/support/kill-resume.ts). npm test tries
// SCALPEL_KILL_POINTS (default 2) points per command; `npm run resilience` tries 20 and prints the figures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ROOT, runScalpel, smallRunArgs } from './support/cli.js';
import { startHubServer } from './support/hub-server.js';
import { formatReport, killAndResume, type KillCase } from './support/kill-resume.js';
import { startRawServer } from './support/raw-server.js';

const POINTS = Number(process.env['SCALPEL_KILL_POINTS'] ?? 2);
const SEED = 16;
const RAW = path.join(ROOT, '..', 'shared', 'datasets', 'raw');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-kill-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A small evaluation after the small run's flags, so one uninterrupted run takes seconds. */
const RUN_EXTRA = ['--eval', 'builtin-pseudo-harmful-test:8,builtin-harmless-test:8', '--quiet'];

async function check(c: KillCase, t: { diagnostic(s: string): void }): Promise<void> {
  const r = await killAndResume(c, POINTS, SEED);
  t.diagnostic(formatReport(r));
  if (process.env['SCALPEL_KILL_POINTS']) console.log(formatReport(r));
  assert.deepEqual(r.problems, []);
  assert.equal(r.identical, POINTS);
}

test('scalpel run: killed anywhere and rerun, it resumes to the same run directory', async (t) => {
  const out = path.join(tmp, 'run');
  await check({ name: 'run', args: smallRunArgs(out, RUN_EXTRA), outputs: [out] }, t);
});

test('scalpel sweep: killed anywhere and rerun, it resumes to the same figures and responses', async (t) => {
  const template = path.join(tmp, 'sweep-template');
  runScalpel(...smallRunArgs(template, RUN_EXTRA));
  const run = path.join(tmp, 'sweep-run');
  await check(
    {
      name: 'sweep',
      args: ['sweep', '--run', run, '--lambda', '0,0.5,1', '--quiet'],
      outputs: [run],
      reset: () => fs.cpSync(template, run, { recursive: true }),
    },
    t,
  );
});

test('scalpel bake: killed anywhere and rerun, it writes the same model folder and leaves no temp folder', async (t) => {
  const run = path.join(tmp, 'bake-source');
  runScalpel(...smallRunArgs(run, ['--eval', 'builtin-harmless-test:2', '--quiet']));
  const out = path.join(tmp, 'baked');
  await check({ name: 'bake', args: ['bake', '--run', run, '--out', out, '--quiet'], outputs: [out] }, t);
});

test('scalpel datasets fetch: killed anywhere and rerun, the cache holds the same verified files', async (t) => {
  const server = await startRawServer(RAW);
  // Slow enough that kills land in the middle of files, not only before and after them.
  server.slow = { chunk: 32 * 1024, delayMs: 4 };
  try {
    const cache = path.join(tmp, 'datasets-cache');
    await check(
      {
        name: 'datasets fetch',
        args: ['datasets', 'fetch'],
        env: { SCALPEL_CACHE: cache, SCALPEL_DATASETS_ENDPOINT: server.url },
        outputs: [cache],
      },
      t,
    );
  } finally {
    await server.close();
  }
});

test('a model download (generate --model org/name): killed anywhere and rerun, the same cache and the same tokens', async (t) => {
  const repo = 'test-org/tiny-llama';
  const server = await startHubServer([{ repo, dir: path.join(ROOT, 'test/fixtures/models/llama') }]);
  server.faults.push({ kind: 'slow', file: 'model.safetensors', chunk: 16 * 1024, delayMs: 8 });
  try {
    const cache = path.join(tmp, 'hub-cache');
    await check(
      {
        name: 'model download',
        args: ['generate', '--model', repo, '--prompt', 'hi', '--max-new-tokens', '8', '--json'],
        env: { HF_ENDPOINT: server.url, HF_HUB_CACHE: cache },
        outputs: [cache],
        compareStdout: true,
      },
      t,
    );
  } finally {
    await server.close();
  }
});
