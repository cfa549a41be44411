// The report's statistics against statsmodels (tools/make_stats_fixture.py): Wilson 95% intervals and exact McNemar
// p-values agree to 1e-12 on counts from empty to large and lopsided; plus the properties a reader relies on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mcnemarExact, wilsonInterval } from '../src/method/stats.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const ref = JSON.parse(fs.readFileSync(path.join(root, 'test/fixtures/expected/stats/stats.json'), 'utf8')) as {
  wilson_95: { k: number; n: number; lo: number; hi: number }[];
  mcnemar_exact: { b: number; c: number; p: number }[];
};

const close = (got: number, want: number, what: string) =>
  assert.ok(Math.abs(got - want) <= 1e-12 * Math.max(1, Math.abs(want)), `${what}: got ${got}, statsmodels ${want}`);

test('Wilson 95% intervals equal statsmodels proportion_confint(method="wilson")', () => {
  assert.ok(ref.wilson_95.length >= 10);
  for (const { k, n, lo, hi } of ref.wilson_95) {
    const got = wilsonInterval(k, n)!;
    close(got.lo, lo, `lo(${k}/${n})`);
    close(got.hi, hi, `hi(${k}/${n})`);
    assert.ok(got.lo <= k / n && k / n <= got.hi, `${k}/${n} inside its interval`);
  }
});

test('Wilson: nothing measured has no interval; a count outside [0, n] is a bug', () => {
  assert.equal(wilsonInterval(0, 0), null);
  assert.throws(() => wilsonInterval(5, 4), RangeError);
});

test('exact McNemar p-values equal statsmodels mcnemar(exact=True)', () => {
  assert.ok(ref.mcnemar_exact.length >= 10);
  for (const { b, c, p } of ref.mcnemar_exact) close(mcnemarExact({ b, c }), p, `mcnemar(${b}, ${c})`);
});

test('exact McNemar: symmetric in b and c, 1 with no change, finite for thousands of pairs', () => {
  assert.equal(mcnemarExact({ b: 0, c: 0 }), 1);
  assert.equal(mcnemarExact({ b: 9, c: 2 }), mcnemarExact({ b: 2, c: 9 }));
  // Textbook: 6 discordant pairs all one way give 2 · 2^-6.
  close(mcnemarExact({ b: 6, c: 0 }), 2 / 64, 'mcnemar(6, 0)');
  const big = mcnemarExact({ b: 1500, c: 1400 });
  assert.ok(big > 0 && big < 1, `p for 2,900 pairs: ${big}`);
});
