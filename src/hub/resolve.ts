// `--model` → a local model folder. A path that exists wins; otherwise `org/name[@revision]` names a model on the
// Hugging Face Hub, which is downloaded into the standard cache (only the files a model needs) and answered with its
// snapshot folder. The Hub API (the commit a revision points at, the file listing with sizes and LFS hashes) goes
// through the official @huggingface/hub client; the downloads themselves are download.ts's.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ScalpelError } from '../errors.js';
import {
  COMMIT,
  CONFIG,
  INDEX,
  SINGLE,
  blobPath,
  cachedSnapshot,
  hubCacheDir,
  indexShards,
  linkSnapshotFile,
  repoFolder,
  snapshotDir,
  writeRef,
} from './cache.js';
import { downloadBlob } from './download.js';
import { type HubHttp, HubUnreachable, apiFetch, isNetworkError, networkReason } from './http.js';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';
/** A file name at the top of a repository: not empty, no folder part, no `.`/`..`, no control characters. */
function isPlainName(name: string): boolean {
  if (name === '' || name === '.' || name === '..') return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 32 || c === 127 || name[i] === '/' || name[i] === '\\') return false;
  }
  return true;
}
/** A git blob id (40 hex) or an LFS sha256 (64 hex), as the cache names its blobs. */
const BLOB_ID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;
export const DEFAULT_TIMEOUT_MS = 30_000;

/** The files of a model besides its weights; each is fetched when the repository has it. */
export const MODEL_FILES = [
  CONFIG,
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'chat_template.jinja',
  'chat_template.json',
];

/** Where a model came from, when it came from the Hub (run.json keeps it as model.hub). */
export interface HubSource {
  repo: string;
  /** The revision asked for: a branch, a tag or a commit (default main). */
  revision: string;
  /** The commit that revision pointed at: the snapshot folder's name. */
  commit: string;
}

export interface ResolvedModel {
  /** A local folder holding the model: the path given, or a snapshot folder in the cache. */
  dir: string;
  hub?: HubSource;
}

export interface HubSettings extends HubHttp {
  /** Use the cache only ($HF_HUB_OFFLINE=1). */
  offline: boolean;
  cacheDir: string;
}

export interface ResolveOptions extends Partial<HubSettings> {
  /** Bytes downloaded so far and the bytes this call downloads in all; called only when something is downloaded. */
  onProgress?: (done: number, total: number) => void;
  /** One line per notable event (downloading, answering from the cache because the Hub is unreachable). */
  log?: (line: string) => void;
  /** Resumes per file after a dropped connection or a stall (default 2). */
  retries?: number;
}

/** The Hub settings from the environment, named as huggingface_hub names them. */
export function hubSettings(env: NodeJS.ProcessEnv = process.env): HubSettings {
  const timeout = env['SCALPEL_HUB_TIMEOUT_MS'];
  const timeoutMs = timeout === undefined || timeout === '' ? DEFAULT_TIMEOUT_MS : Number(timeout);
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0)
    throw new ScalpelError(`SCALPEL_HUB_TIMEOUT_MS=${timeout}: expected a positive number of milliseconds`);
  return {
    endpoint: (env['HF_ENDPOINT'] || DEFAULT_ENDPOINT).replace(/\/+$/, ''),
    token: env['HF_TOKEN'] || undefined,
    offline: ['1', 'on', 'yes', 'true'].includes((env['HF_HUB_OFFLINE'] ?? '').trim().toLowerCase()),
    cacheDir: hubCacheDir(env),
    timeoutMs,
  };
}

const NAME = /^[A-Za-z0-9_.-]{1,96}$/;

/**
 * `org/name` or `org/name@revision` as a Hub reference, else null. Names follow the Hub's rules (letters, digits,
 * `_.-`, no `--` or `..`); a revision may hold `/` (`refs/pr/1`) but no `..`, since it becomes a path in the cache.
 */
export function parseHubRef(ref: string): { repo: string; revision: string } | null {
  const at = ref.indexOf('@');
  const repo = at < 0 ? ref : ref.slice(0, at);
  const revision = at < 0 ? 'main' : ref.slice(at + 1);
  const parts = repo.split('/');
  if (parts.length !== 2 || !parts.every((p) => NAME.test(p) && !/^[.-]|[.-]$|--|\.\./.test(p))) return null;
  if (!/^[\w.-]+(\/[\w.-]+)*$/.test(revision) || revision.split('/').some((p) => p === '.' || p === '..')) return null;
  return { repo, revision };
}

