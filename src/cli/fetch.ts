// Public prompt sets fetched from the command line: the lines `scalpel datasets fetch` prints, and the fetch on first
// use that the method's commands (run, extract, select, eval) do when a public set is named without a data directory.
import type { MethodConfig } from '../method/config.js';
import { publicSetOf, setsRead } from '../method/datasets.js';
import { fetchDatasets, type FetchedFile } from '../method/fetch.js';
import type { RunOptions } from '../method/pipeline.js';

/** The pinned source of a file, as `owner/repo@commit path`. */
export function sourceLabel(f: FetchedFile['source']): string {
  return `${f.repo}@${f.commit} ${f.path}`;
}

/** The licence line printed once, when a file is first downloaded: the requested sets that read it, and its licence. */
export function licenceLine(f: FetchedFile): string {
  return `licence of ${f.sets.join(', ')}: ${f.source.licence}`;
}

/** The sets a configuration reads: training and validation, and with `withEval` the evaluation sets. */
export function configSets(c: MethodConfig, withEval: boolean): string[] {
  const sets = [c.harmfulTrain, c.harmfulVal, c.harmlessTrain, c.harmlessVal, c.pseudoTrain, c.pseudoVal];
  if (c.objective === 'pareto') sets.push(...setsRead(c.harmfulPool));
  return withEval ? [...sets, ...c.evalDatasets] : sets;
}

/**
 * Downloads (once) the public sets among `refs` into the cache, for a command about to run the method. A data
 * directory (--data-dir, $SCALPEL_DATA or the run's own) wins and nothing is fetched, so offline use and CI stay
 * offline; built-in sets and prompt files need nothing. Takes only what it uses of RunOptions, so a command with no
 * run directory (eval --model) can call it too.
 */
export async function fetchRunSets(o: Pick<RunOptions, 'dataDir' | 'progress' | 'log'>, refs: string[]): Promise<void> {
  if (o.dataDir !== undefined) return;
  const names = [...new Set(refs.map((r) => publicSetOf(r)?.name).filter((n) => n !== undefined))];
  if (names.length === 0) return;
  await fetchDatasets(names, {
    progress: o.progress,
    onFile: (f) => {
      if (f.status === 'downloaded')
        o.log?.(`downloaded ${f.source.file} (${sourceLabel(f.source)}); ${licenceLine(f)}`);
    },
  });
}
