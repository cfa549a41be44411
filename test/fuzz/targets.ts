// The fuzz targets: every parser and entry point that reads outside data, each with a generator of hostile inputs
// (real seed files mutated, and structured arbitraries) and a run function that feeds one input to the real code.
// A run function returns normally or throws; the child (child.ts) judges the outcome.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { parsePrompts } from '../../src/io/prompts.js';
import { readGgufHeader, readGgufTensor, writeGguf, gguf } from '../../src/io/gguf.js';
import { readModelDir } from '../../src/model/files.js';
import { loadEngineModel, loadModel, type LoadedModel } from '../../src/model/load.js';
import { TextTokenizer } from '../../src/tokenizer/tokenizer.js';
import { ChatTemplate, encodeChat } from '../../src/tokenizer/chat.js';
import { Scheduler } from '../../src/engine/scheduler.js';
import { interventionFromRun } from '../../src/method/intervention.js';
import { FILES, readJson, readRunJson, readTensors, type SelectionJson } from '../../src/method/rundir.js';
import { readEvalResults, readResponses } from '../../src/method/evaluate.js';
import { createServer, type ScalpelServer } from '../../src/serve/server.js';
import { describeSelection, formatTable } from '../../src/cli/format.js';
import { HOSTILE_STRINGS, hostileValue, mutatedBytes, mutatedJson, mutatedText } from './mutate.js';
import { BIN, ROOT, TINY_CHAT } from '../support/cli.js';
import { spawnSync } from 'node:child_process';
import { hasRawControls } from '../support/controls.js';

/** One fuzz target. `setup` runs once per child process; `run` once per case. */
export interface Target<T = unknown> {
  name: string;
  /** What it feeds and to what, for the table's notes. */
  about: string;
  setup(
    work: string,
  ): Promise<{ arbitrary: fc.Arbitrary<T>; run(input: T): Promise<void> | void; close?(): Promise<void> }>;
  /** Cases for `npm run fuzz` when it is not the default (the CLI experiment spawns a process per case). */
  fullCases?: number;
}

const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'models');
const read = (...p: string[]) => fs.readFileSync(path.join(...p));
const text = (...p: string[]) => fs.readFileSync(path.join(...p), 'utf8');

/** A model folder in `dir` whose files are links to `from`'s, so one file can be replaced per case. */
function linkModel(from: string, dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(from)) fs.symlinkSync(path.join(from, f), path.join(dir, f));
}

/** Replaces one file of a linked folder (the link is removed first, so the seed is never written). */
function put(dir: string, file: string, data: Uint8Array | string | null): void {
  const p = path.join(dir, file);
  fs.rmSync(p, { force: true });
  if (data !== null) fs.writeFileSync(p, data);
}

// ---- files ----------------------------------------------------------------------------------------------------

const safetensors: Target<Uint8Array> = {
  name: 'safetensors',
  about: 'readSafetensors on mutated real files and headers built from parts',
  async setup(work) {
    const small = path.join(work, 'seed.safetensors');
    await writeSafetensors(small, [
      { name: 'a', dtype: 'f32', shape: [2, 3], data: new Float32Array(6).fill(1.5) },
      { name: 'b', dtype: 'bf16', shape: [4], data: new Uint16Array(4).fill(0x3f80) },
      { name: 'c', dtype: 'f16', shape: [1, 2, 1], data: new Uint16Array(2).fill(0x3c00) },
    ]);
    const seeds = [read(small), read(FIXTURES, 'llama-sharded', 'model-00002-of-00003.safetensors')];
    const enc = new TextEncoder();
    const entry = fc.record({
      dtype: fc.oneof(
        fc.constantFrom('F32', 'F16', 'BF16', 'I64', 'F8_E4M3', 'BOOL'),
        fc.constantFrom(...HOSTILE_STRINGS),
        hostileValue,
      ),
      shape: fc.oneof(
        fc.array(fc.nat({ max: 8 }), { maxLength: 4 }),
        fc.array(hostileValue, { maxLength: 3 }),
        hostileValue,
      ),
      data_offsets: fc.oneof(
        fc.tuple(fc.nat({ max: 200 }), fc.nat({ max: 200 })),
        fc.array(hostileValue, { maxLength: 3 }),
      ),
    });
    const built = fc
      .record({
        header: fc.dictionary(
          fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('__metadata__', ...HOSTILE_STRINGS)),
          fc.oneof(entry, hostileValue),
          {
            maxKeys: 5,
          },
        ),
        dataBytes: fc.nat({ max: 400 }),
        lengthDelta: fc.integer({ min: -8, max: 8 }),
      })
      .map(({ header, dataBytes, lengthDelta }) => {
        const json = enc.encode(JSON.stringify(header));
        const out = new Uint8Array(8 + json.length + dataBytes);
        new DataView(out.buffer).setBigUint64(0, BigInt(Math.max(0, json.length + lengthDelta)), true);
        out.set(json, 8);
        return out;
      });
    const file = path.join(work, 'case.safetensors');
    return {
      arbitrary: fc.oneof(mutatedBytes(seeds), built),
      async run(bytes) {
        fs.writeFileSync(file, bytes);
        await readSafetensors(file);
      },
    };
  },
};

