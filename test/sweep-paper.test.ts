// Issue 14's sweep acceptance check: on a run of the project's model made with the paper's datasets, a 5-point λ
// sweep gives, per dataset (OR-Bench-hard test and JailbreakBench), the compliance of five separate
// `scalpel eval --run RUN --lambda x` calls, and costs fewer model forward calls than them (both counts are printed
// as test diagnostics). Sets are cut to their first 24 prompts and responses to 32 tokens to keep CI time small;
// the full-size figures are in the sweep branch's closing note.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import type { EvalResult } from '../src/method/evaluate.js';
import type { SweepJson } from '../src/method/sweep.js';
import { BIN, ROOT, TINY_CHAT } from './support/cli.js';

const DATA = path.join(ROOT, '../shared/datasets/raw');
const SETS = ['or-bench-hard-test:24', 'jbb-harmful:24'];
const LAMBDAS = [0, 0.25, 0.5, 0.75, 1];

function scalpel(...args: string[]): { out: string; err: string } {
  const env = { ...process.env };
  delete env['SCALPEL_DATA'];
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', env });
  assert.equal(r.status, 0, `scalpel ${args.join(' ')}: ${r.stderr}`);
  return { out: r.stdout, err: r.stderr };
}

test('a 5-point λ sweep equals five separate evals on the paper datasets, with fewer model forward calls', (t) => {
  if (!fs.existsSync(DATA)) {
    t.skip(`no public datasets at ${DATA}`);
    return;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-sweep-paper-'));
  const run = path.join(tmp, 'run');
  try {
    scalpel(
      'run',
      '--model',
      TINY_CHAT,
      '--out',
      run,
      '--data-dir',
      DATA,
      '--eval',
      SETS.join(','),
      '--max-new-tokens',
      '32',
      '--quiet',
    );
    const swept = scalpel('sweep', '--run', run, '--lambda', LAMBDAS.join(','));
    const sweep = JSON.parse(fs.readFileSync(path.join(run, 'sweep.json'), 'utf8')) as SweepJson;
    assert.match(swept.err, /generating 5 settings together/);

    let evalPasses = 0;
    let evalCalls = 0;
    for (const lambda of LAMBDAS) {
      const r = scalpel('eval', '--run', run, '--lambda', String(lambda), '--dataset', ...SETS, '--json');
      const m = /eval: [\d.]+s, (\d+) forward passes, (\d+) model forward calls/.exec(r.err);
      assert.ok(m, r.err);
      evalPasses += Number(m[1]);
      evalCalls += Number(m[2]);
      const results = (JSON.parse(r.out) as { results: EvalResult[] }).results;
      const point = sweep.points.find((p) => p.lambda === lambda);
      assert.ok(point, `λ = ${lambda} is in sweep.json`);
      for (const set of SETS) {
        const mine: EvalResult = point!.results.find((x) => x.dataset === set)!;
        const theirs = results.find((x) => x.dataset === set && x.condition === 'ablated')!;
        assert.equal(mine.n, 24);
        assert.equal(mine.compliance_rate, theirs.compliance_rate, `${set} at λ = ${lambda}`);
        const base = sweep.baseline.find((x) => x.dataset === set)!;
        const theirBase = results.find((x) => x.dataset === set && x.condition === 'baseline')!;
        assert.equal(base.compliance_rate, theirBase.compliance_rate, `${set} baseline`);
      }
    }
    t.diagnostic(
      `forward passes (prefills + decode steps): sweep ${sweep.cost.forward_passes}, five evals ${evalPasses}; ` +
        `model forward calls: sweep ${sweep.cost.model_forward_calls}, five evals ${evalCalls}`,
    );
    // Both reuse the run's baselines, so every sequence is generated once either way: the sweep's saving is that
    // its settings share forward calls (each call reads the weights once for every setting's rows).
    assert.equal(sweep.cost.separate_eval_forward_passes_estimate, evalPasses);
    assert.ok(sweep.cost.forward_passes <= evalPasses);
    assert.ok(
      sweep.cost.model_forward_calls < evalCalls,
      `model forward calls: sweep ${sweep.cost.model_forward_calls}, evals ${evalCalls}`,
    );
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
