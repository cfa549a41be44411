// The prompts the conditional ablation's gate learns from and is calibrated on. The gate must tell harm from
// harmless prompts that only sound harmful, across the ways harm is written (AdvBench-style imperatives, OR-Bench's
// toxic questions, MaliciousInstruct's "how to" questions, TDC's short behaviours, the team's plain requests), so
// it learns from several sources of each kind. No row of any evaluation set may be among them: every set the
// project evaluates on (and the validation sets of other selections) is read and its rows, compared as normalised
// text, are dropped from the gate's training and validation rows.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { mulberry32, shuffled } from '../rng.js';
import { type DatasetSpec, findDataset, loadDatasetSpec } from './datasets.js';

/** One source of the gate's prompts: its training rows, and its validation rows (a named set, or a held-out share). */
interface GateSource {
  label: string;
  spec: DatasetSpec;
  /** A named validation set of the same source; without one, VAL_SHARE of the rows are held out. */
  val?: string;
}

/** Share of a source's rows held out for validation when it has no validation set of its own. */
const VAL_SHARE = 0.2;
/** At most this many training rows per source (every source gets equal weight in the fit anyway). */
const MAX_TRAIN_PER_SOURCE = 320;

const named = (name: string): DatasetSpec => findDataset(name)!;
/** A file no named set reads (so no pinned download either: only from a data directory); the gate is its one reader. */
const file = (name: string, path: string, column: string, source: string): DatasetSpec => ({
  name,
  file: path,
  column,
  source,
});

export const HARMFUL_SOURCES: readonly GateSource[] = [
  { label: 'harmful-train', spec: named('harmful-train'), val: 'harmful-val' },
  { label: 'builtin-harmful-train', spec: named('builtin-harmful-train'), val: 'builtin-harmful-val' },
  { label: 'advbench', spec: named('advbench') },
  { label: 'or-bench-toxic (without its test rows)', spec: named('or-bench-toxic-val') },
  { label: 'malicious-instruct', spec: named('malicious-instruct') },
  { label: 'tdc2023-dev', spec: named('tdc2023-dev') },
  { label: 'tdc2023-test', spec: file('tdc2023-test', 'tdc2023/tdc2023_test_behaviors.json', '', 'TDC 2023') },
];

export const PSEUDO_SOURCES: readonly GateSource[] = [
  { label: 'or-bench-hard-train', spec: named('or-bench-hard-train'), val: 'or-bench-hard-val' },
  {
    label: 'builtin-pseudo-harmful-train',
    spec: named('builtin-pseudo-harmful-train'),
    val: 'builtin-pseudo-harmful-val',
  },
  { label: 'oktest-heldout', spec: file('oktest-heldout', 'oktest/OKTest_heldout.csv', 'prompt', 'OKTest held-out') },
];

/**
 * Sets whose rows the gate never sees: every evaluation set (the paper's, the held-out harmful ones, CoCoNot) and
 * the test splits. XSTest and OKTest are evaluated whole, so their train splits are test rows here too. Validation
 * sets are not excluded (harmful-val is HarmBench's validation split): the gate validates on them as select does.
 */
const EXCLUDED: readonly DatasetSpec[] = [
  ...[
    'xstest-safe',
    'xstest-unsafe',
    'or-bench-hard-test',
    'oktest',
    'jbb-harmful',
    'jbb-benign',
    'or-bench-toxic-test',
    'harmbench-test',
    'strongreject',
    'coconot-contrast',
    'alpaca-test',
    'harmful-test',
    'harmless-test',
    'builtin-harmful-test',
    'builtin-pseudo-harmful-test',
  ].map(named),
  file('coconot', 'coconot/coconot_eval.jsonl', 'prompt', 'CoCoNot'),
];

/** Text as compared for overlaps: lower case, whitespace collapsed. */
export const normalise = (s: string): string => s.toLowerCase().split(/\s+/).filter(Boolean).join(' ');

export interface GateSet {
  label: string;
  train: string[];
  val: string[];
  /** Rows dropped because an evaluation set (or the other split) holds the same text. */
  dropped: number;
}

