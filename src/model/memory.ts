// Is there memory for a model? Checked before its weights are read, so a model that cannot fit fails at once with
// one line and the numbers, instead of swapping the machine to a halt or meeting the OOM killer minutes later.
// The need: the weight files' bytes (they are read whole; the engine keeps views into them) plus the KV cache of
// one sequence as long as the model's context (up to KV_POSITIONS). The room: the memory the kernel says is
// available, or less under a cgroup (container) limit; $SCALPEL_MEMORY_LIMIT_BYTES replaces both (to run a model
// the estimate refuses, or to try the check on a small model).
import * as fs from 'node:fs';
import * as os from 'node:os';
import type { ModelArgs } from '../engine/args.js';
import { ScalpelError } from '../errors.js';
import { findWeightFiles } from './files.js';

/** Positions of KV cache counted in the need: one long sequence, or many short ones. */
export const KV_POSITIONS = 4096;

export interface MemoryNeed {
  weightBytes: number;
  kvBytes: number;
  kvPositions: number;
  total: number;
}

export interface MemoryRoom {
  bytes: number;
  /** Where the number comes from, for the message. */
  source: string;
}

/** What loading `dir` will take, from its weight files' sizes and its shape; null when its weights cannot be found. */
export function memoryNeed(dir: string, args: ModelArgs): MemoryNeed | null {
  let files: string[];
  try {
    files = findWeightFiles(dir).files;
  } catch {
    return null; // the loader reports a missing or broken weight file with its own message
  }
  let weightBytes = 0;
  for (const f of files) {
    try {
      weightBytes += fs.statSync(f).size;
    } catch {
      return null;
    }
  }
  const kvPositions = Math.min(args.contextLength ?? KV_POSITIONS, KV_POSITIONS);
  const kvBytes = 2 * args.numLayers * args.numKvHeads * args.headDim * 4 * kvPositions;
  return { weightBytes, kvBytes, kvPositions, total: weightBytes + kvBytes };
}

/** The cgroup v2 limit and usage of this process's group, when one is set. */
function cgroupRoom(): number | null {
  const limit = process.constrainedMemory?.() ?? 0;
  if (!(limit > 0) || limit >= 2 ** 60) return null;
  let used = process.memoryUsage().rss;
  try {
    used = Number(fs.readFileSync('/sys/fs/cgroup/memory.current', 'utf8').trim()) || used;
  } catch {
    /* cgroup v1 or no access: this process's own use is the best we know */
  }
  return Math.max(0, limit - used);
}

/** How much memory a model may take now. */
export function memoryRoom(env: NodeJS.ProcessEnv = process.env): MemoryRoom {
  const forced = env['SCALPEL_MEMORY_LIMIT_BYTES'];
  if (forced !== undefined && forced.trim() !== '') {
    const n = Number(forced);
    if (!/^\d+$/.test(forced.trim()) || !Number.isSafeInteger(n))
      throw new ScalpelError(`SCALPEL_MEMORY_LIMIT_BYTES=${JSON.stringify(forced)}: expected a whole number of bytes`);
    return { bytes: n, source: 'SCALPEL_MEMORY_LIMIT_BYTES' };
  }
  const free = os.freemem(); // MemAvailable on Linux: free memory plus what the page cache can give back
  const cgroup = cgroupRoom();
  return cgroup !== null && cgroup < free
    ? { bytes: cgroup, source: 'left under the cgroup memory limit' }
    : { bytes: free, source: 'available memory' };
}

const gib = (bytes: number) =>
  bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** Throws a one-line ScalpelError, with the numbers, when the model at `dir` cannot fit in the memory there is. */
export function checkMemory(dir: string, args: ModelArgs, env: NodeJS.ProcessEnv = process.env): void {
  const need = memoryNeed(dir, args);
  if (!need) return;
  const room = memoryRoom(env);
  if (need.total <= room.bytes) return;
  throw new ScalpelError(
    `${dir}: the model needs about ${gib(need.total)} (weights ${gib(need.weightBytes)} + KV cache ${gib(need.kvBytes)} for ${need.kvPositions} positions), more than the ${gib(room.bytes)} ${room.source}; free memory, use a smaller model, or set SCALPEL_MEMORY_LIMIT_BYTES to override`,
  );
}