const shardedIndex: Target<Uint8Array> = {
  name: 'sharded-index',
  about: 'readModelDir on llama-sharded with a mutated model.safetensors.index.json',
  async setup(work) {
    const from = path.join(FIXTURES, 'llama-sharded');
    const dir = path.join(work, 'model');
    linkModel(from, dir);
    const arbitrary = mutatedText([text(from, 'model.safetensors.index.json')]);
    return {
      arbitrary,
      async run(bytes) {
        put(dir, 'model.safetensors.index.json', bytes);
        await readModelDir(dir);
      },
    };
  },
};

/** config.json of one architecture's fixture, mutated, loaded with its real weights. */
function configTarget(arch: string): Target<Uint8Array> {
  return {
    name: `config:${arch}`,
    about: `loadEngineModel on the ${arch} fixture with a mutated config.json`,
    async setup(work) {
      const from = path.join(FIXTURES, arch);
      const dir = path.join(work, 'model');
      linkModel(from, dir);
      return {
        arbitrary: mutatedText([text(from, 'config.json')]),
        async run(bytes) {
          put(dir, 'config.json', bytes);
          await loadEngineModel(dir);
        },
      };
    },
  };
}

const PROBE_TEXTS = ['Hello world', 'naïve café 你好 \x1b[31m', '<|im_start|>user\nhi<|im_end|>', ''];

const tokenizerJson: Target<Uint8Array> = {
  name: 'tokenizer.json',
  about: 'TextTokenizer.load + encode/decode with a mutated tokenizer.json (llama, qwen2 fixtures)',
  async setup(work) {
    const seeds = ['llama', 'qwen2'].map((a) => text(FIXTURES, a, 'tokenizer.json'));
    const dirs = ['llama', 'qwen2'].map((a) => {
      const d = path.join(work, a);
      linkModel(path.join(FIXTURES, a), d);
      return d;
    });
    return {
      arbitrary: mutatedText(seeds),
      run(bytes) {
        // The mutation of seed i goes into a folder with the rest of model i.
        const dir = dirs[bytes.length % 2]!;
        put(dir, 'tokenizer.json', bytes);
        const tok = TextTokenizer.load(dir);
        for (const t of PROBE_TEXTS) tok.decode(tok.encode(t));
      },
    };
  },
};

const MESSAGES = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi \x1b[31m there' },
  { role: 'assistant', content: 'Hello.' },
  { role: 'user', content: 'Bye' },
];

const tokenizerConfig: Target<Uint8Array> = {
  name: 'tokenizer_config.json',
  about: 'TextTokenizer.load + ChatTemplate.load + render with a mutated tokenizer_config.json (llama, qwen3, phi3)',
  async setup(work) {
    const archs = ['llama', 'qwen3', 'phi3'];
    const dirs = archs.map((a) => {
      const d = path.join(work, a);
      linkModel(path.join(FIXTURES, a), d);
      return d;
    });
    return {
      arbitrary: fc.tuple(fc.nat({ max: archs.length - 1 }), fc.constant(0)).chain(([i]) =>
        mutatedText([text(FIXTURES, archs[i]!, 'tokenizer_config.json')]).map((b) => {
          const tagged = new Uint8Array(b.length + 1);
          tagged[0] = i;
          tagged.set(b, 1);
          return tagged;
        }),
      ),
      run(tagged) {
        const dir = dirs[tagged[0]!]!;
        put(dir, 'tokenizer_config.json', tagged.subarray(1));
        const tok = TextTokenizer.load(dir);
        tok.encode('Hello');
        ChatTemplate.load(dir)?.render(MESSAGES.slice(1));
      },
    };
  },
};

