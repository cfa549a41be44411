// Files that Scalpel writes appear whole or not at all: write a temp file beside the target, fsync, rename.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ScalpelError } from '../errors.js';

/** Largest single write handed to the OS (Node refuses more than 2 GiB per call). */
const MAX_IO = 1 << 30;

function tempPathFor(target: string): string {
  const dir = path.dirname(target);
  return path.join(dir, `.${path.basename(target)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** The writer's process id in a temp name tempPathFor gave `target`, or null for any other name. */
function tempWriter(target: string): (name: string) => number | null {
  const prefix = `.${path.basename(target)}.tmp-`;
  return (name) => {
    const m = name.startsWith(prefix) ? /^(\d+)-[0-9a-f]{8}$/.exec(name.slice(prefix.length)) : null;
    return m ? Number(m[1]) : null;
  };
}

/** True when no process has this id: the writer of a temp file is gone (killed, or crashed) and will not finish it. */
export function processGone(pid: number): boolean {
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * Removes the entries of `dir` that a writer which is gone left half-done: names for which `writer` gives a process
 * id (null: not a temp name) of no running process. A process killed with SIGKILL cannot clean up after itself, so
 * the next writer of the same thing does. Best effort: a failure here never fails the write that asked for it.
 */
export function removeOrphans(dir: string, writer: (name: string) => number | null): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = writer(name);
    if (pid !== null && processGone(pid)) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
  }
}

/** A failure to create or replace the target, as a one-line user-facing error. */
function cannotWrite(target: string, err: unknown): ScalpelError {
  const e = err as NodeJS.ErrnoException;
  const why =
    e.code === 'ENOENT'
      ? `directory ${path.dirname(target)} does not exist`
      : e.code === 'EACCES' || e.code === 'EPERM'
        ? 'permission denied'
        : e.code === 'ENOSPC' || e.code === 'EDQUOT'
          ? 'no space left on the device; free space and run again'
          : e.code === 'EFBIG'
            ? 'file larger than this process may write (EFBIG: see ulimit -f)'
            : e.code === 'EISDIR'
              ? 'it is a directory'
              : (e.code ?? e.message);
  return new ScalpelError(`${target}: cannot write (${why})`);
}

function asBytes(data: string | Uint8Array | ArrayBufferView): Uint8Array {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return data;
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Best-effort fsync of a directory so the rename itself survives a crash (not possible on every platform). */
async function syncDir(dir: string): Promise<void> {
  try {
    const h = await fsp.open(dir, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    /* directories cannot be opened or synced everywhere (e.g. Windows); the rename is still atomic */
  }
}

/** Writes all of `bytes` at the handle's current position, in chunks the OS accepts. */
export async function writeAll(handle: fsp.FileHandle, data: string | Uint8Array | ArrayBufferView): Promise<void> {
  const bytes = asBytes(data);
  for (let off = 0; off < bytes.byteLength; ) {
    const len = Math.min(MAX_IO, bytes.byteLength - off);
    const { bytesWritten } = await handle.write(bytes, off, len);
    off += bytesWritten;
  }
}

/**
 * Creates `target` atomically: `fill` writes the content through the handle of a temp file in the same directory,
 * which is then fsynced and renamed over `target`. On any error the temp file is removed and `target` is untouched.
 */
export async function withAtomicFile(target: string, fill: (handle: fsp.FileHandle) => Promise<void>): Promise<void> {
  const tmp = tempPathFor(target);
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(tmp, 'wx', 0o644);
  } catch (err) {
    throw cannotWrite(target, err);
  }
  let ok = false;
  try {
    await fill(handle);
    await handle.sync();
    ok = true;
  } catch (err) {
    throw err instanceof ScalpelError ? err : cannotWrite(target, err);
  } finally {
    await handle.close();
    if (!ok) await fsp.rm(tmp, { force: true });
  }
  try {
    await fsp.rename(tmp, target);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw cannotWrite(target, err);
  }
  removeOrphans(path.dirname(target), tempWriter(target));
  await syncDir(path.dirname(target));
}

/** Writes `data` (text as UTF-8, or bytes) to `target` atomically. */
export async function writeFileAtomic(target: string, data: string | Uint8Array | ArrayBufferView): Promise<void> {
  await withAtomicFile(target, (h) => writeAll(h, data));
}

/** Synchronous twin of writeFileAtomic, for small files written from synchronous code. */
export function writeFileAtomicSync(target: string, data: string | Uint8Array | ArrayBufferView): void {
  const tmp = tempPathFor(target);
  const bytes = asBytes(data);
  let fd: number;
  try {
    fd = fs.openSync(tmp, 'wx', 0o644);
  } catch (err) {
    throw cannotWrite(target, err);
  }
  let ok = false;
  try {
    for (let off = 0; off < bytes.byteLength; )
      off += fs.writeSync(fd, bytes, off, Math.min(MAX_IO, bytes.byteLength - off));
    fs.fsyncSync(fd);
    ok = true;
  } catch (err) {
    throw cannotWrite(target, err);
  } finally {
    fs.closeSync(fd);
    if (!ok) fs.rmSync(tmp, { force: true });
  }
  try {
    fs.renameSync(tmp, target);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw cannotWrite(target, err);
  }
  removeOrphans(path.dirname(target), tempWriter(target));
}
