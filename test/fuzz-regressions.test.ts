// One named, minimal case for every failure the fuzzer (test/fuzz/) found, each fixed where it was found. The
// inputs are the fuzzer's own, cut down by hand to what triggers the bug.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { ScalpelError } from '../src/errors.js';
import { parsePrompts } from '../src/io/prompts.js';
import { loadModel, type LoadedModel } from '../src/model/load.js';
import { interventionFromRun } from '../src/method/intervention.js';
import { readEvalResults } from '../src/method/evaluate.js';
import { createServer } from '../src/serve/server.js';
import { ChatTemplate } from '../src/tokenizer/chat.js';
import { describeSelection, formatTable } from '../src/cli/format.js';
import { ROOT, TINY_CHAT } from './support/cli.js';
import { parseResponses } from './fuzz/targets.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-fuzz-regressions-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const RUN = path.join(ROOT, 'test', 'fixtures', 'small-run');

const isScalpelError = (pattern: RegExp) => (e: unknown) =>
  e instanceof ScalpelError && pattern.test(e.message) && !e.message.includes('\n');

// ---- chat templates: unbounded rendering (hangs of minutes, or memory) -----------------------------------------

const render = (source: string) =>
  ChatTemplate.fromString(source, 'chat_template.jinja').render([{ role: 'user', content: 'Hi' }]);

test('chat-template: nested loops over range(100000) with empty bodies stop at the step budget', () => {
  assert.throws(
    () => render('{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}'),
    isScalpelError(
      /chat_template\.jinja: chat_template failed to render \(went over its budget: it took more than \d+ evaluation steps/,
    ),
  );
});

test('chat-template: range(1000000000) is refused before the list is built (its argument is over the limit)', () => {
  assert.throws(
    () => render('{% for i in range(1000000000) %}x{% endfor %}'),
    isScalpelError(/went over its budget: an argument of 1000000000 is over the limit/),
  );
});

test('chat-template: a macro that calls itself twice per call stops at the step budget', () => {
  assert.throws(
    () => render('{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}'),
    isScalpelError(/went over its budget: it took more than/),
  );
});

test('chat-template: blocks and brackets nested thousands deep are refused in words, not as a stack overflow', () => {
  for (const source of [
    `${'{% if true %}'.repeat(5000)}x${'{% endif %}'.repeat(5000)}`,
    `{{ ${'('.repeat(10000)}1${')'.repeat(10000)} }}`,
  ])
    assert.throws(
      () => render(source),
      isScalpelError(
        /chat_template\.jinja: chat_template (does not parse|failed to render) \(it nests blocks or brackets too deeply\)$/,
      ),
    );
  // Deep but sane nesting still renders.
  assert.equal(render(`${'{% if true %}'.repeat(50)}x${'{% endif %}'.repeat(50)}`), 'x');
});

test('chat-template: a string doubled in a loop stops at the size limit', () => {
  assert.throws(
    () =>
      render(
        '{% set ns = namespace(s="ab") %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}',
      ),
    isScalpelError(/went over its budget: it built a string of more than \d+ characters/),
  );
});

test('chat-template: tojson(indent=100000000) is refused before the padding is built', () => {
  assert.throws(
    () => render('{{ messages | tojson(indent=100000000) }}'),
    isScalpelError(/went over its budget: an argument of 100000000 is over the limit/),
  );
});

test('chat-template: a long real conversation still renders (the budget grows with the messages)', () => {
  const template = ChatTemplate.load(TINY_CHAT)!;
  const messages = Array.from({ length: 2000 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: `m${i}` }));
  assert.match(template.render(messages), /m1999/);
});

// ---- prompt files --------------------------------------------------------------------------------------------

test('prompts: a CSV file holding only "" (an empty quoted field) is a one-line error, not a TypeError', () => {
  assert.throws(() => parsePrompts('""', 'csv', 'p.csv'), isScalpelError(/^p\.csv: no header row/));
});

// ---- run directories -----------------------------------------------------------------------------------------

/** The small fixture run with one file replaced. */
function damagedRun(file: string, text: string): string {
  const dir = fs.mkdtempSync(path.join(tmp, 'run-'));
  for (const f of fs.readdirSync(RUN)) fs.copyFileSync(path.join(RUN, f), path.join(dir, f));
  fs.writeFileSync(path.join(dir, file), text);
  return dir;
}

