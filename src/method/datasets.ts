// Prompt sets by name. Public sets are read in place from a data directory (--data-dir or $SCALPEL_DATA, laid out
// as the raw/ folder of the shared dataset collection), else from the download cache that `scalpel datasets fetch`
// fills (sources.ts pins where each file comes from); the team-written built-in sets ship in data/prompts/.
// Anything that is not a known name is treated as a path to a user prompt file (src/io/prompts.ts). At the end: the
// samples of them that the pipeline's stages work on.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ScalpelError } from '../errors.js';
import { parseCsv, parsePrompts, readPromptFile, readPromptText } from '../io/prompts.js';
import type { MethodConfig } from './config.js';
import { PythonRandom, sample, shuffled, mulberry32 } from '../rng.js';
import { datasetCacheDir, fileSource, type FileSource } from './sources.js';

export interface DatasetSpec {
  name: string;
  /** Path relative to the data directory (or to data/prompts for built-in sets). */
  file: string;
  /** Prompt field or column. */
  column: string;
  /** Keep only rows (CSV rows or JSONL objects) whose `where[0]` field equals `where[1]`. */
  where?: [string, string];
  /** Row slice after filtering: [start, end) with negative indexes counted from the end. */
  slice?: [number, number | undefined];
  source: string;
  builtin?: boolean;
  /**
   * 'harmful': a held-out harmful set (prompts a model should refuse, never used for training or validation). Eval
   * pools these sets' rows into one held-out harmful refusal figure (heldout.ts); this field is the only list of them.
   */
  kind?: 'harmful';
  /**
   * The file is sorted by category, so `name:N` takes N rows spread evenly over it (rows ⌊i·len/N⌋) instead of the
   * first N, which would hold only the first categories.
   */
  sortedByCategory?: boolean;
  /** Leave out prompts longer than this many characters (after the other filters, before the slice). */
  maxChars?: number;
}

/**
 * A set pooled from several named sets: their prompts in order, without duplicates and without any prompt whose
 * text (case and runs of whitespace aside) is in one of the `exclude` sets.
 */
export interface PoolSpec {
  name: string;
  parts: readonly string[];
  exclude: readonly string[];
  source: string;
}

// Built-in sets' val and test sizes: val is the default n_val; test is 100, enough that one prompt moves a rate by
// one point, not six as with the 16 of the first sets.
export const BUILTIN_VAL = 32;
export const BUILTIN_TEST = 100;

const RD = 'refusal_direction_splits';
const FR = 'false_refusal_mitigation_splits';
const SRC_A = 'andyrdt/refusal_direction @ 9d852fa (Arditi et al. splits)';
const SRC_B = 'mainlp/False-Refusal-Mitigation @ 916dcac (Wang et al. splits)';

