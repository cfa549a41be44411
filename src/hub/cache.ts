// The standard Hugging Face cache, laid out exactly as Python's huggingface_hub writes it, so that a transformers
// user's downloads are reused here and ours are reused there:
//   {cache}/models--{org}--{name}/blobs/{etag}             file contents (etag: the LFS sha256, else the git blob id)
//   {cache}/models--{org}--{name}/snapshots/{commit}/{path} relative symlinks to ../../blobs/{etag}
//   {cache}/models--{org}--{name}/refs/{revision}           the commit a branch or tag pointed at (none for a commit)
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';

/** A revision that is already a commit: it needs no ref file and names its snapshot folder itself. */
export const COMMIT = /^[0-9a-f]{40}$/;

export const CONFIG = 'config.json';
export const SINGLE = 'model.safetensors';
export const INDEX = 'model.safetensors.index.json';

/** huggingface_hub's order: $HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE (its old name), $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const home = (p: string) => (p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p);
  const direct = env['HF_HUB_CACHE'] || env['HUGGINGFACE_HUB_CACHE'];
  if (direct) return path.resolve(home(direct));
  const hfHome = env['HF_HOME'] || path.join(env['XDG_CACHE_HOME'] || path.join(os.homedir(), '.cache'), 'huggingface');
  return path.resolve(home(hfHome), 'hub');
}

/** A model repository's folder in the cache: `org/name` → `models--org--name`. */
export function repoFolder(cacheDir: string, repo: string): string {
  return path.join(cacheDir, `models--${repo.split('/').join('--')}`);
}

export const snapshotDir = (folder: string, commit: string) => path.join(folder, 'snapshots', commit);
export const blobPath = (folder: string, etag: string) => path.join(folder, 'blobs', etag);

/** The commit a revision names in the cache: itself when it is a commit, else refs/{revision}, else null. */
export function cachedCommit(folder: string, revision: string): string | null {
  if (COMMIT.test(revision)) return revision;
  try {
    const commit = fs.readFileSync(path.join(folder, 'refs', revision), 'utf8').trim();
    return COMMIT.test(commit) ? commit : null;
  } catch {
    return null;
  }
}

/** Records which commit a branch or tag points at (huggingface_hub reads the same file to work offline). */
export async function writeRef(folder: string, revision: string, commit: string): Promise<void> {
  if (COMMIT.test(revision)) return;
  const ref = path.join(folder, 'refs', revision);
  await fsp.mkdir(path.dirname(ref), { recursive: true });
  // huggingface_hub writes the bare hash, no newline.
  await writeFileAtomic(ref, commit);
}

/**
 * Points snapshots/{commit}/{file} at its blob with a relative symlink (so the cache can be moved whole), replacing
 * whatever was there. Where symlinks are not allowed (Windows without developer mode) the blob is copied, as
 * huggingface_hub does.
 */
export async function linkSnapshotFile(folder: string, commit: string, file: string, etag: string): Promise<void> {
  const link = path.join(snapshotDir(folder, commit), file);
  const blob = blobPath(folder, etag);
  await fsp.mkdir(path.dirname(link), { recursive: true });
  await fsp.rm(link, { force: true });
  try {
    await fsp.symlink(path.relative(path.dirname(link), blob), link);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'EACCES') throw err;
    await fsp.copyFile(blob, link);
  }
}

/** The shard files a safetensors index names (each once), or null when the index is unreadable. */
export function indexShards(indexFile: string): string[] | null {
  try {
    const wm = (JSON.parse(fs.readFileSync(indexFile, 'utf8')) as { weight_map?: unknown }).weight_map;
    if (!wm || typeof wm !== 'object' || Array.isArray(wm)) return null;
    const shards = [...new Set(Object.values(wm as Record<string, unknown>))];
    return shards.every((s) => typeof s === 'string' && s !== '') ? (shards as string[]) : null;
  } catch {
    return null;
  }
}

/**
 * True when a snapshot folder holds a whole model: config.json and its weights (the single file, or the index and
 * every shard it names). A transformers user may have cached only config.json of a model; that is not enough.
 */
export function snapshotHasModel(dir: string): boolean {
  const has = (f: string) => fs.existsSync(path.join(dir, f)); // follows the symlink: a dangling one is absent
  if (!has(CONFIG)) return false;
  if (has(SINGLE)) return true;
  if (!has(INDEX)) return false;
  const shards = indexShards(path.join(dir, INDEX));
  return shards?.every(has) === true;
}

/** The cached snapshot of `revision` when it holds a whole model, else null. */
export function cachedSnapshot(folder: string, revision: string): { dir: string; commit: string } | null {
  const commit = cachedCommit(folder, revision);
  if (!commit) return null;
  const dir = snapshotDir(folder, commit);
  return snapshotHasModel(dir) ? { dir, commit } : null;
}
