// `scalpel stability` on a real small run of the project's model: two draws of the training/validation prompts,
// each re-extracted, re-selected and evaluated. Draw 0 is the run's own sample, so it must choose the run's site;
// the spread must be the draws' own figures; a rerun resumes every draw; the report shows the section.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pairwiseCosines, spreadOf, type StabilityJson } from '../src/method/stability.js';
import { BIN, makeSmallRun, ROOT, runScalpel } from './support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'scalpel-stability-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('stability --draws 2: a site per draw (draw 0 = the run), the spread of their figures, resumable, reported', () => {
  const run = join(dir, 'run');
  makeSmallRun(run);
  const sets = ['--dataset', 'builtin-pseudo-harmful-test:12', 'builtin-harmful-test:12'];
  const first = runScalpel('stability', '--run', run, '--draws', '2', ...sets);
  const doc = JSON.parse(readFileSync(join(run, 'stability.json'), 'utf8')) as StabilityJson;
  assert.equal(doc.format, 'scalpel-stability/1');
  const study = doc.studies.find((s) => s.study === 'as-run')!;
  assert.deepEqual(
    study.draws.map((d) => d.seed),
    [1, 2],
  );
  const runSel = JSON.parse(readFileSync(join(run, 'selection.json'), 'utf8')).chosen;
  assert.deepEqual(study.draws[0]!.site, { position: runSel.position, layer: runSel.layer }, 'draw 0 is the run');
  assert.ok(study.draws.every((d) => d.site !== null && d.forward_passes > 0));
  // The spread is the draws' own figures: max − min and the sample sd of the edited compliance per dataset.
  for (const ds of ['builtin-pseudo-harmful-test:12', 'builtin-harmful-test:12']) {
    const values = study.draws.map((d) => d.results.find((r) => r.dataset === ds)!.compliance_rate);
    const s = study.spread.compliance[ds]!;
    assert.equal(s.range, Math.max(...values) - Math.min(...values));
    assert.ok(Math.abs(s.sd - Math.abs(values[0]! - values[1]!) / Math.SQRT2) < 1e-12);
    const base = study.baseline.find((r) => r.dataset === ds)!.compliance_rate;
    assert.ok(Math.abs(study.spread.gain[ds]!.mean - (values[0]! + values[1]! - 2 * base) / 2) < 1e-12);
  }
  // One pair of draws: one cosine, between −1 and 1, below 1 (the draws differ).
  const cos = study.spread.direction_cosine!;
  assert.equal(cos.n, 1);
  assert.ok(cos.mean > -1 && cos.mean < 1 - 1e-6, `cosine ${cos.mean}`);
  const sites = study.draws.map((d) => `${d.site!.position}/${d.site!.layer}`);
  assert.equal(study.spread.distinct_sites, new Set(sites).size);
  assert.match(first.out, /stability \(as-run\), 2 draws: chosen site/);

  // A rerun finds every draw's stages done: nothing is recomputed.
  const again = runScalpel('stability', '--run', run, '--draws', '2', ...sets);
  assert.equal((again.err.match(/already done with these settings \(resumed\)/g) ?? []).length, 6);
  assert.deepEqual(
    JSON.parse(readFileSync(join(run, 'stability.json'), 'utf8')).studies[0].draws.map(
      (d: { site: unknown }) => d.site,
    ),
    study.draws.map((d) => d.site),
  );

  // Bad flags: one line each, nothing written.
  const before = readFileSync(join(run, 'stability.json'), 'utf8');
  for (const [flags, message] of [
    [['--draws', '0'], /^scalpel: --draws 0: expected an integer ≥ 1$/],
    [['--draws', '2', '--val-draws', '0'], /^scalpel: --val-draws 0: expected an integer ≥ 1$/],
  ] as const) {
    const r = spawnSync(process.execPath, [BIN, 'stability', '--run', run, ...flags, '--quiet'], {
      encoding: 'utf8',
      cwd: ROOT,
    });
    assert.equal(r.status, 1);
    assert.match(r.stderr.trimEnd(), message);
  }
  assert.equal(readFileSync(join(run, 'stability.json'), 'utf8'), before);

  const report = join(dir, 'report.html');
  runScalpel('report', run, '--out', report);
  const html = readFileSync(report, 'utf8');
  assert.match(html, /Spread over draws/);
  assert.ok(html.includes(`seed 2: ${sites[1]}`));
});

test('spread helpers: pairwise cosines and max − min / sample sd, by hand', () => {
  const c = pairwiseCosines([new Float32Array([1, 0]), new Float32Array([0, 2]), new Float32Array([3, 3])]);
  assert.deepEqual(
    c.map((x) => x.toFixed(6)),
    ['0.000000', (1 / Math.SQRT2).toFixed(6), (1 / Math.SQRT2).toFixed(6)],
  );
  // 0.30, 0.25, 0.19: range 0.11, mean 0.2467, sd √(((0.0533)² + (0.0033)² + (0.0567)²) / 2) = 0.05508.
  const s = spreadOf([0.3, 0.25, 0.19])!;
  assert.ok(Math.abs(s.range - 0.11) < 1e-12 && Math.abs(s.mean - 0.74 / 3) < 1e-12);
  assert.ok(Math.abs(s.sd - 0.055075705472861) < 1e-12, `${s.sd}`);
});