/** Template fragments that loop, recurse, build huge strings or nest deeply. */
const HOSTILE_TEMPLATES = [
  '{% for i in range(1000000000) %}x{% endfor %}',
  '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}',
  '{% set ns = namespace(s="ab") %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}',
  '{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}',
  '{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}',
  '{{ "x" * 1000000000 }}',
  '{{ "x" | indent(1000000000) }}',
  '{{ messages | tojson(indent=100000000) }}',
  '{{ range(10000000) | join(",") }}',
  '{% for m in messages %}{% for m2 in messages %}{{ m.content * 1000000 }}{% endfor %}{% endfor %}',
  `${'{% if true %}'.repeat(5000)}x${'{% endif %}'.repeat(5000)}`,
  `{{ ${'('.repeat(10000)}1${')'.repeat(10000)} }}`,
  '{{ raise_exception("\x1b]0;pwned\x07") }}',
  '{{ messages[0].content | center(999999999) }}',
  '{% set x = [1] %}{% for i in range(30) %}{% set x = x + x %}{% endfor %}{{ x | length }}',
  '{{ strftime_now("%Y-%m-%d") }}{{ bos_token }}',
  '{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}',
];

const chatTemplate: Target<{ source: string; messages: typeof MESSAGES }> = {
  name: 'chat-template',
  about: 'ChatTemplate.fromString(...).render: templates that loop, recurse, build huge strings; mutated real ones',
  async setup() {
    const real = ['llama', 'qwen3', 'gemma2', 'phi3', 'mistral'].map((a) => {
      const cfg = JSON.parse(text(FIXTURES, a, 'tokenizer_config.json')) as { chat_template?: unknown };
      return typeof cfg.chat_template === 'string' ? cfg.chat_template : '';
    });
    const dec = new TextDecoder();
    const pieces = [...HOSTILE_TEMPLATES, ...real.filter((t) => t !== '')];
    const composed = fc.array(fc.constantFrom(...pieces), { minLength: 1, maxLength: 3 }).map((p) => p.join(''));
    const mutated = mutatedBytes(pieces.map((p) => new TextEncoder().encode(p))).map((b) => dec.decode(b));
    const messages = fc.oneof(
      fc.constant(MESSAGES),
      fc.array(
        fc.record({
          role: fc.oneof(fc.constantFrom('user', 'assistant', 'system'), fc.string({ maxLength: 8 })),
          content: fc.oneof(fc.string(), fc.constantFrom(...HOSTILE_STRINGS)),
        }),
        { maxLength: 6 },
      ),
    );
    return {
      arbitrary: fc.record({ source: fc.oneof(composed, mutated), messages }),
      run({ source, messages }) {
        ChatTemplate.fromString(source, 'chat_template.jinja', { bos_token: '<s>', eos_token: '</s>' }).render(
          messages,
        );
      },
    };
  },
};

