// CPU time of a process's main (JavaScript) thread from /proc: the fuzz runner's measure of how long a case took,
// independent of how busy the machine is.
import * as fs from 'node:fs';

/**
 * Clock ticks per second of /proc's CPU times (USER_HZ). The kernel fixes it at 100 for user space on every
 * architecture Node runs on (it is only configurable inside the kernel), so it is not looked up.
 */
const TICKS_PER_SECOND = 100;

/** CPU time (user + system) of process `pid`'s main thread, in ms; NaN when it cannot be read (not Linux, exited). */
export function mainThreadCpuMs(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
    // The fields after the command name (in parentheses, and it may hold spaces): state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return Number.NaN;
  }
}
