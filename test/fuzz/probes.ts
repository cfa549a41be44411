// Targets that misbehave on purpose, on case 1 only: the fuzz runner's own test (test/fuzz-runner.test.ts) checks
// that each is reported as a failure of that case, for the right reason, and that the cases after it still run.
// They are not in TARGETS, so `npm run fuzz` never runs them.
import fc from 'fast-check';
import type { Target } from './targets.js';

const onCaseOne = (misbehave: () => Promise<void> | void): Target<number> => ({
  name: '',
  about: 'watchdog probe',
  async setup() {
    let i = 0;
    return {
      arbitrary: fc.constant(0),
      async run() {
        if (i++ === 1) await misbehave();
      },
    };
  },
});

export const PROBES: readonly Target<never>[] = [
  { ...onCaseOne(() => {}), name: 'probe:clean' },
  {
    ...onCaseOne(() => {
      for (;;); // a busy loop: CPU time grows
    }),
    name: 'probe:spin',
  },
  {
    // Blocked forever without using CPU (a timer keeps the process alive).
    ...onCaseOne(() => new Promise<void>(() => setInterval(() => {}, 1000))),
    name: 'probe:stall',
  },
  {
    ...onCaseOne(() => {
      process.kill(process.pid, 'SIGSEGV');
    }),
    name: 'probe:signal',
  },
  {
    ...onCaseOne(async () => {
      // Outside the JS heap, so only the resident-memory watch can see it; paced so the watch (every 100 ms) stops
      // it a few hundred MiB past the limit rather than gigabytes.
      const hold: Buffer[] = [];
      for (;;) {
        hold.push(Buffer.alloc(64 * 1024 * 1024, 1));
        await new Promise((r) => setTimeout(r, 50));
      }
    }),
    name: 'probe:memory',
  },
  {
    ...onCaseOne(() => {
      throw new TypeError('not a ScalpelError');
    }),
    name: 'probe:throw',
  },
] as unknown as Target<never>[];
