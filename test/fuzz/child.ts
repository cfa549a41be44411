// One fuzz target in its own process: `node child.js TARGET SEED FROM TO`. Case i's input is drawn from the
// target's arbitrary with a seed derived from (SEED, i), so any case can be replayed alone. Before each case it
// prints `S i ms` and after it `D i ms` (ms: this thread's CPU time so far); a failure prints `F {json}`; the end
// prints `END {json}`. The parent (runner.ts) watches the CPU time of the case in progress (hangs), the memory of
// this process, and how it exits (signals).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { ScalpelError } from '../../src/errors.js';
import { hasRawControls } from '../support/controls.js';
import { mainThreadCpuMs } from './cpu.js';
import { PROBES } from './probes.js';
import { TARGETS, tmpWork } from './targets.js';

/** The seed of case `i`: a fixed mix of the run's seed and the case number. */
export function caseSeed(seed: number, i: number): number {
  let h = (seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  return (h ^ (h >>> 13)) >>> 0;
}

/** A short, printable picture of an input for the failure list. */
export function preview(input: unknown): string {
  const show = (v: unknown): unknown =>
    v instanceof Uint8Array
      ? `<${v.length} bytes: ${JSON.stringify(Buffer.from(v.subarray(0, 160)).toString('latin1'))}${v.length > 160 ? '…' : ''}>`
      : Array.isArray(v)
        ? v.map(show)
        : v && typeof v === 'object'
          ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, show(x)]))
          : v;
  const text = JSON.stringify(show(input)) ?? String(input);
  return text.length > 600 ? `${text.slice(0, 600)}…` : text;
}

/** Why an outcome is a failure, or null when it is a clean rejection. */
export function judge(err: unknown): string | null {
  if (err instanceof ScalpelError) {
    if (/[\n\r]/.test(err.message))
      return `ScalpelError on several lines: ${JSON.stringify(err.message.slice(0, 300))}`;
    if (hasRawControls(err.message))
      return `ScalpelError with raw control characters: ${JSON.stringify(err.message.slice(0, 300))}`;
    return null;
  }
  const e = err as Error;
  return `${e?.constructor?.name ?? typeof err}: ${String(e?.message ?? err)
    .split('\n')[0]!
    .slice(0, 300)}`;
}

async function main(): Promise<void> {
  const [name, seedText, fromText, toText] = process.argv.slice(2);
  const target = [...TARGETS, ...PROBES].find((t) => t.name === name);
  if (!target) throw new Error(`no fuzz target ${name}`);
  const seed = Number(seedText);
  const from = Number(fromText);
  const to = Number(toText);
  const work = tmpWork(target.name);
  const failuresDir = path.join(work, '..', 'scalpel-fuzz-failures');
  let failures = 0;
  let accepted = 0;
  try {
    const t = await target.setup(work);
    for (let i = from; i < to; i++) {
      const input = fc.sample(t.arbitrary, { seed: caseSeed(seed, i), numRuns: 1 })[0];
      process.stdout.write(`S ${i} ${mainThreadCpuMs(process.pid)}\n`);
      try {
        await t.run(input as never);
        accepted++;
      } catch (err) {
        const why = judge(err);
        if (why !== null) {
          failures++;
          fs.mkdirSync(failuresDir, { recursive: true });
          const saved = path.join(failuresDir, `${target.name.replace(/[^\w-]/g, '_')}-${seed}-${i}.json`);
          fs.writeFileSync(saved, JSON.stringify({ target: target.name, seed, case: i, input: preview(input) }));
          process.stdout.write(
            `F ${JSON.stringify({ case: i, why, input: preview(input), stack: (err as Error)?.stack?.split('\n').slice(1, 4).join(' | ') })}\n`,
          );
        }
      }
      process.stdout.write(`D ${i} ${mainThreadCpuMs(process.pid)}\n`);
    }
    await t.close?.();
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  process.stdout.write(`END ${JSON.stringify({ failures, accepted })}\n`);
  process.exit(0);
}

// Run when started as a process (show.ts and the tests import the helpers above).
if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
