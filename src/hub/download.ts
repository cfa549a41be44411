// One file from the Hub into the cache's blobs/, resumable and verified: bytes go to blobs/{etag}.incomplete (a
// rerun, or a retry after a dropped connection, continues it with a Range request), and the file is renamed to
// blobs/{etag} only once its size and hash match what the Hub's listing promised (the LFS sha256, or the git blob
// id for small files). @huggingface/hub's own download neither resumes nor verifies, so this is written over fetch.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ScalpelError } from '../errors.js';
import { type HubHttp, HubUnreachable, hubHeaders, isNetworkError, networkReason, refusal } from './http.js';

export interface BlobRequest {
  /** The resolve URL: {endpoint}/{repo}/resolve/{commit}/{file}. */
  url: string;
  repo: string;
  /** The file's path in the repository, for messages. */
  file: string;
  /** blobs/{etag}; the partial download lives beside it as {etag}.incomplete. */
  blob: string;
  size: number;
  /** The LFS object id (sha256 of the content), when the file is in LFS. */
  sha256?: string;
  /** The git blob id (sha1 of "blob {size}\0" + content), checked when there is no sha256. */
  gitOid?: string;
  /** Told how many bytes arrived (negative when a server ignores Range and the file starts over). */
  onBytes?: (delta: number) => void;
  /** Resumes after a dropped connection or a stall before giving up (default 2). */
  retries?: number;
}

/** The server went quiet for longer than the timeout in the middle of a file. */
class Stalled extends Error {}

/** The one-line error for a failed write into the cache; a full disk says how to get out. */
function cannotWrite(req: BlobRequest, target: string, err: unknown): ScalpelError {
  const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  if (code === 'ENOSPC')
    return new ScalpelError(
      `${target}: no space left on the device while downloading ${req.repo}/${req.file} (${req.size} bytes); free space or set HF_HUB_CACHE to a larger disk, then run again to resume`,
    );
  return new ScalpelError(`${target}: cannot write (${code}) while downloading ${req.repo}/${req.file}`);
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await fsp.stat(file)).size;
  } catch {
    return 0;
  }
}

/** The hash the Hub lists for a file, computed over what is on disk. */
async function digest(file: string, req: BlobRequest): Promise<{ kind: string; expected: string; got: string } | null> {
  const kind = req.sha256 ? 'sha256' : req.gitOid ? 'git blob id' : null;
  if (!kind) return null;
  const h = createHash(req.sha256 ? 'sha256' : 'sha1');
  if (!req.sha256) h.update(`blob ${req.size}\0`);
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return { kind, expected: (req.sha256 ?? req.gitOid)!, got: h.digest('hex') };
}

/**
 * One request: continues `incomplete` from its current size to `req.size`. Network failures and stalls throw
 * HubUnreachable / Stalled (the caller retries), refusals and full disks throw ScalpelError.
 */
async function attempt(req: BlobRequest, incomplete: string, http: HubHttp): Promise<void> {
  let have = await sizeOf(incomplete);
  if (have > req.size) {
    // Longer than the file can be: not a prefix of it. Start over.
    await fsp.truncate(incomplete, 0).catch(() => {});
    req.onBytes?.(-have);
    have = 0;
  }
  if (have === req.size) return;
  const ctrl = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const stallTimer = () => {
    clearTimeout(timer);
    timer = setTimeout(() => ctrl.abort(new Stalled()), http.timeoutMs);
  };
  const stalled = () =>
    new HubUnreachable(req.url, `no data for ${http.timeoutMs / 1000} s after ${have} of ${req.size} bytes (timeout)`);
  stallTimer();
  try {
    let res: Response;
    try {
      const headers = hubHeaders(http, have > 0 ? { Range: `bytes=${have}-` } : undefined);
      res = await fetch(req.url, { headers, signal: ctrl.signal, redirect: 'follow' });
    } catch (err) {
      if (ctrl.signal.aborted) throw stalled();
      throw new HubUnreachable(req.url, networkReason(err, http.timeoutMs));
    }
    if (res.status === 416) {
      // The server has no bytes past ours: our partial file is not a prefix of this one. Start over next attempt.
      await res.body?.cancel().catch(() => {});
      await fsp.truncate(incomplete, 0).catch(() => {});
      req.onBytes?.(-have);
      throw new HubUnreachable(req.url, 'HTTP 416 on resume, starting the file over');
    }
    if (!res.ok) throw await refusal(res, `${req.repo}/${req.file}`, req.repo, http);
    if (have > 0 && res.status !== 206) {
      // The server ignored Range and sends the whole file.
      req.onBytes?.(-have);
      have = 0;
    }
    if (!res.body) throw new HubUnreachable(req.url, 'empty response body');
    let out: fsp.FileHandle;
    try {
      out = await fsp.open(incomplete, have > 0 ? 'a' : 'w');
    } catch (err) {
      throw cannotWrite(req, incomplete, err);
    }
    try {
      const reader = res.body.getReader();
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (err) {
          if (ctrl.signal.aborted) throw stalled();
          throw new HubUnreachable(req.url, `${networkReason(err, http.timeoutMs)} after ${have} of ${req.size} bytes`);
        }
        if (chunk.done) break;
        stallTimer();
        try {
          await out.write(chunk.value);
        } catch (err) {
          await reader.cancel().catch(() => {});
          throw cannotWrite(req, incomplete, err);
        }
        have += chunk.value.length;
        req.onBytes?.(chunk.value.length);
      }
      await out.sync().catch(() => {}); // /dev/full and friends cannot sync; the write already said so
    } finally {
      await out.close().catch(() => {});
    }
    if (have < req.size) throw new HubUnreachable(req.url, `connection closed after ${have} of ${req.size} bytes`);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Downloads `req.url` into `req.blob`, resuming a partial download left by an earlier run. On success the blob is
 * complete and verified; on failure blobs/ holds at most the .incomplete file (kept when it may be resumed, removed
 * when its content is wrong).
 */
export async function downloadBlob(req: BlobRequest, http: HubHttp): Promise<void> {
  const incomplete = `${req.blob}.incomplete`;
  try {
    await fsp.mkdir(path.dirname(req.blob), { recursive: true });
  } catch (err) {
    throw cannotWrite(req, path.dirname(req.blob), err);
  }
  const retries = req.retries ?? 2;
  for (let n = 0; ; n++) {
    try {
      await attempt(req, incomplete, http);
      break;
    } catch (err) {
      if (err instanceof ScalpelError || n >= retries) {
        if (err instanceof HubUnreachable)
          throw new ScalpelError(
            `${req.repo}/${req.file}: download failed (${err.reason}); run again to resume from ${incomplete}`,
          );
        if (isNetworkError(err))
          throw new ScalpelError(`${req.repo}/${req.file}: download failed (${networkReason(err, http.timeoutMs)})`);
        throw err;
      }
      if (!(err instanceof HubUnreachable)) throw err;
    }
  }
  const size = await sizeOf(incomplete);
  const check = size === req.size ? await digest(incomplete, req) : null;
  if (size !== req.size || (check && check.got !== check.expected)) {
    await fsp.rm(incomplete, { force: true });
    const detail =
      size !== req.size
        ? `size expected ${req.size} bytes, got ${size}`
        : `${check!.kind} expected ${check!.expected}, got ${check!.got}`;
    throw new ScalpelError(
      `${req.repo}/${req.file}: checksum mismatch (${detail}); the download was removed, run again`,
    );
  }
  try {
    await fsp.rename(incomplete, req.blob);
  } catch (err) {
    throw cannotWrite(req, req.blob, err);
  }
}