const prompts: Target<{ format: 'csv' | 'json' | 'jsonl' | 'txt'; text: string; column?: string }> = {
  name: 'prompts',
  about: 'parsePrompts on CSV (quotes, CRLF), JSON, JSONL and text: mutated real files and built rows',
  async setup() {
    const raw = path.join(ROOT, '..', 'shared', 'datasets', 'raw');
    const seedFile = (rel: string, n = 4000) => {
      try {
        return text(raw, rel).slice(0, n);
      } catch {
        return '';
      }
    };
    const csvSeeds = [
      'prompt,category\n"a, ""quoted"" one",x\r\n"multi\nline",y\n',
      seedFile('advbench/harmful_behaviors.csv'),
    ].filter((s) => s);
    const jsonSeeds = ['["a","b"]', '[{"prompt":"x"},{"prompt":"y"}]', '{"prompts":["p"]}'];
    const jsonlSeeds = ['{"prompt":"a"}\n{"prompt":"b"}\r\n', '"x"\n"y"\n'];
    const dec = new TextDecoder();
    const cell = fc.oneof(fc.string(), fc.constantFrom(...HOSTILE_STRINGS, '"', '""', ',', '\r\n', '\r', '\n'));
    const builtCsv = fc
      .array(fc.array(cell, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 6 })
      .chain((rows) => fc.constantFrom('\n', '\r\n', '\r').map((eol) => rows.map((r) => r.join(',')).join(eol)));
    const asText = (a: fc.Arbitrary<Uint8Array>) => a.map((b) => dec.decode(b));
    return {
      arbitrary: fc.oneof(
        fc.record({
          format: fc.constant('csv' as const),
          text: fc.oneof(builtCsv, asText(mutatedBytes(csvSeeds.map((s) => new TextEncoder().encode(s))))),
          column: fc.option(fc.constantFrom('prompt', 'goal', '\x1b[31m', ''), { nil: undefined }),
        }),
        fc.record({
          format: fc.constant('json' as const),
          text: fc.oneof(mutatedJson(jsonSeeds), asText(mutatedText(jsonSeeds))),
        }),
        fc.record({ format: fc.constant('jsonl' as const), text: asText(mutatedText(jsonlSeeds, false)) }),
        fc.record({
          format: fc.constant('txt' as const),
          text: fc.oneof(fc.string({ unit: 'binary' }), fc.constantFrom(...HOSTILE_STRINGS)),
        }),
      ),
      run({ format, text: t, column }) {
        parsePrompts(t, format, `prompts.${format}`, { column });
      },
    };
  },
};

// ---- run directories ------------------------------------------------------------------------------------------

// The files of a finished run that applying or resuming it reads (sweep, ability and judge files are the report's).
const RUN_FILES = [FILES.run, FILES.candidates, FILES.selection, FILES.vector, FILES.eval, FILES.responses];

/** What the commands read from a run directory when they apply or resume it. */
async function readRun(runDir: string): Promise<void> {
  readRunJson(runDir);
  await interventionFromRun(runDir);
  await readTensors(runDir, FILES.candidates);
  describeSelection(readJson<SelectionJson>(runDir, FILES.selection));
  formatTable(readEvalResults(runDir));
  readResponses(runDir);
}

const runDir: Target<{ file: string; data: Uint8Array | null }[]> = {
  name: 'run-dir',
  about:
    'reading a finished run (run.json, selection.json, candidates/vector safetensors, eval.json, responses.jsonl), files corrupted or missing',
  async setup(work) {
    // A run made by `scalpel run --n-train 4 --n-val 2 --max-new-tokens 2` on the project model (responses.jsonl cut
    // to its first 12 lines); making one here would take minutes on a loaded machine.
    const made = path.join(ROOT, 'test', 'fixtures', 'small-run');
    const dir = path.join(work, 'run');
    const seeds = new Map(RUN_FILES.map((f) => [f, read(made, f)]));
    const one = fc.constantFrom(...RUN_FILES).chain((file) => {
      const seed = seeds.get(file)!;
      const mutated = file.endsWith('.safetensors')
        ? mutatedBytes([seed])
        : mutatedText([seed.toString('utf8')], file.endsWith('.json'));
      return fc.record({ file: fc.constant(file), data: fc.option(mutated, { nil: null, freq: 5 }) });
    });
    return {
      arbitrary: fc.array(one, { minLength: 1, maxLength: 3 }),
      async run(changes) {
        linkModel(made, dir);
        for (const c of changes) put(dir, c.file, c.data);
        await readRun(dir);
      },
    };
  },
};

// ---- GGUF -----------------------------------------------------------------------------------------------------