test('run-dir: selection.json holding null is a one-line error, not a TypeError', async () => {
  await assert.rejects(
    interventionFromRun(damagedRun('selection.json', 'null')),
    isScalpelError(/selection\.json: expected a JSON object; the file is damaged/),
  );
});

test('run-dir: selection.json whose chosen is not a candidate is a one-line error', async () => {
  const selection = JSON.parse(fs.readFileSync(path.join(RUN, 'selection.json'), 'utf8'));
  await assert.rejects(
    interventionFromRun(damagedRun('selection.json', JSON.stringify({ ...selection, chosen: 5 }))),
    isScalpelError(/selection\.json: field chosen is not a candidate/),
  );
});

test('run-dir: eval.json holding a number, or results that are not rows, is a one-line error', () => {
  assert.throws(
    () => readEvalResults(damagedRun('eval.json', '1e-320')),
    isScalpelError(/eval\.json: expected a JSON object/),
  );
  assert.throws(
    () => readEvalResults(damagedRun('eval.json', '{"results": [{"dataset": 1}]}')),
    isScalpelError(/eval\.json: field results is not a list of/),
  );
});

test('run-dir: the results table fills the row of a set measured in one condition only', () => {
  const row = { n: 2, lambda: null, alpha: null, refusal_rate: 0, max_new_tokens: 2 };
  const table = formatTable([
    { ...row, dataset: 'a', condition: 'baseline', compliance_rate: 0.5 },
    { ...row, dataset: 'a', condition: 'ablated', compliance_rate: 1 },
    { ...row, dataset: 'b', condition: 'baseline', compliance_rate: 0.25 },
  ] as never);
  assert.match(table, /\nb +2 +25\.0% +– +–$/);
});

// ---- scalpel serve: answers outside OpenAI's error shape -----------------------------------------------------

let loaded: LoadedModel | undefined;
async function rawExchange(request: string): Promise<{ status: number; body: string }[]> {
  loaded ??= await loadModel(TINY_CHAT);
  const server = createServer({ loaded, name: 'm', log: () => {} });
  const url = new URL(await server.listen({ port: 0 }));
  try {
    return await new Promise((resolve) => {
      const socket = net.connect(Number(url.port), '127.0.0.1');
      let got = '';
      socket.setEncoding('latin1');
      socket.on('data', (d) => {
        got += d;
      });
      socket.on('close', () => resolve(parseResponses(got)));
      socket.end(Buffer.from(request, 'latin1'));
    });
  } finally {
    await server.close();
  }
}

function assertOpenAiError(responses: { status: number; body: string }[], status: number, message: RegExp): void {
  assert.equal(responses.length, 1, JSON.stringify(responses));
  assert.equal(responses[0]!.status, status);
  const body = JSON.parse(responses[0]!.body);
  assert.equal(body.error.type, 'invalid_request_error');
  assert.match(body.error.message, message);
}

test("serve-http: a request line Node cannot parse gets a 400 in OpenAI error shape (was Fastify's own body)", async () => {
  assertOpenAiError(await rawExchange('GET /\x1b]0;x\x07 HTTP/1.1\r\nhost: a\r\n\r\n'), 400, /not valid HTTP/);
});

test('serve-http: an HTTP/1.1 request without Host gets a 400 in OpenAI error shape (was an empty body)', async () => {
  assertOpenAiError(await rawExchange('GET /health HTTP/1.1\r\nconnection: close\r\n\r\n'), 400, /no Host header/);
});

test('serve-http: an Expect header other than 100-continue gets a 417 in OpenAI error shape (was an empty body)', async () => {
  assertOpenAiError(
    await rawExchange('PUT /x HTTP/1.1\r\nhost: a\r\nexpect: Y\r\ncontent-length: 0\r\nconnection: close\r\n\r\n'),
    417,
    /only 100-continue/,
  );
});

test('run-dir: a selection.json whose scores are not numbers is still described (was x.toFixed is not a function)', () => {
  const selection = JSON.parse(fs.readFileSync(path.join(RUN, 'selection.json'), 'utf8'));
  const text = describeSelection({ ...selection, chosen: { ...selection.chosen, kl: '\x1b[31m', refusal_score: [] } });
  assert.match(text, /refusal score –, harmless KL –/);
});