export const DATASETS: readonly DatasetSpec[] = [
  ...(['train', 'val', 'test'] as const).flatMap((split) => [
    { name: `harmful-${split}`, file: `${RD}/harmful_${split}.json`, column: 'instruction', source: SRC_A },
    {
      name: `harmless-${split}`,
      file: `${RD}/harmless_${split}.json`,
      column: 'instruction',
      source: `${SRC_A}; Alpaca (CC BY-NC 4.0)`,
    },
  ]),
  ...(['train', 'val', 'test'] as const).map((split) => ({
    name: `or-bench-hard-${split}`,
    file: `${FR}/or_bench_hard_${split}.json`,
    column: 'instruction',
    source: `${SRC_B}; OR-Bench-hard-1k (CC BY 4.0)`,
  })),
  {
    name: 'or-bench-toxic',
    file: 'or-bench/or-bench-toxic.csv',
    column: 'prompt',
    source: 'OR-Bench toxic (Cui et al. 2024, CC BY 4.0)',
  },
  {
    name: 'or-bench-toxic-test',
    file: 'or-bench/or-bench-toxic.csv',
    column: 'prompt',
    slice: [-100, undefined],
    kind: 'harmful',
    source: 'last 100 rows of or-bench-toxic.csv',
  },
  {
    name: 'xstest-safe',
    file: 'xstest/xstest_prompts.csv',
    column: 'prompt',
    where: ['label', 'safe'],
    source: 'XSTest (Röttger et al. 2024, CC BY 4.0), label = safe',
  },
  {
    name: 'xstest-unsafe',
    file: 'xstest/xstest_prompts.csv',
    column: 'prompt',
    where: ['label', 'unsafe'],
    source: 'XSTest (Röttger et al. 2024, CC BY 4.0), label = unsafe',
    kind: 'harmful',
  },
  { name: 'oktest', file: 'oktest/OKTest.csv', column: 'prompt', source: 'OKTest (Shi et al. 2024)' },
  {
    name: 'jbb-harmful',
    file: 'jailbreakbench/jailbreakbench.csv',
    column: 'Goal',
    source: 'JailbreakBench behaviors, harmful (MIT)',
    kind: 'harmful',
  },
  {
    name: 'jbb-benign',
    file: 'jailbreakbench/benign-behaviors.csv',
    column: 'goal',
    source: 'JailbreakBench behaviors, benign (MIT)',
  },
  {
    name: 'harmbench-test',
    file: 'harmbench/harmbench_test.csv',
    column: 'Behavior',
    // Standard behaviours only: a contextual behaviour refers to a ContextString the prompt column lacks, and a
    // copyright behaviour asks for song lyrics or book passages, which a refusal-substring judge cannot score as harm.
    where: ['FunctionalCategory', 'standard'],
    source: 'HarmBench test, standard behaviours (MIT)',
    kind: 'harmful',
  },
  { name: 'advbench', file: 'advbench/advbench.csv', column: 'goal', source: 'AdvBench harmful behaviours (MIT)' },
  {
    name: 'strongreject',
    file: 'strongreject/strongreject.csv',
    column: 'forbidden_prompt',
    source: 'StrongREJECT (MIT)',
    kind: 'harmful',
    sortedByCategory: true,
  },
  {
    // CoCoNot's prompts to decline, only the category of requests with safety concerns (395 of 1,001): its other
    // categories (incomplete, unsupported, indeterminate, humanizing requests) are non-compliance without harm.
    name: 'coconot-safety',
    file: 'coconot/coconot_eval.jsonl',
    column: 'prompt',
    where: ['category', 'Requests with safety concerns'],
    source: 'CoCoNot, requests with safety concerns (MIT)',
    kind: 'harmful',
    // One WildChat transcript of 990 characters (517 tokens on the project's model) cannot fit a 512-token context
    // with 64 new tokens; the next longest is 576 characters. Rows over 600 characters (1 of 395) are left out.
    maxChars: 600,
    sortedByCategory: true,
  },
  {
    name: 'coconot-contrast',
    file: 'coconot/coconot_contrast_eval.jsonl',
    column: 'prompt',
    source: 'CoCoNot contrast set (MIT)',
  },
  {
    name: 'malicious-instruct',
    file: 'malicious_instruct/MaliciousInstruct.txt',
    column: '',
    source: 'MaliciousInstruct',
  },
  {
    name: 'tdc2023-dev',
    file: 'tdc2023/tdc2023_dev_behaviors.json',
    column: '',
    source: 'TDC 2023 red-teaming, dev behaviours (MIT)',
  },
  {
    name: 'or-bench-toxic-val',
    file: 'or-bench/or-bench-toxic.csv',
    column: 'prompt',
    slice: [0, -100],
    source: 'or-bench-toxic.csv without its last 100 rows (or-bench-toxic-test)',
  },
  {
    name: 'alpaca-test',
    file: `${RD}/harmless_test.json`,
    column: 'instruction',
    slice: [0, 200],
    source: 'first 200 of harmless-test (Alpaca, CC BY-NC 4.0)',
  },
  // Team-written, original prompts shipped with Scalpel (data/prompts/, described in its README.md). Splits by
  // line: the last BUILTIN_TEST lines are test, the BUILTIN_VAL before them val, the rest (128, the default
  // n_train, so a default run trains on all of them) train. The lines are in a seeded random order, so every split
  // holds every style the sets were written in.
  ...(['harmful', 'harmless', 'pseudo-harmful'] as const).flatMap((set) => [
    {
      name: `builtin-${set}-train`,
      file: `${set}.txt`,
      column: '',
      slice: [0, -(BUILTIN_VAL + BUILTIN_TEST)] as [number, number],
      source: 'Scalpel team (original)',
      builtin: true,
    },
    {
      name: `builtin-${set}-val`,
      file: `${set}.txt`,
      column: '',
      slice: [-(BUILTIN_VAL + BUILTIN_TEST), -BUILTIN_TEST] as [number, number],
      source: 'Scalpel team (original)',
      builtin: true,
    },
    {
      name: `builtin-${set}-test`,
      file: `${set}.txt`,
      column: '',
      slice: [-BUILTIN_TEST, undefined] as [number, undefined],
      source: 'Scalpel team (original)',
      builtin: true,
    },
  ]),
];

