// Small JSON files of a model directory (config.json, tokenizer_config.json, …), read with one-line errors.
import * as fs from 'node:fs';
import { ScalpelError } from '../errors.js';

/** Reads and parses a JSON file, with one-line errors naming it. Returns null when it does not exist and is optional. */
export function readJsonFile(file: string, optional: true): Record<string, unknown> | null;
export function readJsonFile(file: string, optional?: false): Record<string, unknown>;
export function readJsonFile(file: string, optional = false): Record<string, unknown> | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      if (optional) return null;
      throw new ScalpelError(`${file}: file is missing`);
    }
    throw new ScalpelError(`${file}: cannot read (${code ?? (err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ScalpelError(`${file}: not valid JSON (${(err as Error).message.split('\n')[0]})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new ScalpelError(`${file}: expected a JSON object`);
  return json as Record<string, unknown>;
}
