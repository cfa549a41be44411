// The size flags of general ability, shared by `scalpel ability` and `scalpel sweep --ability`: how many MMLU,
// ARC-Challenge, WikiText-2 and KL items to measure, parsed into the method's AbilitySizes; and fetching the samples
// into the download cache when no data directory is known.
import { ScalpelError } from '../errors.js';
import { ABILITY_DEFAULTS, type AbilitySizes } from '../method/ability.js';
import { fetchDatasets } from '../method/fetch.js';
import type { ProgressFactory } from '../method/pipeline.js';
import { licenceLine, sourceLabel } from './fetch.js';

/** [flags, help, default] of each size flag. */
export const ABILITY_SIZE_OPTIONS: [string, string, string][] = [
  ['--n-mmlu <n>', 'MMLU test questions, taken in turn from its 5 subjects (0 skips)', String(ABILITY_DEFAULTS.nMmlu)],
  ['--n-arc <n>', 'ARC-Challenge test questions, in file order (0 skips)', String(ABILITY_DEFAULTS.nArc)],
  [
    '--n-ppl-docs <n>',
    'WikiText-2 test articles for perplexity, in file order (0 skips)',
    String(ABILITY_DEFAULTS.nPplDocs),
  ],
  ['--shots <n>', "MMLU shots from the subject's dev questions (0 to 5)", String(ABILITY_DEFAULTS.shots)],
  ['--n-kl <n>', 'harmless prompts for the first-token KL', String(ABILITY_DEFAULTS.nKl)],
];

/** A count flag: an integer from 0 (to `max`). */
export function countOf(v: string, flag: string, max = Number.MAX_SAFE_INTEGER): number {
  const n = v.trim() === '' ? Number.NaN : Number(v);
  if (!Number.isInteger(n) || n < 0 || n > max)
    throw new ScalpelError(`${flag} ${v}: expected an integer from 0${max < 1e9 ? ` to ${max}` : ' up'}`);
  return n;
}

export interface AbilitySizeFlags {
  nMmlu?: string;
  nArc?: string;
  nPplDocs?: string;
  shots?: string;
  nKl?: string;
}

/** The flags as sizes (absent flags take the defaults). */
export function abilitySizesOf(f: AbilitySizeFlags): { sizes: AbilitySizes; nKl: number } {
  const d = (v: string | undefined, x: number) => v ?? String(x);
  return {
    sizes: {
      nMmlu: countOf(d(f.nMmlu, ABILITY_DEFAULTS.nMmlu), '--n-mmlu'),
      nArc: countOf(d(f.nArc, ABILITY_DEFAULTS.nArc), '--n-arc'),
      nPplDocs: countOf(d(f.nPplDocs, ABILITY_DEFAULTS.nPplDocs), '--n-ppl-docs'),
      shots: countOf(d(f.shots, ABILITY_DEFAULTS.shots), '--shots', 5),
    },
    nKl: countOf(d(f.nKl, ABILITY_DEFAULTS.nKl), '--n-kl'),
  };
}

/** Without a data directory the samples come from the download cache: fetch those the sizes ask for (once). */
export async function fetchAbilitySamples(
  sizes: AbilitySizes,
  o: { progress?: ProgressFactory; log: (line: string) => void },
): Promise<void> {
  const names = [
    ...(sizes.nMmlu > 0 ? ['mmlu'] : []),
    ...(sizes.nArc > 0 ? ['arc-challenge'] : []),
    ...(sizes.nPplDocs > 0 ? ['wikitext2'] : []),
  ];
  if (names.length === 0) return;
  await fetchDatasets(names, {
    progress: o.progress,
    onFile: (f) => {
      if (f.status === 'downloaded') o.log(`downloaded ${f.source.file} (${sourceLabel(f.source)}); ${licenceLine(f)}`);
    },
  });
}