/**
 * harmful-val-pool: harmful validation prompts of several sources and styles for the Pareto search's "harmful
 * refusal kept" objective. Never a test set and never a prompt the run trains on: AdvBench, MaliciousInstruct and
 * TDC 2023 feed refusal_direction's harmful_train, so their rows in it are left out, and so is any row of a harmful
 * evaluation set (JailbreakBench, HarmBench test, StrongREJECT, XSTest-unsafe, OR-Bench-toxic test; harmful-test is
 * the first three together). README's "harmful-val-pool" lists the counts.
 */
export const POOLS: readonly PoolSpec[] = [
  {
    name: 'harmful-val-pool',
    parts: ['harmful-val', 'advbench', 'malicious-instruct', 'tdc2023-dev', 'or-bench-toxic-val'],
    // The run's harmful training prompts and every held-out harmful evaluation set (the `kind: 'harmful'` ones).
    exclude: ['harmful-train', 'harmful-test', ...DATASETS.filter((d) => d.kind === 'harmful').map((d) => d.name)],
    source:
      'refusal_direction harmful_val, AdvBench, MaliciousInstruct, TDC 2023 dev, OR-Bench-toxic (not its test rows); minus harmful_train and every harmful test set',
  },
  {
    // The team's 260 original harmful prompts (data/prompts/harmful.txt, every split): in no public set and in none
    // of the project model's training data. The public sources above all are in it (the recipe safety-tunes on
    // AdvBench, MaliciousInstruct, TDC 2023, HarmBench val and OR-Bench-toxic), so on that model their refusals are
    // memorised: the default edit keeps 100% of them refused while held-out harmful sets lose 18 points.
    name: 'harmful-val-team',
    parts: ['builtin-harmful-train', 'builtin-harmful-val', 'builtin-harmful-test'],
    exclude: ['harmful-train', ...DATASETS.filter((d) => d.kind === 'harmful').map((d) => d.name)],
    source:
      "the Scalpel team's 260 original harmful prompts (data/prompts/harmful.txt), minus harmful_train and every harmful test set",
  },
];

/** A prompt's identity for overlap checks: case and runs of whitespace do not make a different prompt. */
export function promptKey(text: string): string {
  return text.toLowerCase().replace(/\s+/g, ' ').trim();
}

/** The sets a reference reads: a pool's parts and exclusions, else the reference itself (for `datasets fetch`). */
export function setsRead(ref: string): string[] {
  const pool = POOLS.find((p) => p.name === ref.replace(/:\d+$/, ''));
  return pool ? [...pool.parts, ...pool.exclude] : [ref];
}

function loadPool(pool: PoolSpec, dataDir: string | undefined): LoadedSet {
  const excluded = new Set(pool.exclude.flatMap((n) => loadPromptSet(n, dataDir).prompts.map(promptKey)));
  const seen = new Set<string>();
  const prompts: string[] = [];
  for (const part of pool.parts)
    for (const p of loadPromptSet(part, dataDir).prompts) {
      const key = promptKey(p);
      if (excluded.has(key) || seen.has(key)) continue;
      seen.add(key);
      prompts.push(p);
    }
  return { name: pool.name, prompts, source: pool.source, path: pool.parts.join(' + ') };
}

