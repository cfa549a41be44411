// The short version of `npm run fuzz` (test/fuzz/): every target, a few dozen cases each with the same fixed seed,
// each target in its own watched process. A failure here prints the case and the command that replays it. The hang
// bound is the 2 s, counted in the case's CPU time, so a busy machine does not trip it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TARGETS } from './fuzz/targets.js';
import { fuzzTable, runFuzz } from './fuzz/runner.js';

const CASES = 60;
const CLI_CASES = 4;

test(`fuzz: every target, ${CASES} cases each (${CLI_CASES} for the CLI on mutated model folders), no failures`, async () => {
  const rows = await runFuzz({
    targets: TARGETS.map((t) => ({ name: t.name, cases: t.fullCases ? CLI_CASES : CASES })),
    seed: 16,
    hangMs: 2000,
    memoryMb: 2048,
    parallel: 2,
  });
  const failures = rows.flatMap((r) =>
    r.failures.map(
      (f) =>
        `${r.target} case ${f.case}: ${f.why}\n  input: ${f.input ?? '?'}\n  replay: node dist/test/fuzz/child.js ${r.target} 16 ${f.case} ${f.case + 1}`,
    ),
  );
  assert.deepEqual(failures, [], `\n${fuzzTable(rows)}\n${failures.join('\n')}`);
  assert.equal(rows.length, TARGETS.length);
});