/** One file of the repository as its listing gives it. */
interface RepoFile {
  path: string;
  size: number;
  /** What the cache names its blob: the LFS sha256, else the git blob id (huggingface_hub's etag). */
  etag: string;
  sha256?: string;
  gitOid?: string;
}

/** A call to @huggingface/hub, with a failed network or a timeout while reading its answer seen as unreachable. */
async function api<T>(settings: HubSettings, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof ScalpelError || err instanceof HubUnreachable || !isNetworkError(err)) throw err;
    throw new HubUnreachable(settings.endpoint, networkReason(err, settings.timeoutMs));
  }
}

/** The commit `revision` points at and the repository's top-level files, from the Hub. */
async function listRepo(
  repo: string,
  revision: string,
  settings: HubSettings,
): Promise<{ commit: string; files: Map<string, RepoFile> }> {
  const hub = await import('@huggingface/hub');
  const what = revision === 'main' ? repo : `${repo}@${revision}`;
  const fetch = apiFetch(settings, what, repo);
  const info = await api(settings, () =>
    hub.modelInfo({ name: repo, revision, additionalFields: ['sha'], hubUrl: settings.endpoint, fetch }),
  );
  const commit = (info as { sha?: unknown }).sha;
  if (typeof commit !== 'string' || !COMMIT.test(commit))
    throw new ScalpelError(`${what}: ${settings.endpoint} gave no commit hash for this revision (field sha)`);
  const files = new Map<string, RepoFile>();
  await api(settings, async () => {
    // Only the top level: every file a model needs sits there, and big repositories have deep trees.
    for await (const e of hub.listFiles({
      repo: { type: 'model', name: repo },
      revision: commit,
      hubUrl: settings.endpoint,
      fetch,
    })) {
      if (e.type !== 'file') continue;
      const sha256 = e.lfs?.oid;
      const etag = sha256 ?? e.oid;
      // The listing comes from the server: its names become paths in the cache, so only plain top-level file names
      // and hex blob ids are taken (a model needs nothing else; "../x" or an odd id is never written anywhere).
      if (!etag || !isPlainName(e.path) || !BLOB_ID.test(etag)) continue;
      files.set(e.path, {
        path: e.path,
        size: e.lfs?.size ?? e.size,
        etag,
        sha256,
        gitOid: sha256 ? undefined : e.oid,
      });
    }
  });
  return { commit, files };
}

/** Downloads whichever of `files` are neither in the snapshot nor in blobs/, one after another. */
async function fetchBlobs(
  files: RepoFile[],
  ctx: { repo: string; folder: string; commit: string; settings: HubSettings; opts: ResolveOptions },
  announce = true,
): Promise<void> {
  const { repo, folder, commit, settings, opts } = ctx;
  const snap = snapshotDir(folder, commit);
  const missing = files.filter(
    (f) => !fs.existsSync(path.join(snap, f.path)) && !fs.existsSync(blobPath(folder, f.etag)),
  );
  if (missing.length === 0) return;
  const total = missing.reduce((n, f) => n + f.size, 0);
  if (announce)
    opts.log?.(
      `${repo}: downloading ${missing.length} file${missing.length === 1 ? '' : 's'} (${(total / 1e6).toFixed(1)} MB) of commit ${commit} into ${folder}`,
    );
  let done = 0;
  for (const f of missing) {
    const url = `${settings.endpoint}/${repo}/resolve/${commit}/${f.path.split('/').map(encodeURIComponent).join('/')}`;
    await downloadBlob(
      {
        url,
        repo,
        file: f.path,
        blob: blobPath(folder, f.etag),
        size: f.size,
        sha256: f.sha256,
        gitOid: f.gitOid,
        retries: opts.retries,
        onBytes: (n) => {
          done += n;
          opts.onProgress?.(done, total);
        },
      },
      settings,
    );
  }
}

/** The file a model's weights are read from: the single file or the index (transformers' order), else an error. */
function weightsEntry(what: string, files: Map<string, RepoFile>): RepoFile {
  const entry = files.get(SINGLE) ?? files.get(INDEX);
  if (entry) return entry;
  const others = [...files.keys()].filter((f) => /\.(safetensors|bin|pt|pth|gguf|onnx|msgpack|h5)$/.test(f));
  const found = others.length > 0 ? `; it has ${others.slice(0, 3).join(', ')}${others.length > 3 ? ', …' : ''}` : '';
  throw new ScalpelError(
    `${what}: no safetensors weights (${SINGLE} or ${INDEX})${found}; Scalpel reads safetensors checkpoints only`,
  );
}

