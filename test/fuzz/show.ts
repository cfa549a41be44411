// Prints the input of one fuzz case: `node dist/test/fuzz/show.js TARGET SEED CASE` (for reading a failure).
import fc from 'fast-check';
import { caseSeed, preview } from './child.js';
import { TARGETS, tmpWork } from './targets.js';

const [name, seed, i] = process.argv.slice(2);
const target = TARGETS.find((t) => t.name === name)!;
const t = await target.setup(tmpWork(target.name));
process.stdout.write(
  `${preview(fc.sample(t.arbitrary, { seed: caseSeed(Number(seed), Number(i)), numRuns: 1 })[0])}\n`,
);
process.exit(0);