/** The package root (the folder holding package.json), found from this module's location. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'data'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the Scalpel package root');
    dir = up;
  }
}

export function builtinDir(): string {
  return join(packageRoot(), 'data', 'prompts');
}

/** --data-dir, else $SCALPEL_DATA, else undefined (built-in prompt sets only). */
export function resolveDataDir(flag?: string): string | undefined {
  const dir = flag ?? process.env['SCALPEL_DATA'];
  if (dir === undefined || dir === '') return undefined;
  const abs = resolve(dir);
  if (!existsSync(abs)) throw new ScalpelError(`--data-dir ${dir}: no such directory`);
  return abs;
}

export function findDataset(name: string): DatasetSpec | undefined {
  return DATASETS.find((d) => d.name === name);
}

/** The pinned public source of a set's file (undefined for built-in sets). */
export function setSource(spec: DatasetSpec): FileSource | undefined {
  return spec.builtin ? undefined : fileSource(spec.file);
}

/** The public set that a reference names ("name" or "name:N"); undefined for built-in sets and prompt files. */
export function publicSetOf(ref: string): DatasetSpec | undefined {
  const m = /^(.*):(\d+)$/.exec(ref);
  const spec = findDataset(m && findDataset(m[1]!) ? m[1]! : ref);
  return spec && !spec.builtin ? spec : undefined;
}

export interface LoadedSet {
  /** What the user asked for: a dataset name (maybe with :N) or a file path. */
  name: string;
  prompts: string[];
  source: string;
  path: string;
  /** Evaluation sets: rows dropped because the same text is in a training or validation set (dropTrainingOverlaps). */
  overlapDropped?: number;
}

function sliceRows<T>(rows: T[], slice?: [number, number | undefined]): T[] {
  if (!slice) return rows;
  return rows.slice(slice[0], slice[1]);
}

/** The prompts of a set described by a spec (a named set's, or one another module defines for its own use). */
export function loadDatasetSpec(spec: DatasetSpec, dataDir: string | undefined): { prompts: string[]; path: string } {
  return loadSpec(spec, dataDir);
}

function loadSpec(spec: DatasetSpec, dataDir: string | undefined): { prompts: string[]; path: string } {
  if (spec.builtin) {
    const path = join(builtinDir(), spec.file);
    return { prompts: sliceRows(readPromptFile(path), spec.slice), path };
  }
  // Without a data directory the download cache stands in: it has the raw/ layout, and every file in it was
  // checked against its pinned sha256 when it was fetched.
  const path = join(dataDir ?? datasetCacheDir(), spec.file);
  if (dataDir === undefined && !existsSync(path)) {
    throw new ScalpelError(
      `dataset ${spec.name}: needs a data directory or a download (run \`scalpel datasets fetch ${spec.name}\`, pass --data-dir DIR or set SCALPEL_DATA)`,
    );
  }
  if (!existsSync(path))
    throw new ScalpelError(`dataset ${spec.name}: ${path} not found (is --data-dir the raw/ folder?)`);
  let prompts: string[];
  if (spec.where && spec.file.endsWith('.jsonl')) {
    const [field, value] = spec.where;
    prompts = readPromptText(path)
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line, i) => {
        try {
          return JSON.parse(line) as Record<string, unknown>;
        } catch {
          throw new ScalpelError(`${path} line ${i + 1}: not a JSON object`);
        }
      })
      .filter((o) => o[field] === value)
      .map((o) => (typeof o[spec.column] === 'string' ? (o[spec.column] as string).trim() : ''))
      .filter((p) => p !== '');
  } else if (spec.where) {
    const rows = parseCsv(readPromptText(path), path);
    const header = rows[0]!;
    const pc = header.indexOf(spec.column);
    const wc = header.indexOf(spec.where[0]);
    if (pc < 0 || wc < 0) throw new ScalpelError(`${path}: expected columns ${spec.column} and ${spec.where[0]}`);
    prompts = rows
      .slice(1)
      .filter((r) => r[wc] === spec.where![1])
      .map((r) => (r[pc] ?? '').trim())
      .filter((p) => p !== '');
  } else {
    prompts = readPromptFile(path, { column: spec.column });
  }
  if (spec.maxChars !== undefined) prompts = prompts.filter((p) => p.length <= spec.maxChars!);
  return { prompts: sliceRows(prompts, spec.slice), path };
}

