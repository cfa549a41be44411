// PythonRandom against CPython itself: test/fixtures/python-random.json holds what CPython's `random` returned for
// the same seeds and calls (tools/make_python_random_fixture.py).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'node:test';
import { PythonRandom } from '../src/rng.js';
import { ROOT } from './support/cli.js';

interface SeedCase {
  seed: string;
  getrandbits32: number[];
  getrandbits: [number, number][];
  random: number[];
  samples: { n: number; k: number; result: number[] }[];
  paper_order: number[][];
}
const fixture = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/python-random.json'), 'utf8')) as {
  python: string;
  seeds: SeedCase[];
};
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

test('PythonRandom: seed, getrandbits, random and sample equal CPython on both sample paths', () => {
  assert.ok(fixture.seeds.length >= 9);
  for (const c of fixture.seeds) {
    // Seeds are strings in the fixture: 2^64 + 3 is not a double.
    const r = new PythonRandom(BigInt(c.seed));
    const at = `seed ${c.seed}`;
    assert.deepEqual(
      c.getrandbits32.map(() => r.getrandbits(32)),
      c.getrandbits32,
      `${at}: getrandbits(32)`,
    );
    for (const [k, v] of c.getrandbits) assert.equal(r.getrandbits(k), v, `${at}: getrandbits(${k})`);
    for (const v of c.random) assert.equal(r.random(), v, `${at}: random()`);
    for (const s of c.samples)
      assert.deepEqual(r.sample(range(s.n), s.k), s.result, `${at}: sample(range(${s.n}), ${s.k})`);
    const p = new PythonRandom(BigInt(c.seed));
    const sizes = [
      [1000, 128],
      [18793, 128],
      [260, 128],
      [200, 32],
      [5000, 32],
      [41, 32],
    ] as const;
    assert.deepEqual(
      sizes.map(([n, k]) => p.sample(range(n), k)),
      c.paper_order,
      `${at}: the paper's six draws from one generator`,
    );
  }
});

test('PythonRandom: refuses what CPython refuses', () => {
  const r = new PythonRandom(1);
  assert.throws(() => r.sample([1, 2, 3], 4), RangeError);
  assert.throws(() => r.getrandbits(33), RangeError);
});
