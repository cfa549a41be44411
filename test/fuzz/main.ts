// `npm run fuzz`: every target with 10,000 cases (fewer for the one that spawns a process per case), a fixed seed,
// then the table and each failure with the command that replays it.
//   npm run fuzz -- [--seed N] [--cases N] [--only NAME[,NAME]] [--hang-ms CPU_MS] [--stall-ms MS] [--parallel N]
import { parseArgs } from 'node:util';
import { TARGETS } from './targets.js';
import { fuzzTable, runFuzz } from './runner.js';

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: '16' },
    cases: { type: 'string' },
    only: { type: 'string' },
    'hang-ms': { type: 'string', default: '2000' },
    'stall-ms': { type: 'string', default: '60000' },
    'memory-mb': { type: 'string', default: '2048' },
    parallel: { type: 'string', default: '2' },
  },
});
const only = values.only?.split(',');
const targets = TARGETS.filter((t) => !only || only.includes(t.name)).map((t) => ({
  name: t.name,
  cases: values.cases !== undefined ? Number(values.cases) : (t.fullCases ?? 10_000),
}));
if (targets.length === 0) {
  process.stderr.write(`no such target; targets: ${TARGETS.map((t) => t.name).join(', ')}\n`);
  process.exit(2);
}
const seed = Number(values.seed);
const rows = await runFuzz({
  targets,
  seed,
  hangMs: Number(values['hang-ms']),
  stallMs: Number(values['stall-ms']),
  memoryMb: Number(values['memory-mb']),
  parallel: Number(values.parallel),
  onRow: (r) =>
    process.stderr.write(`${r.target}: ${r.cases} cases, ${r.failures.length} failures, ${r.seconds.toFixed(1)} s\n`),
});
process.stdout.write(`fuzz, seed ${seed}\n${fuzzTable(rows)}\n`);
for (const r of rows)
  for (const f of r.failures)
    process.stdout.write(
      `\n${r.target} case ${f.case}: ${f.why}\n  input: ${f.input ?? '(see the case)'}\n  ${f.stack ?? ''}\n  replay: node dist/test/fuzz/child.js ${r.target} ${seed} ${f.case} ${f.case + 1}\n`,
    );
process.exitCode = rows.some((r) => r.failures.length > 0) ? 1 : 0;
