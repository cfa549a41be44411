// Downloads one file over HTTP(S) into place, checked against the sha256 and size it must have: the bytes are
// hashed as they arrive and written to a temp file beside the target, which is renamed over the target only when
// the hash matches, so a corrupted, cut-off or stalled download never leaves anything under the target's name.
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { dirname } from 'node:path';
import { ScalpelError } from '../errors.js';
import { withAtomicFile, writeAll } from './atomic.js';

export interface DownloadRequest {
  url: string;
  /** Where the file goes; its directory is created. */
  target: string;
  /** The name the user knows the file by, at the start of every error (e.g. `xstest/xstest_prompts.csv`). */
  label: string;
  /** Lower-case hex sha256 the bytes must have. */
  sha256: string;
  /** Exact size in bytes: the progress total, and a download that grows past it is cut off early. */
  bytes: number;
  /** Called with the bytes received so far. */
  onProgress?: (received: number) => void;
  /** Give up when no bytes arrive for this long (default 60 s). */
  idleMs?: number;
}

/** sha256 of a file on disk as lower-case hex, or undefined when there is no such file. */
export async function fileSha256(path: string): Promise<string | undefined> {
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ScalpelError(`${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  return createHash('sha256').update(bytes).digest('hex');
}

/** The innermost cause of a fetch failure, as a short reason (undici wraps socket errors in a TypeError). */
function reason(err: unknown): string {
  let e = err as { cause?: unknown; code?: string; message?: string } | undefined;
  while (e?.cause && typeof e.cause === 'object') e = e.cause as typeof e;
  // undici's own codes (UND_ERR_SOCKET) say less than its messages ("other side closed"); system codes say more.
  return e?.code && !e.code.startsWith('UND_ERR') ? e.code : (e?.message ?? String(err));
}

/**
 * Fetches `url` into `target` when its bytes have the expected sha256 and size. Throws a one-line ScalpelError
 * naming the label, the URL and what went wrong (HTTP status, broken connection, both hashes); the target is then
 * untouched and no temp file remains.
 */
export async function downloadVerified(req: DownloadRequest): Promise<void> {
  const idleMs = req.idleMs ?? 60_000;
  const abort = new AbortController();
  let idle: NodeJS.Timeout | undefined;
  // A server that stops sending without closing would hang the command forever: abort after idleMs of silence.
  const touch = () => {
    clearTimeout(idle);
    idle = setTimeout(() => abort.abort(), idleMs);
  };
  const broken = (what: string) => new ScalpelError(`${req.label}: download from ${req.url} ${what}; run it again`);
  touch();
  try {
    let res: Response;
    try {
      res = await fetch(req.url, { signal: abort.signal, redirect: 'follow' });
    } catch (err) {
      throw abort.signal.aborted
        ? broken(`got no answer in ${idleMs / 1000} s`)
        : new ScalpelError(
            `${req.label}: cannot reach ${req.url} (${reason(err)}); pass --data-dir DIR to use a local copy`,
          );
    }
    if (!res.ok || res.body === null) {
      await res.body?.cancel();
      throw new ScalpelError(`${req.label}: ${req.url} answered HTTP ${res.status}, expected 200 with the file`);
    }
    await fsp.mkdir(dirname(req.target), { recursive: true });
    const hash = createHash('sha256');
    let received = 0;
    await withAtomicFile(req.target, async (handle) => {
      const reader = res.body!.getReader();
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (err) {
          throw broken(
            abort.signal.aborted
              ? `stalled after ${received} of ${req.bytes} bytes`
              : `broke off after ${received} of ${req.bytes} bytes (${reason(err)})`,
          );
        }
        if (chunk.done) break;
        touch();
        received += chunk.value.byteLength;
        if (received > req.bytes) {
          await reader.cancel();
          throw new ScalpelError(
            `${req.label}: ${req.url} sent more than the expected ${req.bytes} bytes; refused, nothing written`,
          );
        }
        hash.update(chunk.value);
        await writeAll(handle, chunk.value);
        req.onProgress?.(received);
      }
      // A server may close early without saying so (no Content-Length): a short file is a cut-off download.
      if (received < req.bytes) throw broken(`ended after ${received} of ${req.bytes} bytes`);
      const got = hash.digest('hex');
      if (got !== req.sha256)
        throw new ScalpelError(
          `${req.label}: sha256 mismatch, expected ${req.sha256}, got ${got} (${received} bytes from ${req.url}); refused, nothing written`,
        );
    });
  } finally {
    clearTimeout(idle);
  }
}
