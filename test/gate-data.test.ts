// The gate's prompt sources (src/method/gate-data.ts) on the shared data directory: every source is accounted for,
// fitted, missing or left empty, and what each one keeps is pinned, so a change to a source's definition (such as
// reading a named set of datasets.ts instead of a file spec of its own) shows as a changed count.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DATASETS, findDataset } from '../src/method/datasets.js';
import { HARMFUL_SOURCES, PSEUDO_SOURCES, loadGateData } from '../src/method/gate-data.js';
import { ROOT } from './support/cli.js';

const DATA = path.resolve(ROOT, '..', 'shared', 'datasets', 'raw');
const skip = fs.existsSync(DATA) ? false : `no shared data at ${DATA}`;
const labels = [...HARMFUL_SOURCES, ...PSEUDO_SOURCES].map((s) => s.label);

test('with the shared data: every source considered, in order, with what it kept (train, val, dropped)', {
  skip,
}, () => {
  const data = loadGateData(DATA, 0);
  const rows = data.considered.map((s) => [s.label, s.class, s.set, s.status, s.train, s.val, s.dropped]);
  // MaliciousInstruct and TDC 2023 are empty: all their rows are in harmful-train, harmful-val (read first) or
  // harmful-test (excluded).
  assert.deepEqual(rows, [
    ['harmful-train', 'harmful', 'harmful-train', 'fitted', 259, 39, 1],
    ['builtin-harmful-train', 'harmful', 'builtin-harmful-train', 'fitted', 128, 32, 0],
    ['advbench', 'harmful', 'advbench', 'fitted', 296, 74, 150],
    ['or-bench-toxic (without its test rows)', 'harmful', 'or-bench-toxic-val', 'fitted', 320, 111, 0],
    ['malicious-instruct', 'harmful', 'malicious-instruct', 'empty', 0, 0, 100],
    ['tdc2023-dev', 'harmful', 'tdc2023-dev', 'empty', 0, 0, 50],
    ['tdc2023-test', 'harmful', 'tdc2023-test', 'empty', 0, 0, 50],
    ['or-bench-hard-train', 'pseudo', 'or-bench-hard-train', 'fitted', 320, 132, 0],
    ['builtin-pseudo-harmful-train', 'pseudo', 'builtin-pseudo-harmful-train', 'fitted', 128, 32, 0],
    ['oktest-heldout', 'pseudo', 'oktest-heldout', 'fitted', 32, 8, 10],
  ]);
  // The fitted ones are exactly the sets the gate learns from, with the same counts.
  const fitted = data.considered.filter((s) => s.status === 'fitted');
  assert.deepEqual(
    [...data.harmful, ...data.pseudo].map((s) => [s.label, s.train.length, s.val.length, s.dropped]),
    fitted.map((s) => [s.label, s.train, s.val, s.dropped]),
  );
  assert.deepEqual(data.missing, []);
});

test('without a data directory: the built-in sets are fitted and every public source is listed as missing', () => {
  const data = loadGateData(undefined, 0);
  assert.deepEqual(
    data.considered.map((s) => s.label),
    labels,
  );
  const status = Object.fromEntries(data.considered.map((s) => [s.label, s.status]));
  for (const label of labels) assert.equal(status[label], label.startsWith('builtin-') ? 'fitted' : 'missing', label);
  assert.deepEqual(
    data.missing,
    labels.filter((l) => !l.startsWith('builtin-')),
  );
});

test('a source that is also a named set reads it; any other reads a file no named set reads', () => {
  for (const src of [...HARMFUL_SOURCES, ...PSEUDO_SOURCES]) {
    const named = findDataset(src.spec.name);
    if (named) assert.equal(src.spec, named, src.label);
    else
      assert.ok(
        !DATASETS.some((d) => d.file === src.spec.file),
        `${src.label}: ${src.spec.file} is a named set's file`,
      );
  }
});