/** `name:N`: the first N rows, or N rows spread evenly over a file sorted by category. */
function capRows(prompts: string[], limit: number | undefined, spread = false): string[] {
  if (limit === undefined || limit >= prompts.length) return prompts;
  if (!spread) return prompts.slice(0, limit);
  return Array.from({ length: limit }, (_, i) => prompts[Math.floor((i * prompts.length) / limit)]!);
}

/**
 * Loads a prompt set: a dataset name, optionally with ":N" for its first N prompts (e.g. alpaca-test:100), or a
 * path to a prompt file. Unknown names that are not files are a one-line error listing the known names.
 */
export function loadPromptSet(ref: string, dataDir: string | undefined, column?: string): LoadedSet {
  const m = /^(.*):(\d+)$/.exec(ref);
  const named = (n: string) => findDataset(n) !== undefined || POOLS.some((p) => p.name === n);
  const base = m && named(m[1]!) ? m[1]! : ref;
  const limit = m && named(m[1]!) ? Number(m[2]) : undefined;
  const pool = POOLS.find((p) => p.name === base);
  if (pool) {
    const loaded = loadPool(pool, dataDir);
    return { ...loaded, name: ref, prompts: limit === undefined ? loaded.prompts : loaded.prompts.slice(0, limit) };
  }
  const spec = findDataset(base);
  if (spec) {
    const { prompts, path } = loadSpec(spec, dataDir);
    if (prompts.length === 0) throw new ScalpelError(`dataset ${spec.name}: ${path} holds no prompts`);
    return { name: ref, prompts: capRows(prompts, limit, spec.sortedByCategory), source: spec.source, path };
  }
  if (existsSync(ref)) {
    return { name: ref, prompts: readPromptFile(ref, { column }), source: 'user file', path: resolve(ref) };
  }
  if (/[/\\.]/.test(ref)) throw new ScalpelError(`${ref}: no such prompt file`);
  throw new ScalpelError(
    `unknown dataset "${ref}" (known: ${[...DATASETS, ...POOLS].map((d) => d.name).join(', ')}; or pass a prompt file)`,
  );
}

/** Parses prompt text given in memory (used by tests). */
export { parsePrompts };

// ---------------------------------------------------------------------------------------------------------------
// The pipeline's prompts.

/** The six training and validation sets, by config field, with the names run.json records them under. */
export const SET_LABELS = {
  harmfulTrain: 'harmful_train',
  harmlessTrain: 'harmless_train',
  pseudoTrain: 'pseudo_train',
  harmfulVal: 'harmful_val',
  harmlessVal: 'harmless_val',
  pseudoVal: 'pseudo_val',
} as const;
type SetKey = keyof typeof SET_LABELS;

export interface SampledSets {
  sets: Record<SetKey, { loaded: LoadedSet; prompts: string[] }>;
}

/**
 * Loads and samples the six prompt sets: n_train from each training set and n_val from each validation set, by
 * mulberry32(seed). When a training and a validation set are the same source they are split without overlap.
 */
export function sampleSets(c: MethodConfig, dataDir: string | undefined): SampledSets {
  if (c.sampler === 'python') return samplePaperOrder(c, dataDir);
  const out = {} as SampledSets['sets'];
  for (const [train, val] of [
    ['harmfulTrain', 'harmfulVal'],
    ['harmlessTrain', 'harmlessVal'],
    ['pseudoTrain', 'pseudoVal'],
  ] as const) {
    const lt = loadPromptSet(c[train], dataDir, c.column);
    if (c[train] === c[val]) {
      const all = shuffled(lt.prompts, mulberry32(c.seed));
      const nVal = Math.min(c.nVal, Math.floor(all.length / 2));
      out[val] = { loaded: lt, prompts: all.slice(0, nVal) };
      out[train] = { loaded: lt, prompts: all.slice(nVal, nVal + c.nTrain) };
    } else {
      const lv = loadPromptSet(c[val], dataDir, c.column);
      out[train] = { loaded: lt, prompts: sample(lt.prompts, c.nTrain, c.seed) };
      out[val] = { loaded: lv, prompts: validationDraws(lv.prompts, c) };
    }
  }
  return { sets: out };
}

