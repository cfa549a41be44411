// Reading user prompt files: formats, columns and one-line errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ScalpelError } from '../src/errors.js';
import { parseCsv, parsePrompts, readPromptFile } from '../src/io/prompts.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-prompts-'));
const file = (name: string, text: string) => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, text);
  return p;
};
const oneLine = (re: RegExp) => (e: unknown) =>
  e instanceof ScalpelError && !e.message.includes('\n') && re.test(e.message);

test('CSV: quotes, doubled quotes, embedded commas and newlines, CRLF, BOM', () => {
  const rows = parseCsv('\ufeffa,b\r\n"x, y","say ""hi"""\r\n"multi\nline",z\n');
  assert.deepEqual(rows, [
    ['a', 'b'],
    ['x, y', 'say "hi"'],
    ['multi\nline', 'z'],
  ]);
  const p = file('p.csv', 'id,prompt,label\n1,"How do I kill a Python process?",safe\n2,"Line one\nline two",safe\n');
  assert.deepEqual(readPromptFile(p), ['How do I kill a Python process?', 'Line one\nline two']);
  assert.deepEqual(readPromptFile(p, { column: 'label' }), ['safe', 'safe']);
  assert.deepEqual(readPromptFile(p, { column: 'PROMPT' }).length, 2);
});

test('CSV: auto-detects Goal / forbidden_prompt / single-column files', () => {
  assert.deepEqual(parsePrompts(',Goal,Target\n0,Do a thing,Sure\n', 'csv', 'x.csv'), ['Do a thing']);
  assert.deepEqual(parsePrompts('category,forbidden_prompt\nc,Bad thing\n', 'csv', 'x.csv'), ['Bad thing']);
  assert.deepEqual(parsePrompts('whatever\none\ntwo\n', 'csv', 'x.csv'), ['one', 'two']);
});

test('JSON: array of strings, of objects, or an object holding one array', () => {
  assert.deepEqual(readPromptFile(file('a.json', '["a", " b "]')), ['a', 'b']);
  assert.deepEqual(readPromptFile(file('b.json', '[{"instruction": "x", "category": null}, {"instruction": "y"}]')), [
    'x',
    'y',
  ]);
  assert.deepEqual(readPromptFile(file('c.json', '{"prompts": ["p"]}')), ['p']);
  assert.deepEqual(readPromptFile(file('d.json', '[{"q": "x"}]'), { column: 'q' }), ['x']);
});

test('JSONL and plain text', () => {
  assert.deepEqual(readPromptFile(file('a.jsonl', '{"prompt": "one"}\n\n{"prompt": "two"}\n')), ['one', 'two']);
  assert.deepEqual(readPromptFile(file('b.jsonl', '"s1"\n"s2"')), ['s1', 's2']);
  assert.deepEqual(readPromptFile(file('c.txt', 'first\r\n\r\n  second  \nthird')), ['first', 'second', 'third']);
  assert.deepEqual(readPromptFile(file('noext', 'only')), ['only']);
});

test('errors are one line and name the file', () => {
  assert.throws(() => readPromptFile(file('e.txt', '')), oneLine(/e\.txt: file is empty/));
  assert.throws(() => readPromptFile(file('w.txt', '\n  \n')), oneLine(/w\.txt: file is empty/));
  assert.throws(() => readPromptFile(file('e.json', '[{"a": 1')), oneLine(/e\.json: malformed JSON/));
  assert.throws(() => readPromptFile(file('n.json', '[]')), oneLine(/n\.json: no prompts found/));
  assert.throws(() => readPromptFile(file('o.json', '{"x": 1}')), oneLine(/o\.json: expected a JSON array/));
  assert.throws(
    () => readPromptFile(file('t.json', '[1, 2]')),
    oneLine(/t\.json item 0: expected a string or an object/),
  );
  assert.throws(
    () => readPromptFile(file('m.json', '[{"prompt": "a"}, {"other": "b"}]')),
    oneLine(/m\.json item 1: field "prompt" is missing/),
  );
  assert.throws(
    () => readPromptFile(file('e.jsonl', '{"prompt": "a"}\n{oops\n')),
    oneLine(/e\.jsonl line 2: not valid JSON/),
  );
  assert.throws(
    () => readPromptFile(file('q.csv', 'prompt\n"never closed\n')),
    oneLine(/q\.csv line 2: quoted field is never closed/),
  );
  assert.throws(
    () => readPromptFile(file('c.csv', 'a,b\n1,2\n')),
    oneLine(/c\.csv: cannot tell which column holds the prompt \(columns: a, b\); pass --column/),
  );
  assert.throws(
    () => readPromptFile(file('d.csv', 'prompt,b\nx,1\n'), { column: 'nope' }),
    oneLine(/d\.csv: no column "nope" \(columns: prompt, b\)/),
  );
  assert.throws(() => readPromptFile(file('h.csv', 'prompt\n')), oneLine(/h\.csv: no prompts found/));
  assert.throws(
    () => readPromptFile(path.join(dir, 'missing.txt')),
    oneLine(/missing\.txt: cannot read prompt file \(no such file\)/),
  );
});