const ggufTarget: Target<Uint8Array> = {
  name: 'gguf',
  about: 'readGgufHeader + readGgufTensor on mutated GGUF files written by writeGguf',
  async setup(work) {
    const seedFile = path.join(work, 'seed.gguf');
    await writeGguf(
      seedFile,
      [
        ['general.architecture', gguf.str('llama')],
        ['llama.block_count', gguf.u32(2)],
        ['tokenizer.ggml.tokens', gguf.array('string', ['<s>', '</s>', 'a', 'b'])],
        ['tokenizer.ggml.scores', gguf.array('f32', [0, 0, -1, -2])],
      ],
      [
        { name: 'token_embd.weight', dtype: 'f32', shape: [4, 8], data: new Float32Array(32).fill(0.25) },
        { name: 'output_norm.weight', dtype: 'bf16', shape: [8], data: new Uint16Array(8).fill(0x3f80) },
      ],
    );
    const file = path.join(work, 'case.gguf');
    return {
      arbitrary: mutatedBytes([read(seedFile)]),
      run(bytes) {
        fs.writeFileSync(file, bytes);
        const h = readGgufHeader(file);
        for (const t of h.tensors) if (t.dtype) readGgufTensor(file, t);
      },
    };
  },
};

// ---- HTTP -----------------------------------------------------------------------------------------------------

interface HttpCase {
  raw: boolean;
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
  /** Raw requests: the content-length sent (the body's, none, or one that lies). */
  length: 'right' | 'none' | 'short' | 'long';
}

/** The responses in a raw HTTP/1.1 byte stream (bodies by content-length or chunked; a cut-off one ends it). */
export function parseResponses(raw: string): { status: number; body: string }[] {
  const out: { status: number; body: string }[] = [];
  let at = 0;
  while (at < raw.length) {
    const m = /^HTTP\/1\.[01] (\d{3})[^\r]*\r\n/.exec(raw.slice(at));
    if (!m) break;
    const headEnd = raw.indexOf('\r\n\r\n', at);
    if (headEnd < 0) break;
    const head = raw.slice(at, headEnd).toLowerCase();
    let bodyStart = headEnd + 4;
    let body = '';
    const length = /\r\ncontent-length: *(\d+)/.exec(head);
    if (length) {
      body = raw.slice(bodyStart, bodyStart + Number(length[1]));
      bodyStart += Number(length[1]);
    } else if (/\r\ntransfer-encoding: *chunked/.test(head)) {
      for (;;) {
        const lineEnd = raw.indexOf('\r\n', bodyStart);
        if (lineEnd < 0) return [...out, { status: Number(m[1]), body }];
        const size = Number.parseInt(raw.slice(bodyStart, lineEnd), 16);
        bodyStart = lineEnd + 2 + size + 2;
        if (!(size > 0)) break;
        body += raw.slice(lineEnd + 2, lineEnd + 2 + size);
      }
    } else if (!/\r\nconnection: *close/.test(head) || Number(m[1]) === 204 || Number(m[1]) === 304) {
      // no body
    } else {
      body = raw.slice(bodyStart);
      bodyStart = raw.length;
    }
    out.push({ status: Number(m[1]), body });
    at = bodyStart;
  }
  return out;
}

/** Sends one request over a real socket; resolves with the responses (none: the server closed the connection). */
function send(port: number, c: HttpCase): Promise<{ status: number; body: string }[]> {
  if (c.raw) {
    return new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      let got = '';
      socket.setEncoding('latin1');
      socket.on('data', (d) => {
        got += d;
      });
      socket.on('error', () => {});
      socket.on('close', () => resolve(parseResponses(got)));
      const n = Buffer.byteLength(c.body, 'latin1');
      const given = { right: n, none: null, short: Math.max(0, n - 3), long: n + 3 }[c.length];
      const all = given === null ? c.headers : { ...c.headers, 'content-length': String(given) };
      const headers = Object.entries(all)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      socket.end(
        Buffer.from(`${c.method} ${c.path} HTTP/1.1\r\n${headers}connection: close\r\n\r\n${c.body}`, 'latin1'),
      );
    });
  }
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: c.method,
        path: c.path,
        headers: { ...c.headers, 'content-length': Buffer.byteLength(c.body) },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => resolve([{ status: res.statusCode ?? 0, body }]));
        res.on('error', () => resolve([{ status: res.statusCode ?? 0, body }]));
      },
    );
    req.on('error', () => resolve([]));
    req.end(c.body);
  });
}

