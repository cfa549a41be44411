// Runs fuzz targets, each in child processes of its own (child.ts), and watches them: a case that spends more than
// `hangMs` of CPU time on the child's JavaScript thread (or sits for `stallMs` of wall time, blocked), a process over
// `memoryMb` of resident memory, or one that dies (a signal, a crash) is a failure of the case it was on; the target
// then goes on from the next case in a fresh process.
//
// Why CPU time: the issue's bound is "a hang over 2 s", a property of the input, not of how busy the machine is. On
// this 2-core machine with a dozen other processes a case worth 0.1 s of CPU took over 2 s of wall time, and wall
// time made such cases look like hangs. The main thread's CPU time (from /proc) measures the case's own work.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mainThreadCpuMs } from './cpu.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'child.js');

export interface FuzzOptions {
  targets: { name: string; cases: number }[];
  seed: number;
  /** A case spending more CPU time than this on the child's JavaScript thread is a hang (the issue's bound: 2 s). */
  hangMs: number;
  /** A case taking longer than this in wall time (while not over `hangMs` of CPU: blocked, waiting) is a hang too. */
  stallMs?: number;
  /** Resident memory above this is a failure (the issue's bound: 2 GiB). */
  memoryMb: number;
  /** Target processes at once. */
  parallel: number;
  /** Time a target's set-up may take before its first case. */
  setupMs?: number;
  onRow?: (row: FuzzRow) => void;
}

export interface FuzzFailure {
  case: number;
  why: string;
  input?: string;
  stack?: string;
}

export interface FuzzRow {
  target: string;
  cases: number;
  failures: FuzzFailure[];
  seconds: number;
  /** The most CPU time one case took on the child's JavaScript thread, in ms (0 when /proc cannot be read). */
  slowestCaseMs: number;
}

function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** One child over cases [from, to); resolves with the case it stopped at and why, when it did not finish. */
function runChild(
  name: string,
  o: FuzzOptions,
  from: number,
  to: number,
  failures: FuzzFailure[],
  slowest: { ms: number },
): Promise<{ next: number; done: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [`--max-old-space-size=${o.memoryMb}`, CHILD, name, String(o.seed), String(from), String(to)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, SCALPEL_KERNELS: process.env['SCALPEL_KERNELS'] ?? 'js' },
      },
    );
    let current = -1;
    let since = Date.now();
    // The child reads its own CPU time at the start and end of each case (`S i ms`, `D i ms`), so a case's cost is
    // exact however late this process gets to read the lines.
    let cpuAtStart = Number.NaN;
    let ended = false;
    let stopReason: string | null = null;
    let stderr = '';
    let buffered = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      let nl = buffered.indexOf('\n');
      while (nl >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.startsWith('S ')) {
          const [, i, ms] = line.split(' ');
          current = Number(i);
          since = Date.now();
          cpuAtStart = Number(ms);
        } else if (line.startsWith('D ')) {
          const used = Number(line.split(' ')[2]) - cpuAtStart;
          if (used > slowest.ms) slowest.ms = used;
          cpuAtStart = Number.NaN; // between cases: nothing to time
        } else if (line.startsWith('F ')) failures.push(JSON.parse(line.slice(2)) as FuzzFailure);
        else if (line.startsWith('END ')) ended = true;
        nl = buffered.indexOf('\n');
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-4000);
    });
    const stallMs = o.stallMs ?? 60_000;
    const overBudget = (): string | null => {
      if (current < 0) {
        const limit = o.setupMs ?? 300_000;
        return Date.now() - since > limit ? `set-up took over ${limit} ms` : null;
      }
      if (mainThreadCpuMs(child.pid ?? -1) - cpuAtStart > o.hangMs)
        return `hang: case used over ${o.hangMs} ms of CPU time`;
      if (!Number.isNaN(cpuAtStart) && Date.now() - since > stallMs)
        return `hang: case stalled over ${stallMs} ms (wall time)`;
      if (child.pid !== undefined && rssMb(child.pid) > o.memoryMb) return `memory: over ${o.memoryMb} MiB resident`;
      return null;
    };
    const stop = (why: string) => {
      stopReason = why;
      clearInterval(watch);
      child.kill('SIGKILL');
    };
    const watch = setInterval(() => {
      if (overBudget() === null || stopReason) return;
      // Timers run before this loop turn reads the child's pipe: when this process was starved, lines saying the
      // case ended may be waiting. setImmediate runs after they are read; only a verdict that holds then counts.
      setImmediate(() => {
        const why = overBudget();
        if (why && !stopReason) stop(why);
      });
    }, 100);
    child.on('close', (code, signal) => {
      clearInterval(watch);
      if (ended && code === 0) return resolve({ next: to, done: true });
      const why =
        stopReason ??
        `process ended by ${signal ?? `exit code ${code}`}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`;
      failures.push({ case: current, why });
      // A failure during set-up ends the target: no case can run.
      resolve({ next: current < 0 ? to : current + 1, done: current < 0 });
    });
  });
}

async function runTarget(name: string, cases: number, o: FuzzOptions): Promise<FuzzRow> {
  const t0 = Date.now();
  const failures: FuzzFailure[] = [];
  const slowest = { ms: 0 };
  let from = 0;
  while (from < cases) {
    const { next, done } = await runChild(name, o, from, cases, failures, slowest);
    if (done) break;
    from = next;
  }
  return { target: name, cases, failures, seconds: (Date.now() - t0) / 1000, slowestCaseMs: slowest.ms };
}

/** Runs every target, `parallel` at a time; rows come back in the order of `targets`. */
export async function runFuzz(o: FuzzOptions): Promise<FuzzRow[]> {
  const rows: FuzzRow[] = new Array(o.targets.length);
  let nextIndex = 0;
  const worker = async () => {
    while (nextIndex < o.targets.length) {
      const i = nextIndex++;
      const t = o.targets[i]!;
      rows[i] = await runTarget(t.name, t.cases, o);
      o.onRow?.(rows[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.parallel) }, worker));
  return rows;
}

/** The table `npm run fuzz` prints. */
export function fuzzTable(rows: FuzzRow[]): string {
  const head = ['target', 'cases', 'failures', 'seconds', 'slowest case (CPU ms)'];
  const body = rows.map((r) => [
    r.target,
    String(r.cases),
    String(r.failures.length),
    r.seconds.toFixed(1),
    r.slowestCaseMs.toFixed(0),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), ...body.map(line)].join('\n');
}
