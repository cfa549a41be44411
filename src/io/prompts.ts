// Reading user prompt files: CSV (with a header row), JSON (an array of strings or of objects), JSONL (one string
// or object per line) or plain text (one prompt per line). Objects and CSV rows take the prompt from `column`, or
// from the first of the usual field names. Failures are one-line ScalpelErrors naming the file.
import { readFileSync, statSync } from 'node:fs';
import { extname, basename } from 'node:path';
import { ScalpelError, quoteUntrusted } from '../errors.js';

/** Field names tried, in order, when no column is given. */
export const PROMPT_FIELDS = [
  'prompt',
  'instruction',
  'goal',
  'forbidden_prompt',
  'behavior',
  'question',
  'text',
  'query',
];

export interface PromptFileOptions {
  /** CSV column or JSON field holding the prompt. */
  column?: string;
}

/** RFC 4180 CSV: quoted fields may hold commas, doubled quotes and newlines; CRLF or LF line ends. */
export function parseCsv(text: string, file = 'CSV'): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let i = 0;
  if (text.charCodeAt(0) === 0xfeff) i = 1;
  let line = 1;
  let quoteLine = 0;
  for (; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else {
        if (ch === '\n') line++;
        field += ch;
      }
    } else if (ch === '"') {
      if (field.length > 0) throw new ScalpelError(`${file} line ${line}: stray quote inside an unquoted field`);
      quoted = true;
      quoteLine = line;
    } else if (ch === ',') {
      row.push(field);
      field = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      field = '';
      rows.push(row);
      row = [];
      line++;
    } else field += ch;
  }
  if (quoted) throw new ScalpelError(`${file} line ${quoteLine}: quoted field is never closed`);
  if (field.length > 0 || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows.filter((r) => !(r.length === 1 && r[0] === ''));
}

/** A file's column names as an error lists them: the first few, each cut short (the constructor escapes them). */
function columnList(keys: string[]): string {
  if (keys.length === 0) return 'none';
  const shown = keys.slice(0, 8).map((k) => (k.length > 40 ? `${k.slice(0, 40)}…` : k));
  return `${shown.join(', ')}${keys.length > 8 ? `, … (${keys.length} in all)` : ''}`;
}

function pickField(keys: string[], column: string | undefined, file: string): string {
  if (column !== undefined) {
    const exact = keys.find((k) => k === column) ?? keys.find((k) => k.toLowerCase() === column.toLowerCase());
    if (exact === undefined)
      throw new ScalpelError(`${file}: no column ${quoteUntrusted(column, 80)} (columns: ${columnList(keys)})`);
    return exact;
  }
  for (const f of PROMPT_FIELDS) {
    const k = keys.find((key) => key.toLowerCase() === f);
    if (k !== undefined) return k;
  }
  if (keys.length === 1) return keys[0]!;
  throw new ScalpelError(
    `${file}: cannot tell which column holds the prompt (columns: ${columnList(keys)}); pass --column`,
  );
}

function fromValues(
  values: unknown[],
  column: string | undefined,
  file: string,
  where: (i: number) => string,
): string[] {
  const out: string[] = [];
  let field: string | undefined;
  values.forEach((v, i) => {
    if (typeof v === 'string') {
      out.push(v);
      return;
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      throw new ScalpelError(`${file}${where(i)}: expected a string or an object with a prompt field`);
    }
    const obj = v as Record<string, unknown>;
    field ??= pickField(Object.keys(obj), column, file);
    const p = obj[field];
    if (typeof p !== 'string')
      throw new ScalpelError(`${file}${where(i)}: field ${quoteUntrusted(field, 80)} is missing or not a string`);
    out.push(p);
  });
  return out;
}

