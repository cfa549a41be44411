// scalpel datasets: the prompt sets Scalpel knows by name, with their sizes, pinned sources and licences; and
// `scalpel datasets fetch`, which downloads the public ones into the cache and verifies them.
import type { Command } from 'commander';
import { ABILITY_SETS, abilitySources } from '../../method/ability-data.js';
import { DATASETS, loadPromptSet, resolveDataDir, setSource } from '../../method/datasets.js';
import { fetchDatasets } from '../../method/fetch.js';
import { datasetCacheDir, datasetsEndpoint } from '../../method/sources.js';
import { ScalpelError } from '../../errors.js';
import { licenceLine, sourceLabel } from '../fetch.js';
import { progressFactory } from '../progress.js';

function list(opts: { dataDir?: string; json?: boolean }): void {
  const dataDir = resolveDataDir(opts.dataDir);
  const cache = datasetCacheDir();
  const rows = DATASETS.map((d) => {
    let size: number | null = null;
    let note = '';
    // Without a data directory, public sets are read from the download cache: sized when fetched.
    try {
      size = loadPromptSet(d.name, dataDir).prompts.length;
    } catch (e) {
      if (!(e instanceof ScalpelError)) throw e;
      note = dataDir === undefined ? 'not fetched' : 'missing';
    }
    const s = setSource(d);
    return {
      name: d.name,
      size,
      source: d.source,
      file: d.builtin ? `data/prompts/${d.file}` : d.file,
      // Where the file is downloaded from; `source` stays the one-line description it always was.
      pinned: s ? { repo: s.repo, commit: s.commit, path: s.path, sha256: s.sha256, bytes: s.bytes } : null,
      upstream: s?.upstream ?? null,
      licence: s?.licence ?? null,
      note,
    };
  });
  // The general-ability samples (`scalpel ability`): several files each, not prompt sets.
  const ability = ABILITY_SETS.map((a) => ({
    name: a.name,
    source: a.source,
    files: abilitySources(a).map((s) => ({
      file: s.file,
      repo: s.repo,
      commit: s.commit,
      path: s.path,
      sha256: s.sha256,
      bytes: s.bytes,
    })),
    licence: abilitySources(a)[0]!.licence,
  }));
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ dataDir: dataDir ?? null, cache, datasets: rows, ability }, null, 2)}\n`);
    return;
  }
  const w = Math.max(...rows.map((r) => r.name.length));
  const indent = '    ';
  process.stdout.write(
    `data directory: ${dataDir ?? `(none: public sets are read from the cache ${cache}; fill it with \`scalpel datasets fetch\`, or set --data-dir / SCALPEL_DATA)`}\n`,
  );
  for (const r of rows) {
    const size = r.size === null ? r.note.padStart(11) : String(r.size).padStart(11);
    process.stdout.write(`${r.name.padEnd(w)}${size}  ${r.source}\n`);
    if (r.pinned) {
      process.stdout.write(`${indent}source    ${r.pinned.repo}@${r.pinned.commit} ${r.pinned.path}\n`);
      if (r.upstream) process.stdout.write(`${indent}upstream  ${r.upstream}\n`);
      process.stdout.write(`${indent}licence   ${r.licence}\n`);
    }
  }
  process.stdout.write('general-ability samples (scalpel ability):\n');
  for (const a of ability) {
    process.stdout.write(
      `${a.name.padEnd(w)}${`${a.files.length} file${a.files.length === 1 ? '' : 's'}`.padStart(11)}  ${a.source}\n`,
    );
    process.stdout.write(
      `${indent}source    ${a.files[0]!.repo}@${a.files[0]!.commit} ${a.files[0]!.path}${a.files.length > 1 ? ` and ${a.files.length - 1} more` : ''}\n`,
    );
    process.stdout.write(`${indent}licence   ${a.licence}\n`);
  }
}

async function fetch(names: string[], opts: { quiet?: boolean }): Promise<void> {
  const cache = datasetCacheDir();
  const files = await fetchDatasets(names, {
    cacheDir: cache,
    progress: progressFactory({ quiet: opts.quiet }),
    onFile: (f) => {
      const line =
        f.status === 'downloaded'
          ? `downloaded  ${f.source.file}  sha256 ok  from ${sourceLabel(f.source)}\n            ${licenceLine(f)}`
          : `cached      ${f.source.file}  sha256 ok`;
      process.stdout.write(`${line}\n`);
    },
  });
  const downloaded = files.filter((f) => f.status === 'downloaded').length;
  process.stdout.write(
    `${files.length} files verified in ${cache} (${downloaded} downloaded from ${datasetsEndpoint()}, ${files.length - downloaded} already cached)\n`,
  );
}

export function register(program: Command): void {
  const datasets = program
    .command('datasets')
    .description('list the prompt sets known by name: sizes, pinned sources and licences; `datasets fetch` downloads')
    .option('--data-dir <dir>', 'folder of public prompt sets (default $SCALPEL_DATA, else the download cache)')
    .option('--json', 'print a JSON object')
    .action(list);
  datasets
    .command('fetch')
    .description(
      'download public prompt sets (default: all) into $SCALPEL_CACHE/datasets or ~/.cache/scalpel/datasets, each checked against its pinned sha256',
    )
    .argument('[names...]', 'public set names (see `scalpel datasets`)')
    .option('--quiet', 'no progress bar')
    .action(fetch);
}