/** Downloads what the model at this commit needs that the cache lacks, then links the snapshot. */
async function download(
  repo: string,
  revision: string,
  settings: HubSettings,
  opts: ResolveOptions,
): Promise<ResolvedModel> {
  const folder = repoFolder(settings.cacheDir, repo);
  const { commit, files } = await listRepo(repo, revision, settings);
  const what = `${repo}@${commit}`;
  if (!files.has(CONFIG)) throw new ScalpelError(`${what}: no ${CONFIG}; not a Hugging Face model repository`);
  const ctx = { repo, folder, commit, settings, opts };
  const wanted = MODEL_FILES.filter((f) => files.has(f)).map((f) => files.get(f)!);
  const weights = weightsEntry(what, files);
  wanted.push(weights);
  if (weights.path === INDEX) {
    // The shards are known only from the index, so it comes first (it is small); it is read from its blob, since
    // nothing is linked into the snapshot before every file is verified.
    await fetchBlobs([weights], ctx, false);
    const linked = path.join(snapshotDir(folder, commit), INDEX);
    const shards = indexShards(fs.existsSync(linked) ? linked : blobPath(folder, weights.etag));
    if (!shards || shards.length === 0)
      throw new ScalpelError(`${what}/${INDEX}: field weight_map is missing, empty or not shard file names`);
    for (const shard of shards) {
      const f = files.get(shard);
      if (!f)
        throw new ScalpelError(
          `${what}/${INDEX}: weight_map names shard ${JSON.stringify(shard)}, which the repository lacks`,
        );
      wanted.push(f);
    }
  }
  await fetchBlobs(wanted, ctx);
  const snap = snapshotDir(folder, commit);
  for (const f of wanted)
    if (!fs.existsSync(path.join(snap, f.path))) await linkSnapshotFile(folder, commit, f.path, f.etag);
  await writeRef(folder, revision, commit);
  return { dir: snap, hub: { repo, revision, commit } };
}

/**
 * The local folder of a model given as a path or as a Hub reference `org/name[@revision]`. A Hub model is
 * downloaded into the cache unless the cache has it; with `offline` ($HF_HUB_OFFLINE=1) only the cache is read,
 * and when the Hub cannot be reached a cached snapshot of the revision is used instead.
 */
export async function resolveModel(ref: string, opts: ResolveOptions = {}): Promise<ResolvedModel> {
  if (fs.existsSync(ref)) return { dir: path.resolve(ref) };
  const hubRef = parseHubRef(ref);
  if (!hubRef)
    throw new ScalpelError(`${ref}: no such model folder, and not a Hugging Face repo id (org/name[@revision])`);
  const { repo, revision } = hubRef;
  const settings: HubSettings = { ...hubSettings(), ...definedOnly(opts) };
  const folder = repoFolder(settings.cacheDir, repo);
  const fromCache = () => {
    const hit = cachedSnapshot(folder, revision);
    return hit ? { dir: hit.dir, hub: { repo, revision, commit: hit.commit } } : null;
  };
  if (settings.offline) {
    const hit = fromCache();
    if (hit) return hit;
    throw new ScalpelError(
      `${ref}: no such local folder, and not in the Hugging Face cache ${settings.cacheDir} (HF_HUB_OFFLINE=1 allows no download); unset HF_HUB_OFFLINE to download it`,
    );
  }
  try {
    return await download(repo, revision, settings, opts);
  } catch (err) {
    if (!(err instanceof HubUnreachable)) throw err;
    const hit = fromCache();
    if (hit) {
      opts.log?.(`${settings.endpoint} cannot be reached (${err.reason}); using the cached snapshot ${hit.hub.commit}`);
      return hit;
    }
    throw new ScalpelError(
      `${ref}: cannot reach ${settings.endpoint} (${err.reason}) and the model is not in the cache ${settings.cacheDir}; connect to the network, or set HF_HUB_OFFLINE=1 to use a cache that has it`,
    );
  }
}

/** The options that were given, so that an explicit `undefined` does not hide a setting from the environment. */
function definedOnly(opts: ResolveOptions): Partial<HubSettings> {
  const out: Record<string, unknown> = {};
  for (const key of ['endpoint', 'token', 'timeoutMs', 'offline', 'cacheDir'] as const)
    if (opts[key] !== undefined) out[key] = opts[key];
  if (typeof out['endpoint'] === 'string') out['endpoint'] = (out['endpoint'] as string).replace(/\/+$/, '');
  return out as Partial<HubSettings>;
}