/**
 * The j-th draw's seed from a base seed: the base itself for j = 0 (so one draw is the ordinary sample), else a
 * golden-ratio step away, so the draws of nearby base seeds (a stability run's seed, seed + 1, …) do not share seeds.
 */
export function drawSeed(seed: number, j: number): number {
  return j === 0 ? seed : (seed + Math.imul(j, 0x9e3779b9)) >>> 0;
}

/**
 * --val-draws V: V samples of n_val prompts, concatenated (a prompt may recur). Every draw has n_val prompts, so a
 * mean score over the concatenation is the mean of the V draws' mean scores.
 */
function validationDraws(prompts: readonly string[], c: MethodConfig): string[] {
  const draws = c.valDraws ?? 1;
  return Array.from({ length: draws }, (_, j) => sample(prompts, c.nVal, drawSeed(c.seed, j))).flat();
}

/**
 * The paper code's draw: one CPython generator seeded with `seed`, then random.sample(set, n) for the pseudo-harmful,
 * harmless and harmful training sets and then their validation sets, in that order. Each set is sampled on its own,
 * as the paper's split files are (a training and validation set of one source may overlap here). A set smaller than
 * n is taken whole, in sampled order, where CPython would refuse.
 */
function samplePaperOrder(c: MethodConfig, dataDir: string | undefined): SampledSets {
  const rng = new PythonRandom(c.seed);
  const out = {} as SampledSets['sets'];
  const order = ['pseudoTrain', 'harmlessTrain', 'harmfulTrain', 'pseudoVal', 'harmlessVal', 'harmfulVal'] as const;
  for (const key of order) {
    const loaded = loadPromptSet(c[key], dataDir, c.column);
    const n = key.endsWith('Train') ? c.nTrain : c.nVal;
    out[key] = { loaded, prompts: rng.sample(loaded.prompts, Math.min(n, loaded.prompts.length)) };
  }
  return { sets: out };
}

/**
 * Parses a dataset reference list for evaluation, loading each (errors early, before anything is written), with
 * every row that a training or validation set of `c` also holds removed (dropTrainingOverlaps).
 */
export function loadEvalSets(c: MethodConfig, dataDir: string | undefined): LoadedSet[] {
  const sets = c.evalDatasets.map((ref) => loadPromptSet(ref, dataDir, c.column));
  return dropTrainingOverlaps(sets, trainingSets(c, dataDir));
}

/**
 * The whole training and validation sets the configuration draws from (not only this seed's sample: another draw,
 * as `scalpel stability` makes, may take any of their rows). A set that no longer loads (a user's prompt file
 * deleted since the run) is left out: evaluation must not need it.
 */
export function trainingSets(c: MethodConfig, dataDir: string | undefined): LoadedSet[] {
  const refs = [...new Set((Object.keys(SET_LABELS) as SetKey[]).map((k) => c[k]))];
  const out: LoadedSet[] = [];
  for (const ref of refs) {
    try {
      out.push(loadPromptSet(ref, dataDir, c.column));
    } catch (e) {
      if (!(e instanceof ScalpelError)) throw e;
    }
  }
  return out;
}

/**
 * An evaluation row whose exact text (trimmed) is also a training or validation prompt measures what the method
 * was fitted on, not held-out behaviour: such rows are dropped, and each set records how many (overlapDropped). A set
 * named as a training or validation set itself (`--eval or-bench-hard-val`) is kept whole.
 */
export function dropTrainingOverlaps(evalSets: LoadedSet[], training: readonly LoadedSet[]): LoadedSet[] {
  const seen = new Set(training.flatMap((t) => t.prompts.map((p) => p.trim())));
  const trainingNames = new Set(training.map((t) => t.name));
  return evalSets.map((set) => {
    // A set named as one of the run's own training or validation sets is a deliberate look at that data.
    if (trainingNames.has(set.name)) return set;
    const kept = set.prompts.filter((p) => !seen.has(p.trim()));
    if (kept.length === 0)
      throw new ScalpelError(
        `evaluation set ${set.name}: every prompt is also a training or validation prompt; evaluate on held-out prompts`,
      );
    return { ...set, prompts: kept, overlapDropped: set.prompts.length - kept.length };
  });
}