/** A source as the gate considered it, whether or not any of its rows were left to learn from. */
export interface ConsideredSource {
  label: string;
  class: 'harmful' | 'pseudo';
  /** The set it reads: a named set of datasets.ts, or a file only the gate reads. */
  set: string;
  /**
   * fitted: in the gate's data; missing: its file (or its named validation set's) is not in the data directory;
   * empty: no training or no validation row left once evaluation rows and rows of earlier sources were dropped.
   */
  status: 'fitted' | 'missing' | 'empty';
  train: number;
  val: number;
  dropped: number;
}

export interface GateData {
  harmful: GateSet[];
  pseudo: GateSet[];
  /** Sources skipped because their file is not in the data directory. */
  missing: string[];
  /** Every source, in the order they were read (each takes its rows before the next one), fitted or not. */
  considered: ConsideredSource[];
}

const available = (spec: DatasetSpec, dataDir: string | undefined): boolean =>
  spec.builtin === true || (dataDir !== undefined && existsSync(join(dataDir, spec.file)));

/**
 * Loads every source present in `dataDir` (built-in sets always), drops rows found in an evaluation set (and in
 * `extraExcluded`, e.g. a run's own evaluation sets) or already taken by an earlier source, and splits each into
 * training and validation rows (seeded).
 */
export function loadGateData(dataDir: string | undefined, seed: number, extraExcluded: string[][] = []): GateData {
  const banned = new Set<string>();
  for (const spec of EXCLUDED)
    if (available(spec, dataDir)) for (const p of loadDatasetSpec(spec, dataDir).prompts) banned.add(normalise(p));
  for (const rows of extraExcluded) for (const p of rows) banned.add(normalise(p));
  // Validation rows of named sets are reserved first, so no training row repeats one.
  const namedVal = new Map<string, string[]>();
  for (const src of [...HARMFUL_SOURCES, ...PSEUDO_SOURCES])
    if (src.val && available(named(src.val), dataDir)) {
      const rows = loadDatasetSpec(named(src.val), dataDir).prompts.filter((p) => !banned.has(normalise(p)));
      namedVal.set(src.label, rows);
      for (const p of rows) banned.add(normalise(p));
    }
  const missing: string[] = [];
  const considered: ConsideredSource[] = [];
  const load = (sources: readonly GateSource[], cls: ConsideredSource['class']): GateSet[] => {
    const out: GateSet[] = [];
    for (const src of sources) {
      const record = { label: src.label, class: cls, set: src.spec.name };
      if (!available(src.spec, dataDir) || (src.val && !namedVal.has(src.label))) {
        missing.push(src.label);
        considered.push({ ...record, status: 'missing', train: 0, val: 0, dropped: 0 });
        continue;
      }
      const all = loadDatasetSpec(src.spec, dataDir).prompts;
      const seen = new Set<string>();
      const rows = all.filter((p) => {
        const key = normalise(p);
        if (banned.has(key) || seen.has(key)) return false;
        seen.add(key);
        return true;
      });
      for (const p of rows) banned.add(normalise(p));
      const mixed = shuffled(rows, mulberry32(seed));
      const nVal = src.val ? 0 : Math.round(VAL_SHARE * mixed.length);
      const val = src.val ? namedVal.get(src.label)! : mixed.slice(0, nVal);
      const train = mixed.slice(nVal, nVal + MAX_TRAIN_PER_SOURCE);
      const dropped = all.length - rows.length;
      const fitted = train.length > 0 && val.length > 0;
      if (fitted) out.push({ label: src.label, train, val, dropped });
      considered.push({
        ...record,
        status: fitted ? 'fitted' : 'empty',
        train: train.length,
        val: val.length,
        dropped,
      });
    }
    return out;
  };
  const harmful = load(HARMFUL_SOURCES, 'harmful');
  const pseudo = load(PSEUDO_SOURCES, 'pseudo');
  return { harmful, pseudo, missing, considered };
}