/** Parses prompt-file text by format ('csv' | 'json' | 'jsonl' | 'txt'). */
export function parsePrompts(
  text: string,
  format: 'csv' | 'json' | 'jsonl' | 'txt',
  file: string,
  opts: PromptFileOptions = {},
): string[] {
  let prompts: string[];
  if (text.trim() === '') throw new ScalpelError(`${file}: file is empty, expected prompts`);
  if (format === 'csv') {
    const rows = parseCsv(text, file);
    // Text of nothing but empty quoted fields ("") parses to no rows at all.
    if (rows.length === 0) throw new ScalpelError(`${file}: no header row, expected column names on the first line`);
    const header = rows[0]!.map((h) => h.trim());
    const col = header.indexOf(
      pickField(
        header.filter((h) => h !== ''),
        opts.column,
        file,
      ),
    );
    prompts = [];
    for (let r = 1; r < rows.length; r++) {
      const cell = rows[r]![col];
      if (cell === undefined)
        throw new ScalpelError(`${file} row ${r + 1}: has ${rows[r]!.length} fields, expected at least ${col + 1}`);
      prompts.push(cell);
    }
  } else if (format === 'json') {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw new ScalpelError(`${file}: malformed JSON (${(e as Error).message})`);
    }
    if (!Array.isArray(data)) {
      // { "prompts": [...] } or any object with exactly one array field.
      const arrays = data && typeof data === 'object' ? Object.values(data as object).filter(Array.isArray) : [];
      if (arrays.length !== 1) throw new ScalpelError(`${file}: expected a JSON array of prompts`);
      data = arrays[0];
    }
    prompts = fromValues(data as unknown[], opts.column, file, (i) => ` item ${i}`);
  } else if (format === 'jsonl') {
    const values: unknown[] = [];
    const lineNos: number[] = [];
    text.split(/\r?\n/).forEach((line, i) => {
      if (line.trim() === '') return;
      try {
        values.push(JSON.parse(line));
        lineNos.push(i + 1);
      } catch {
        throw new ScalpelError(`${file} line ${i + 1}: not valid JSON`);
      }
    });
    prompts = fromValues(values, opts.column, file, (i) => ` line ${lineNos[i]}`);
  } else {
    prompts = text.split(/\r?\n/);
  }
  prompts = prompts.map((p) => p.trim()).filter((p) => p !== '');
  if (prompts.length === 0) throw new ScalpelError(`${file}: no prompts found`);
  return prompts;
}

export function promptFormat(path: string): 'csv' | 'json' | 'jsonl' | 'txt' {
  const ext = extname(path).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.json') return 'json';
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  return 'txt';
}

/** Largest prompt file read by default: far beyond any prompt set, well below what would exhaust memory. */
export const DEFAULT_PROMPT_FILE_LIMIT = 64 * 1024 * 1024;

/** The prompt file size limit: $SCALPEL_MAX_PROMPT_FILE_BYTES, else DEFAULT_PROMPT_FILE_LIMIT. */
export function promptFileLimit(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env['SCALPEL_MAX_PROMPT_FILE_BYTES'];
  if (raw === undefined || raw.trim() === '') return DEFAULT_PROMPT_FILE_LIMIT;
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < 1)
    throw new ScalpelError(
      `SCALPEL_MAX_PROMPT_FILE_BYTES=${JSON.stringify(raw)}: expected a positive whole number of bytes`,
    );
  return n;
}

const size = (bytes: number) =>
  bytes < 2 ** 20 ? `${bytes} bytes` : `${(bytes / 2 ** 20).toFixed(1)} MiB (${bytes} bytes)`;

/**
 * A prompt file's text, refused with one line when it is larger than the limit: a prompt file is read whole and
 * parsed in memory, so a wrong path (a model's weights, a disk image) must not take the machine's memory with it.
 */
export function readPromptText(path: string): string {
  const limit = promptFileLimit();
  const bytes = statSync(path).size;
  if (bytes > limit)
    throw new ScalpelError(
      `${path}: prompt file is ${size(bytes)}, more than the limit of ${size(limit)}; set SCALPEL_MAX_PROMPT_FILE_BYTES to raise it`,
    );
  return readFileSync(path, 'utf8');
}

/** Reads a prompt file; the format comes from the extension (.csv, .json, .jsonl; anything else is one per line). */
export function readPromptFile(path: string, opts: PromptFileOptions = {}): string[] {
  let text: string;
  try {
    text = readPromptText(path);
  } catch (e) {
    if (e instanceof ScalpelError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new ScalpelError(
      `${path}: cannot read prompt file (${code === 'ENOENT' ? 'no such file' : (code ?? (e as Error).message)})`,
    );
  }
  return parsePrompts(text, promptFormat(path), path || basename(path), opts);
}
