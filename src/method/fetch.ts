// Downloads the files of named public prompt sets into the cache (the raw/ layout), each checked against the sha256
// it is pinned to in sources.ts. A file already cached with the right hash is not downloaded again; one that fails
// does not stop the others, and the failures are reported together at the end.
import { join } from 'node:path';
import { ScalpelError } from '../errors.js';
import { downloadVerified, fileSha256 } from '../io/download.js';
import { ABILITY_SETS, abilitySources, findAbilitySet } from './ability-data.js';
import { DATASETS, findDataset, setSource } from './datasets.js';
import { datasetCacheDir, datasetsEndpoint, sourceUrl, type FileSource } from './sources.js';

export interface FetchedFile {
  source: FileSource;
  /** Where the file is now. */
  path: string;
  /** The requested sets that read this file. */
  sets: string[];
  status: 'cached' | 'downloaded';
}

export interface FetchOptions {
  /** Default datasetCacheDir(). */
  cacheDir?: string;
  /** Default datasetsEndpoint(). */
  endpoint?: string;
  /** A progress bar over the bytes to download (the method's ProgressFactory shape). */
  progress?: (label: string, total: number) => { update(done: number, total?: number): void; stop(): void };
  /** Called as each file is found in the cache or downloaded, in table order. */
  onFile?: (file: FetchedFile) => void;
  /** Give up on a download after this long without bytes (tests). */
  idleMs?: number;
}

/**
 * Every public set's name, in DATASETS order, then the general-ability samples (ABILITY_SETS): what `scalpel
 * datasets fetch` fetches when given no names.
 */
export function publicSetNames(): string[] {
  return [...DATASETS.filter((d) => !d.builtin).map((d) => d.name), ...ABILITY_SETS.map((s) => s.name)];
}

/** The pinned files a public set name reads: one for a prompt set, several for an ability sample. */
function setFiles(name: string): FileSource[] {
  const spec = findDataset(name);
  const source = spec && setSource(spec);
  if (source) return [source];
  const ability = findAbilitySet(name);
  if (ability) return abilitySources(ability);
  const why = spec ? 'is built in (nothing to fetch)' : 'is not a public set';
  throw new ScalpelError(`dataset ${name} ${why}; public sets: ${publicSetNames().join(', ')}`);
}

/**
 * Makes the files of the named public sets present and verified in the cache. Unknown and built-in names are a
 * one-line error before anything is fetched. Failed files are reported in one ScalpelError after the others are done.
 */
export async function fetchDatasets(names: string[], opts: FetchOptions = {}): Promise<FetchedFile[]> {
  const cacheDir = opts.cacheDir ?? datasetCacheDir();
  const endpoint = opts.endpoint ?? datasetsEndpoint();
  // Several sets read one file (xstest-safe and xstest-unsafe): group the requested sets by file.
  const byFile = new Map<string, { source: FileSource; sets: string[] }>();
  for (const name of names.length === 0 ? publicSetNames() : names) {
    for (const source of setFiles(name)) {
      const entry = byFile.get(source.file) ?? { source, sets: [] };
      if (!entry.sets.includes(name)) entry.sets.push(name);
      byFile.set(source.file, entry);
    }
  }
  const done: FetchedFile[] = [];
  const missing: { source: FileSource; sets: string[]; path: string }[] = [];
  for (const { source, sets } of byFile.values()) {
    const path = join(cacheDir, source.file);
    if ((await fileSha256(path)) === source.sha256) {
      const file: FetchedFile = { source, path, sets, status: 'cached' };
      done.push(file);
      opts.onFile?.(file);
    } else missing.push({ source, sets, path });
  }
  if (missing.length === 0) return done;

  const total = missing.reduce((n, m) => n + m.source.bytes, 0);
  const bar = opts.progress?.('download', total);
  const failures: { file: string; message: string }[] = [];
  let before = 0;
  try {
    for (const { source, sets, path } of missing) {
      try {
        await downloadVerified({
          url: sourceUrl(source, endpoint),
          target: path,
          label: source.file,
          sha256: source.sha256,
          bytes: source.bytes,
          idleMs: opts.idleMs,
          onProgress: (received) => bar?.update(before + received),
        });
      } catch (err) {
        if (!(err instanceof ScalpelError)) throw err;
        failures.push({ file: source.file, message: err.message });
        continue;
      } finally {
        before += source.bytes;
        bar?.update(before);
      }
      const file: FetchedFile = { source, path, sets, status: 'downloaded' };
      done.push(file);
      opts.onFile?.(file);
    }
  } finally {
    bar?.stop();
  }
  if (failures.length > 0) {
    const others = failures.slice(1).map((f) => f.file);
    throw new ScalpelError(`${failures[0]!.message}${others.length > 0 ? ` (also failed: ${others.join(', ')})` : ''}`);
  }
  return done;
}
