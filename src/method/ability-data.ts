// The general-ability samples that `scalpel ability` reads, by name, and their parsers: MMLU (five subjects, test
// questions with each subject's five dev questions as shots), ARC-Challenge (test set) and WikiText-2 (test split,
// cut into its articles). They are read from a data directory in the raw/ layout, else from the download cache
// (`scalpel datasets fetch mmlu arc-challenge wikitext2`); sources.ts pins every file.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ScalpelError } from '../errors.js';
import { parseCsv } from '../io/prompts.js';
import { datasetCacheDir, fileSource, type FileSource } from './sources.js';

/** The MMLU subjects of the sample, in the order their items are interleaved. */
export const MMLU_SUBJECTS = [
  'abstract_algebra',
  'global_facts',
  'high_school_geography',
  'machine_learning',
  'world_religions',
] as const;

export interface AbilitySet {
  name: string;
  files: string[];
  source: string;
}

export const ABILITY_SETS: readonly AbilitySet[] = [
  {
    name: 'mmlu',
    files: MMLU_SUBJECTS.flatMap((s) => [`mmlu/test/${s}_test.csv`, `mmlu/dev/${s}_dev.csv`]),
    source: 'MMLU (Hendrycks et al. 2021, MIT): 5 subjects, 681 test questions, 5 dev questions each as shots',
  },
  {
    name: 'arc-challenge',
    files: ['arc_challenge/arc_challenge_test.jsonl'],
    source: 'ARC-Challenge test (Clark et al. 2018, CC BY-SA 4.0): 1,172 questions',
  },
  {
    name: 'wikitext2',
    files: ['wikitext2/test.txt'],
    source: 'WikiText-2 test split, tokenised variant (Merity et al. 2016, CC BY-SA): 62 articles',
  },
];

export function findAbilitySet(name: string): AbilitySet | undefined {
  return ABILITY_SETS.find((s) => s.name === name);
}

/** The pinned sources of a set's files. */
export function abilitySources(set: AbilitySet): FileSource[] {
  return set.files.map((f) => {
    const s = fileSource(f);
    if (!s) throw new Error(`internal: ${f} has no pinned source`);
    return s;
  });
}

/** The text of one file of a set, from the data directory or else the download cache. */
function readSetFile(set: string, file: string, dataDir: string | undefined): string {
  const path = join(dataDir ?? datasetCacheDir(), file);
  if (!existsSync(path)) {
    const how =
      dataDir === undefined
        ? `run \`scalpel datasets fetch ${set}\`, pass --data-dir DIR or set SCALPEL_DATA`
        : 'is --data-dir the raw/ folder?';
    throw new ScalpelError(`dataset ${set}: ${path} not found (${how})`);
  }
  return readFileSync(path, 'utf8');
}

export interface McItem {
  /** Stable id: `subject/row` for MMLU, the ARC id. */
  id: string;
  question: string;
  choices: string[];
  /** Index of the right choice. */
  answer: number;
  /** MMLU subject (underscored, as in the file name). */
  subject?: string;
}

function mmluRows(set: string, file: string, dataDir: string | undefined, subject: string): McItem[] {
  const path = join(dataDir ?? datasetCacheDir(), file);
  const rows = parseCsv(readSetFile(set, file, dataDir), path);
  const header = rows[0] ?? [];
  const want = ['question', 'choice0', 'choice1', 'choice2', 'choice3', 'answer'];
  const cols = want.map((c) => header.indexOf(c));
  if (cols.some((c) => c < 0)) throw new ScalpelError(`${path}: expected columns ${want.join(', ')}`);
  return rows.slice(1).map((r, i) => {
    const answer = Number(r[cols[5]!]);
    if (!(Number.isInteger(answer) && answer >= 0 && answer < 4))
      throw new ScalpelError(`${path}: row ${i + 2}: answer ${JSON.stringify(r[cols[5]!])}, expected 0, 1, 2 or 3`);
    return {
      id: `${subject}/${i}`,
      question: r[cols[0]!] ?? '',
      choices: cols.slice(1, 5).map((c) => r[c] ?? ''),
      answer,
      subject,
    };
  });
}

export interface MmluSample {
  /** Test items, interleaved by subject (one of each subject in turn), so any prefix covers every subject. */
  items: McItem[];
  /** Each subject's dev questions, the few-shot pool (never evaluated). */
  dev: Map<string, McItem[]>;
}

export function loadMmlu(dataDir: string | undefined): MmluSample {
  const tests = MMLU_SUBJECTS.map((s) => mmluRows('mmlu', `mmlu/test/${s}_test.csv`, dataDir, s));
  const dev = new Map(MMLU_SUBJECTS.map((s) => [s, mmluRows('mmlu', `mmlu/dev/${s}_dev.csv`, dataDir, s)] as const));
  const items: McItem[] = [];
  for (let i = 0; i < Math.max(...tests.map((t) => t.length)); i++)
    for (const t of tests) if (i < t.length) items.push(t[i]!);
  return { items, dev };
}

export function loadArc(dataDir: string | undefined): McItem[] {
  const file = 'arc_challenge/arc_challenge_test.jsonl';
  const path = join(dataDir ?? datasetCacheDir(), file);
  const lines = readSetFile('arc-challenge', file, dataDir)
    .split('\n')
    .filter((l) => l.trim() !== '');
  return lines.map((line, i) => {
    let row: { id?: unknown; question?: unknown; options?: unknown; answer?: unknown };
    try {
      row = JSON.parse(line);
    } catch {
      throw new ScalpelError(`${path}: line ${i + 1} is not valid JSON`);
    }
    const options = Array.isArray(row.options) ? (row.options as { label?: unknown; text?: unknown }[]) : [];
    const labels = options.map((o) => String(o.label));
    const answer = labels.indexOf(String(row.answer));
    if (typeof row.question !== 'string' || options.length < 2 || answer < 0)
      throw new ScalpelError(`${path}: line ${i + 1}: expected question, options [{label, text}] and answer (a label)`);
    return { id: String(row.id ?? i), question: row.question, choices: options.map((o) => String(o.text)), answer };
  });
}

export interface TextDoc {
  title: string;
  text: string;
}

/**
 * WikiText-2's articles: each starts at a top-level heading line " = Title = " and runs to the next one; the
 * text is the file's lines as they are (tokenised form, `<unk>` and ` @-@ ` kept), leading and trailing
 * whitespace of the whole article removed.
 */
export function loadWikitext(dataDir: string | undefined): TextDoc[] {
  const lines = readSetFile('wikitext2', 'wikitext2/test.txt', dataDir).split(/(?<=\n)/);
  const docs: { title: string; lines: string[] }[] = [];
  for (const line of lines) {
    const m = /^ = ([^=].*) = \n?$/.exec(line);
    if (m) docs.push({ title: m[1]!, lines: [] });
    docs.at(-1)?.lines.push(line);
  }
  return docs.map((d) => ({ title: d.title, text: d.lines.join('').trim() }));
}
