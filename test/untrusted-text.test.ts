// Issue 16, item 4: text from a model folder, a prompt file, a request or a model's output never reaches the
// terminal raw. Each test feeds the escape sequences a terminal acts on (ESC [31m recolours, ESC ]0;…BEL retitles,
// C1 CSI U+009B) through one path that used to print them as they were, and checks what comes out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { ScalpelError, escapeControls, quoteUntrusted } from '../src/errors.js';
import { parsePrompts } from '../src/io/prompts.js';
import { loadModel } from '../src/model/load.js';
import { createServer } from '../src/serve/server.js';
import { TextTokenizer } from '../src/tokenizer/tokenizer.js';
import { BIN, ROOT, TINY_CHAT } from './support/cli.js';
import { hasRawControls } from './support/controls.js';

const RED = '\x1b[31m';
const TITLE = '\x1b]0;pwned\x07';
const CSI = '\u009b31m';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-untrusted-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A copy of the project model folder (links, but for the files the test replaces). */
function modelCopy(name: string, replace: Record<string, string>): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  for (const f of fs.readdirSync(TINY_CHAT))
    if (!(f in replace)) fs.symlinkSync(path.join(TINY_CHAT, f), path.join(dir, f));
  for (const [f, text] of Object.entries(replace)) fs.writeFileSync(path.join(dir, f), text);
  return dir;
}

function scalpel(...args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    cwd: ROOT,
    env: { ...process.env, SCALPEL_KERNELS: 'js' },
  });
}

test('escapeControls shows C0, DEL and C1 controls as \\xNN and keeps what it is told to', () => {
  assert.equal(escapeControls(`a${RED}b`), 'a\\x1b[31mb');
  assert.equal(escapeControls(TITLE), '\\x1b]0;pwned\\x07');
  assert.equal(escapeControls(CSI), '\\x9b31m');
  assert.equal(escapeControls('a\x7fb\u202ec'), 'a\\x7fb\\u202ec');
  assert.equal(escapeControls('line 1\n\tline 2\r', '\n\t'), 'line 1\n\tline 2\\x0d');
  assert.equal(escapeControls('naïve café 你好'), 'naïve café 你好');
});

test('quoteUntrusted quotes, escapes quotes and backslashes, and cuts long values', () => {
  assert.equal(quoteUntrusted(`say "hi"\\${RED}`), '"say \\"hi\\"\\\\\\x1b[31m"');
  assert.equal(quoteUntrusted("it's", 200, "'"), "'it\\'s'");
  assert.equal(quoteUntrusted('x'.repeat(50), 10), `"${'x'.repeat(10)}…"`);
});

test('a ScalpelError is one line without control characters, whatever it quotes', () => {
  const e = new ScalpelError(`config.json: bad value ${RED}${TITLE}${CSI}\nsecond line`);
  assert.ok(!hasRawControls(e.message), e.message);
  assert.match(e.message, /\\x1b\[31m\\x1b\]0;pwned\\x07\\x9b31m\\x0asecond line/);
});

test('config.json: a model_type with escape sequences is quoted escaped by `scalpel generate`', () => {
  const config = JSON.parse(fs.readFileSync(path.join(TINY_CHAT, 'config.json'), 'utf8'));
  const dir = modelCopy('bad-config', {
    'config.json': JSON.stringify({ ...config, model_type: `evil${RED}${TITLE}${CSI}` }),
  });
  const r = scalpel('generate', '--model', dir, '--prompt', 'Hi', '--max-new-tokens', '1');
  assert.equal(r.status, 1);
  assert.ok(!hasRawControls(r.stderr, '\n'), JSON.stringify(r.stderr));
  assert.match(
    r.stderr,
    /^scalpel: .*config\.json: model_type 'evil\\x1b\[31m\\x1b\]0;pwned\\x07\\x9b31m' is not supported/,
  );
});

test('tokenizer.json: an added token with escape sequences is quoted escaped', () => {
  const tok = JSON.parse(fs.readFileSync(path.join(TINY_CHAT, 'tokenizer.json'), 'utf8'));
  tok.added_tokens = [...tok.added_tokens, { ...tok.added_tokens[0], id: 0, content: `${RED}x${CSI}` }];
  const dir = modelCopy('bad-tokenizer', { 'tokenizer.json': JSON.stringify(tok) });
  assert.throws(
    () => TextTokenizer.load(dir),
    (e: Error) => e instanceof ScalpelError && !hasRawControls(e.message) && e.message.includes('"\\x1b[31mx\\x9b31m"'),
  );
});

test('prompt files: a column name with escape sequences is shown escaped', () => {
  assert.throws(
    () => parsePrompts(`a${RED},b${TITLE}\n1,2\n`, 'csv', 'p.csv'),
    (e: Error) => e instanceof ScalpelError && !hasRawControls(e.message) && e.message.includes('a\\x1b[31m'),
  );
  assert.throws(
    () => parsePrompts('prompt\nx\n', 'csv', 'p.csv', { column: `${CSI}col` }),
    (e: Error) => e instanceof ScalpelError && e.message.includes('no column "\\x9b31mcol"'),
  );
});

test("the model's answer: an ESC token in the vocabulary is shown escaped by `scalpel generate`, newlines kept", () => {
  // Give the id the model emits first for this prompt the text of ESC [31m (byte-level BPE: bytes as chars).
  const first = JSON.parse(
    scalpel('generate', '--model', TINY_CHAT, '--prompt', 'Hello', '--max-new-tokens', '3', '--json').stdout,
  ).tokens[0] as number;
  const tok = JSON.parse(fs.readFileSync(path.join(TINY_CHAT, 'tokenizer.json'), 'utf8'));
  const vocab = tok.model.vocab as Record<string, number>;
  const byteChar = (b: number) => String.fromCodePoint(b < 33 ? 256 + b : b); // ByteLevel's map for bytes 0–32
  const esc = `${byteChar(0x1b)}[31m`;
  const old = Object.keys(vocab).find((k) => vocab[k] === first)!;
  delete vocab[old];
  vocab[esc] = first;
  const dir = modelCopy('esc-token', { 'tokenizer.json': JSON.stringify(tok) });
  const r = scalpel('generate', '--model', dir, '--prompt', 'Hello', '--max-new-tokens', '3');
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.stdout.includes('\\x1b[31m'), JSON.stringify(r.stdout));
  assert.ok(!hasRawControls(r.stdout, '\n\t'), JSON.stringify(r.stdout));
});

test("serve's access log escapes the URL and the model name of a request", async () => {
  const lines: string[] = [];
  const server = createServer({ loaded: await loadModel(TINY_CHAT), name: 'm', log: (l) => lines.push(l) });
  const url = new URL(await server.listen({ port: 0 }));
  try {
    const res = await fetch(`${url.origin}/v1/chat/completions?x=%1b`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: `m${RED}${CSI}`, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 }),
    });
    assert.equal(res.status, 404); // the model alias does not exist
    // A raw request line with an ESC byte in the path (fetch would encode it).
    await new Promise<void>((resolve) => {
      const s = net.connect(Number(url.port), '127.0.0.1');
      s.on('data', () => {});
      s.on('close', () => resolve());
      s.end(Buffer.from(`GET /x\x1b[31m HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n`, 'latin1'));
    });
  } finally {
    await server.close();
  }
  assert.ok(lines.length >= 1);
  for (const l of lines) assert.ok(!hasRawControls(l), JSON.stringify(l));
  assert.ok(
    lines.some((l) => l.includes('model="m\\x1b[31m\\x9b31m"')),
    JSON.stringify(lines),
  );
});
