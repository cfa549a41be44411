// The dependency rules of .dependency-cruiser.cjs (layer order, no cycles) hold on src/, and they do bite: the same
// config reports the upward import and the type-only cycle planted in test/fixtures/layers-bad/, a tree shaped like
// src/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';

const ROOT = process.cwd();
const DEPCRUISE = path.join(ROOT, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');
const CONFIG = path.join(ROOT, '.dependency-cruiser.cjs');

/**
 * Runs dependency-cruiser as `npm run deps` does, on `src` under `cwd` (the rules' paths are relative to it). Its
 * exit code is the number of violations; its report has one `error RULE: FROM → TO` line each.
 */
function cruise(cwd: string): { status: number | null; report: string } {
  const r = spawnSync(process.execPath, [DEPCRUISE, '--config', CONFIG, 'src'], { cwd, encoding: 'utf8' });
  return { status: r.status, report: r.stdout + r.stderr };
}

test('layers: src/ imports only downwards and has no import cycles', () => {
  const { status, report } = cruise(ROOT);
  assert.equal(status, 0, report);
  assert.match(report, /no dependency violations found/);
});

test('layers: the rules report an engine → cli import and a type-only cycle', () => {
  const { status, report } = cruise(path.join(ROOT, 'test/fixtures/layers-bad'));
  assert.equal(status, 2, report);
  assert.match(report, /error layer-engine: src\/engine\/forward\.ts → src\/cli\/flags\.ts/);
  assert.match(report, /error no-circular: src\/method\/(left|right)\.ts → \s+src\/method\/(left|right)\.ts →/);
});