const VALID_BODIES = [
  { model: 'scalpel-tiny-chat', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 },
  { model: 'scalpel-tiny-chat', prompt: 'Once upon', max_tokens: 2, temperature: 0 },
  {
    model: 'scalpel-tiny-chat',
    messages: [{ role: 'user', content: [{ type: 'text', text: 'Hi' }] }],
    max_tokens: 1,
    stream: true,
  },
  {
    model: 'scalpel-tiny-chat',
    prompt: ['x'],
    max_tokens: 1,
    stop: ['\n'],
    seed: 3,
    scalpel: { intervention: 'none' },
  },
];

const serveHttp: Target<HttpCase> = {
  name: 'serve-http',
  about: 'scalpel serve (createServer, the project model) on 127.0.0.1: mutated bodies, headers and raw request lines',
  async setup() {
    const loaded: LoadedModel = await loadModel(TINY_CHAT);
    const server: ScalpelServer = createServer({ loaded, name: 'scalpel-tiny-chat', log: () => {} });
    const url = new URL(await server.listen({ port: 0 }));
    const port = Number(url.port);
    const seeds = VALID_BODIES.map((b) => JSON.stringify(b));
    const dec = new TextDecoder();
    // Valid bodies are kept to a couple of tokens: a long generation is work, not a hang.
    const body = fc.oneof(
      mutatedJson(seeds),
      mutatedText(seeds).map((b) => dec.decode(b)),
      fc.constantFrom(...seeds),
    );
    const header = fc.tuple(
      fc.constantFrom(
        'content-type',
        'authorization',
        'transfer-encoding',
        'content-encoding',
        'accept',
        'x-\x1b[31m',
        'expect',
        'host',
      ),
      fc.oneof(
        fc.constantFrom(
          'application/json',
          'text/plain',
          'application/json; charset=latin1',
          'chunked',
          'gzip',
          '100-continue',
          'Bearer x',
        ),
        fc.string({ maxLength: 20 }),
      ),
    );
    const arbitrary = fc.record({
      raw: fc.boolean(),
      method: fc.constantFrom('POST', 'POST', 'GET', 'PUT', 'DELETE', 'OPTIONS', 'HEAD'),
      path: fc.oneof(
        fc.constantFrom(
          '/v1/chat/completions',
          '/v1/completions',
          '/health',
          '/v1/models',
          '/v1/%1b[31m',
          '/\x1b]0;x\x07',
          '//..//',
        ),
        fc.webPath(),
      ),
      headers: fc
        .array(header, { maxLength: 3 })
        .map((hs) => Object.fromEntries([['host', '127.0.0.1'], ['content-type', 'application/json'], ...hs])),
      body,
      length: fc.constantFrom('right' as const, 'right' as const, 'none' as const, 'short' as const, 'long' as const),
    });
    return {
      arbitrary,
      async run(c) {
        if (!c.raw) {
          // http.request refuses invalid header characters itself; those go over the raw socket instead.
          for (const [k, v] of Object.entries(c.headers))
            if (!/^[\t\x20-\x7e]*$/.test(k + v) || /[^!#$%&'*+.^_`|~\w-]/.test(k)) c.raw = true;
          if (!/^[\x21-\x7e]+$/.test(c.path)) c.raw = true;
        }
        for (const { status, body: text } of await send(port, c)) {
          if (status >= 500) throw new Error(`HTTP ${status}: ${text.slice(0, 200)}`);
          if (status < 400 || c.method === 'HEAD') continue;
          let parsed: { error?: { message?: unknown; type?: unknown } };
          try {
            parsed = JSON.parse(text);
          } catch {
            throw new Error(`HTTP ${status} without a JSON error body: ${JSON.stringify(text.slice(0, 200))}`);
          }
          if (typeof parsed.error?.message !== 'string' || typeof parsed.error.type !== 'string')
            throw new Error(`HTTP ${status} body is not OpenAI's error shape: ${text.slice(0, 200)}`);
          if (hasRawControls(parsed.error.message))
            throw new Error(`HTTP ${status} error message carries control characters`);
        }
      },
      close: () => server.close(),
    };
  },
};

// ---- the CLI on mutated model folders (issue 16, item 4) --------------------------------------------------------

const MODEL_FILES = [
  'config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'generation_config.json',
  'special_tokens_map.json',
];

/** One or two of the project model's files replaced by mutated copies. */
function mutatedModelFiles(): fc.Arbitrary<{ file: string; data: Uint8Array }[]> {
  const seeds = new Map(MODEL_FILES.map((f) => [f, text(TINY_CHAT, f)]));
  const one = fc.constantFrom(...MODEL_FILES).chain((file) =>
    fc.record({
      file: fc.constant(file),
      data:
        file === 'tokenizer.json'
          ? mutatedJson([seeds.get(file)!]).map((s) => new TextEncoder().encode(s))
          : mutatedText([seeds.get(file)!]),
    }),
  );
  return fc.array(one, { minLength: 1, maxLength: 2 });
}

const modelFolder: Target<{ file: string; data: Uint8Array }[]> = {
  name: 'model-folder',
  about: 'loadModel + chat template + 2 generated tokens (what `scalpel generate` does) on mutated model folders',
  async setup(work) {
    const dir = path.join(work, 'model');
    return {
      arbitrary: mutatedModelFiles(),
      async run(changes) {
        linkModel(TINY_CHAT, dir);
        for (const c of changes) put(dir, c.file, c.data);
        const { tokenizer, chat, model, eosTokenIds } = await loadModel(dir);
        const prompt = chat
          ? encodeChat(tokenizer, chat, [{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true })
          : tokenizer.encode('Hi');
        if (prompt.length === 0) return;
        const decode = (ids: readonly number[]) => tokenizer.decode(ids, { skipSpecialTokens: true });
        const handle = new Scheduler(model, { maxSequences: 1, decode }).submit({
          prompt,
          maxNewTokens: 2,
          stopTokenIds: eosTokenIds,
        });
        decode((await handle.result).tokens);
      },
    };
  },
};

const modelFolderCli: Target<{ file: string; data: Uint8Array }[]> = {
  name: 'model-folder-cli',
  about: '`scalpel generate` (a real process) on mutated copies of the project model folder: stderr must be escaped',
  fullCases: 200,
  async setup(work) {
    const dir = path.join(work, 'model');
    return {
      arbitrary: mutatedModelFiles(),
      run(changes) {
        linkModel(TINY_CHAT, dir);
        for (const c of changes) put(dir, c.file, c.data);
        const r = spawnSync(
          process.execPath,
          [BIN, 'generate', '--model', dir, '--prompt', 'Hi', '--max-new-tokens', '2'],
          {
            encoding: 'latin1',
            env: { ...process.env, SCALPEL_KERNELS: 'js' },
            timeout: 60_000,
          },
        );
        if (r.signal) throw new Error(`scalpel generate ended by ${r.signal}`);
        if (r.status !== 0 && r.status !== 1) throw new Error(`scalpel generate exited ${r.status}`);
        const err = Buffer.from(r.stderr, 'latin1').toString('utf8');
        if (hasRawControls(err, '\n'))
          throw new Error(`stderr carries raw control characters: ${JSON.stringify(err.slice(0, 300))}`);
        if (/\n\s+at /.test(err)) throw new Error(`stderr has a stack trace: ${JSON.stringify(err.slice(0, 300))}`);
        if (r.status === 1 && !err.startsWith('scalpel: '))
          throw new Error(`exit 1 without a scalpel error: ${JSON.stringify(err.slice(0, 300))}`);
        const out = Buffer.from(r.stdout, 'latin1').toString('utf8');
        if (hasRawControls(out, '\n\t'))
          throw new Error(`stdout carries raw control characters: ${JSON.stringify(out.slice(0, 300))}`);
      },
    };
  },
};

export const ARCHS = ['llama', 'mistral', 'qwen2', 'qwen3', 'gemma2', 'gemma3', 'phi3'];

export const TARGETS: readonly Target<never>[] = [
  safetensors,
  shardedIndex,
  ...ARCHS.map(configTarget),
  tokenizerJson,
  tokenizerConfig,
  chatTemplate,
  prompts,
  runDir,
  ggufTarget,
  serveHttp,
  modelFolder,
  modelFolderCli,
] as unknown as Target<never>[];

export const tmpWork = (name: string) =>
  fs.mkdtempSync(path.join(os.tmpdir(), `scalpel-fuzz-${name.replace(/[^\w-]/g, '_')}-`));
