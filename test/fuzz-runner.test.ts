// The fuzz runner's watchdog (test/fuzz/runner.ts) on targets that misbehave on purpose (test/fuzz/probes.ts): each
// kind of failure the issue names (a hang, a stall, an exit by signal, memory over the bound, an error that is not a
// ScalpelError) must be reported as a failure of the case it happened on, and the cases after it must still run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runFuzz } from './fuzz/runner.js';

test('fuzz runner: every kind of failure is caught on its case, and the target goes on', async () => {
  const run = (probes: string[], hangMs: number, stallMs: number) =>
    runFuzz({
      targets: probes.map((name) => ({ name, cases: 3 })),
      seed: 1,
      hangMs,
      stallMs,
      memoryMb: 256,
      parallel: 2,
    });
  // Each probe runs with only its own bound tight: on a busy machine a spinning process gets a small share of a core
  // (so the wall-time bound must not trip first), and allocating also costs CPU time (so the CPU bound must not).
  const rows = [
    ...(await run(['probe:clean', 'probe:spin', 'probe:signal', 'probe:throw'], 500, 600_000)),
    ...(await run(['probe:memory'], 600_000, 600_000)),
    ...(await run(['probe:stall'], 600_000, 3000)),
  ];
  const verdicts = Object.fromEntries(rows.map((r) => [r.target, r.failures.map((f) => `${f.case}: ${f.why}`)]));
  assert.deepEqual(verdicts['probe:clean'], []);
  const expect = {
    'probe:spin': /^1: hang: case used over 500 ms of CPU time$/,
    'probe:stall': /^1: hang: case stalled over 3000 ms \(wall time\)$/,
    'probe:signal': /^1: process ended by SIGSEGV/,
    'probe:memory': /^1: memory: over 256 MiB resident$/,
    'probe:throw': /^1: TypeError: not a ScalpelError$/,
  };
  for (const [name, pattern] of Object.entries(expect)) {
    const v = verdicts[name]!;
    assert.equal(v.length, 1, `${name}: ${JSON.stringify(v)}`);
    assert.match(v[0]!, pattern, name);
  }
  // A case's CPU time is measured: the busy loop's case is the slowest of its target, over the bound.
  assert.ok(rows.find((r) => r.target === 'probe:spin')!.slowestCaseMs < 500, 'the killed case is not a finished one');
  assert.ok(rows.every((r) => Number.isFinite(r.slowestCaseMs)));
});
