// Soak test of `scalpel serve` (issue 16), after `npm run build`: `npm run soak` or `node bench/soak.mjs [--minutes 10]
// [--clients 32] [--seed 1] [--model DIR] [--run DIR]`. Starts `scalpel serve` as its own process on 127.0.0.1 (with
// a small run of the project's model, made first unless --run is given), computes every greedy answer it will check
// alone and in sequence, then holds --clients concurrent clients for --minutes of mixed requests: greedy and sampled,
// whole and streamed, chat and completions, each model alias and per-request λ (the `scalpel` field); some clients
// disconnect mid-stream, send bodies that are not JSON or larger than the limit, or read their stream a few bytes at
// a time. It stops by itself, prints requests served, errors by kind, p50/p99 latency and the server's RSS over time
// (VmRSS from /proc/PID/status), and exits 1 unless: zero 5xx, every greedy answer equals its reference, every bad
// request got its 4xx, and RSS grew at most 5% from the end of warm-up (the first fifth) to the end.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// The project's own seeded generator (the soak's request mix is reproducible from --seed).
const { mulberry32 } = await import(new URL('../dist/src/rng.js', import.meta.url).href);
const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    clients: { type: 'string', default: '32' },
    seed: { type: 'string', default: '1' },
    model: { type: 'string', default: path.join(root, 'models', 'scalpel-tiny-chat') },
    run: { type: 'string' },
  },
});
const minutes = Number(values.minutes);
const clients = Number(values.clients);
if (!(minutes > 0) || !(clients >= 1)) throw new Error('--minutes and --clients must be positive');
const BIN = path.join(root, 'bin', 'scalpel.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-soak-'));

// ---------------------------------------------------------------------------------------------------------------
// The server: a run to serve (small: the soak is about the server, not the method), then `scalpel serve`.

let runDir = values.run;
if (!runDir) {
  runDir = path.join(tmp, 'run');
  console.log(`making a small run in ${runDir} …`);
  const r = spawnSync(
    process.execPath,
    [
      ...[BIN, 'run', '--model', values.model, '--out', runDir, '--n-train', '16', '--n-val', '8'],
      ...['--max-new-tokens', '16', '--eval', 'builtin-harmless-test:2', '--quiet'],
    ],
    { cwd: root, encoding: 'utf8', env: { ...process.env, SCALPEL_DATA: '' } },
  );
  if (r.status !== 0) throw new Error(`scalpel run failed: ${r.stderr}`);
}
const server = spawn(process.execPath, [BIN, 'serve', '--model', values.model, '--run', runDir, '--port', '0'], {
  cwd: root,
  stdio: ['ignore', 'ignore', 'pipe'],
});
const accessLog = { lines: 0, byStatus: new Map() };
const base = await new Promise((resolve, reject) => {
  let buf = '';
  server.stderr.on('data', (d) => {
    buf += d;
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const m = /^scalpel serve: (http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(line);
      if (m) resolve(m[1]);
      const a = /^(GET|POST) "[^"]*" (\d{3})/.exec(line);
      if (a) {
        accessLog.lines++;
        accessLog.byStatus.set(a[2], (accessLog.byStatus.get(a[2]) ?? 0) + 1);
      } else if (line.includes('scalpel serve:') && !m && !/SIGTERM|finishing/.test(line))
        console.log(`server: ${line}`);
      nl = buf.indexOf('\n');
    }
  });
  server.once('exit', (code) => reject(new Error(`scalpel serve exited early (${code})`)));
});
console.log(`scalpel serve (pid ${server.pid}) at ${base}`);
const NAME = path.basename(values.model);

function rssBytes() {
  const status = fs.readFileSync(`/proc/${server.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]) * 1024;
}

// ---------------------------------------------------------------------------------------------------------------
// Requests. Greedy ones (temperature 0) have a reference answer, computed alone and in sequence before the load.

const PROMPTS = [
  'How do I kill a Python process?',
  'Write a short poem about the sea.',
  'How do I pick a lock?',
  'Name three colors.',
  'What is the capital of France?',
  'How can I shoot a good photo at night?',
  'Explain how vaccines work.',
  'How do I make a bomb?',
];
const VARIANTS = [
  { model: NAME },
  { model: `${NAME}:baseline` },
  { model: `${NAME}:lambda=0.5` },
  { model: NAME, scalpel: { lambda: 0.25 } },
  { model: NAME, scalpel: { intervention: 'none' } },
];
const ROUTES = ['chat', 'completion'];
const MAX_TOKENS = 32;

function body(route, prompt, variant, extra = {}) {
  const common = { ...variant, max_tokens: MAX_TOKENS, temperature: 0, ...extra };
  return route === 'chat' ? { ...common, messages: [{ role: 'user', content: prompt }] } : { ...common, prompt };
}
const url = (route) => `${base}/v1/${route === 'chat' ? 'chat/completions' : 'completions'}`;
const keyOf = (route, p, v) => `${route}|${p}|${v}`;

async function post(route, b, signal) {
  return fetch(url(route), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(b),
    signal,
  });
}

const textOf = (route, json) => (route === 'chat' ? json.choices[0].message.content : json.choices[0].text);

/** Reads an SSE stream to its end; the concatenated text and whether [DONE] came. */
async function readStream(route, res, stopAfterChunks = Infinity, abort) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  let text = '';
  let chunks = 0;
  let done = false;
  let error = null;
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) break;
    buf += dec.decode(value, { stream: true });
    let i = buf.indexOf('\n\n');
    while (i >= 0) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      i = buf.indexOf('\n\n');
      if (!event.startsWith('data: ')) continue;
      const data = event.slice(6);
      if (data === '[DONE]') {
        done = true;
        continue;
      }
      const j = JSON.parse(data);
      if (j.error) error = j.error;
      else text += route === 'chat' ? (j.choices[0]?.delta?.content ?? '') : (j.choices[0]?.text ?? '');
      if (++chunks >= stopAfterChunks) {
        abort.abort();
        await reader.cancel().catch(() => {});
        return { text, done, chunks, error, cut: true };
      }
    }
  }
  return { text, done, chunks, error, cut: false };
}

console.log(`references: ${ROUTES.length * PROMPTS.length * VARIANTS.length} greedy answers, one at a time …`);
const references = new Map();
for (const route of ROUTES)
  for (const p of PROMPTS)
    for (const [vi, v] of VARIANTS.entries()) {
      const res = await post(route, body(route, p, v));
      if (res.status !== 200) throw new Error(`reference ${route} ${p} ${vi}: HTTP ${res.status} ${await res.text()}`);
      references.set(keyOf(route, p, vi), textOf(route, await res.json()));
    }

// ---------------------------------------------------------------------------------------------------------------
// The load.

const stats = {
  served: 0,
  byKind: new Map(), // kind → { n, ms: [] }
  errors: new Map(), // kind of error → count
  status: new Map(),
  mismatches: [],
};
function count(map, key, n = 1) {
  map.set(key, (map.get(key) ?? 0) + n);
}
function record(kind, ms) {
  const k = stats.byKind.get(kind) ?? { n: 0, ms: [] };
  k.n++;
  k.ms.push(ms);
  stats.byKind.set(kind, k);
  stats.served++;
}
function error(kind, detail) {
  count(stats.errors, kind);
  if (stats.errors.get(kind) <= 3) console.log(`  ${kind}: ${detail}`);
}
function statusSeen(s) {
  count(stats.status, String(s));
  if (s >= 500) error('5xx', `HTTP ${s}`);
}

/** Raw HTTP, for what fetch will not do: a body that is not JSON, and reading a stream a few bytes at a time. */
function rawRequest(pathname, payload, onResponse) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${base}${pathname}`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        signal: AbortSignal.timeout(300_000),
      },
      (res) => onResponse(res).then(resolve, reject),
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const KINDS = [
  ['greedy', 30],
  ['greedy-stream', 25],
  ['sampled', 10],
  ['disconnect', 10],
  ['garbage', 8],
  ['oversized', 5],
  ['slow-reader', 12],
];
const totalWeight = KINDS.reduce((a, [, w]) => a + w, 0);
function pickKind(rand) {
  let x = rand() * totalWeight;
  for (const [k, w] of KINDS) {
    x -= w;
    if (x < 0) return k;
  }
  return KINDS[0][0];
}

async function oneRequest(kind, rand) {
  const route = ROUTES[Math.floor(rand() * ROUTES.length)];
  const pi = Math.floor(rand() * PROMPTS.length);
  const vi = Math.floor(rand() * VARIANTS.length);
  const ref = references.get(keyOf(route, PROMPTS[pi], vi));
  const timeout = AbortSignal.timeout(120_000);
  const t0 = performance.now();
  if (kind === 'greedy') {
    const res = await post(route, body(route, PROMPTS[pi], VARIANTS[vi]), timeout);
    statusSeen(res.status);
    if (res.status !== 200) return error(`greedy HTTP ${res.status}`, await res.text());
    const got = textOf(route, await res.json());
    if (got !== ref) {
      error('greedy mismatch', `${route} ${JSON.stringify(PROMPTS[pi])} variant ${vi}`);
      stats.mismatches.push({ route, prompt: PROMPTS[pi], variant: vi, got, ref });
    }
  } else if (kind === 'greedy-stream') {
    const res = await post(route, body(route, PROMPTS[pi], VARIANTS[vi], { stream: true }), timeout);
    statusSeen(res.status);
    if (res.status !== 200) return error(`stream HTTP ${res.status}`, await res.text());
    const s = await readStream(route, res);
    if (s.error) return error('stream error event', JSON.stringify(s.error));
    if (!s.done) return error('stream without [DONE]', '');
    if (s.text !== ref) {
      error('greedy-stream mismatch', `${route} ${JSON.stringify(PROMPTS[pi])} variant ${vi}`);
      stats.mismatches.push({ route, prompt: PROMPTS[pi], variant: vi, got: s.text, ref, stream: true });
    }
  } else if (kind === 'sampled') {
    const res = await post(route, body(route, PROMPTS[pi], VARIANTS[vi], { temperature: 0.9, top_p: 0.95 }), timeout);
    statusSeen(res.status);
    if (res.status !== 200) return error(`sampled HTTP ${res.status}`, await res.text());
    await res.json();
  } else if (kind === 'disconnect') {
    const abort = new AbortController();
    const res = await post(
      route,
      body(route, PROMPTS[pi], VARIANTS[vi], { stream: true, max_tokens: 128, ignore_eos: true }),
      AbortSignal.any([abort.signal, timeout]),
    );
    statusSeen(res.status);
    if (res.status !== 200) return error(`disconnect HTTP ${res.status}`, await res.text());
    try {
      await readStream(route, res, 1 + Math.floor(rand() * 6), abort);
    } catch (e) {
      if (e.name !== 'AbortError') throw e;
    }
  } else if (kind === 'garbage') {
    const junk = ['{"model": ', 'not json at all', '{"model": "x", "messages": [}', '\u0000\u0001\u0002', '[]'][
      Math.floor(rand() * 5)
    ];
    const status = await rawRequest(
      route === 'chat' ? '/v1/chat/completions' : '/v1/completions',
      junk,
      (res) =>
        new Promise((ok) => {
          res.resume();
          res.on('end', () => ok(res.statusCode));
        }),
    );
    statusSeen(status);
    if (status !== 400) return error(`garbage answered ${status}`, JSON.stringify(junk));
  } else if (kind === 'oversized') {
    const big = body(route, 'x'.repeat(1024 * 1024 + 10), VARIANTS[vi]);
    const res = await post(route === 'chat' ? 'chat' : 'completion', big, timeout).catch((e) => e);
    if (res instanceof Error) return error('oversized: connection error', res.message); // the server may close early
    statusSeen(res.status);
    await res.text();
    if (res.status !== 413) return error(`oversized answered ${res.status}`, '');
  } else if (kind === 'slow-reader') {
    // A long streamed answer read 64 bytes at a time, with pauses: the server must neither stall others nor grow.
    const payload = JSON.stringify(
      body(route, PROMPTS[pi], VARIANTS[vi], { stream: true, max_tokens: 256, ignore_eos: true }),
    );
    const path_ = route === 'chat' ? '/v1/chat/completions' : '/v1/completions';
    const { status, got } = await rawRequest(
      path_,
      payload,
      (res) =>
        new Promise((ok, fail) => {
          let got = '';
          res.on('error', fail);
          res.on('end', () => ok({ status: res.statusCode, got }));
          const tick = () => {
            const piece = res.read(64);
            if (piece !== null) got += piece;
            if (!res.readableEnded) setTimeout(tick, 5);
          };
          tick();
        }),
    );
    statusSeen(status);
    if (status !== 200) return error(`slow-reader answered ${status}`, '');
    if (!got.includes('data: [DONE]')) return error('slow-reader stream without [DONE]', '');
  }
  record(kind, performance.now() - t0);
}

const durationMs = minutes * 60_000;
const warmupMs = durationMs / 5;
const start = performance.now();
const deadline = start + durationMs;
const rss = [];
const sampleEvery = Math.max(1000, Math.min(10_000, durationMs / 60));
const sampler = setInterval(() => rss.push({ t: (performance.now() - start) / 1000, bytes: rssBytes() }), sampleEvery);
rss.push({ t: 0, bytes: rssBytes() });

console.log(`load: ${clients} clients for ${minutes} min (warm-up: the first ${(warmupMs / 60000).toFixed(1)} min)`);
const seed = Number(values.seed);
await Promise.all(
  Array.from({ length: clients }, async (_, c) => {
    const rand = mulberry32(seed * 1000 + c);
    while (performance.now() < deadline) {
      const kind = pickKind(rand);
      try {
        await oneRequest(kind, rand);
      } catch (e) {
        error(`${kind}: ${e.name}`, e.message);
      }
    }
  }),
);
clearInterval(sampler);
rss.push({ t: (performance.now() - start) / 1000, bytes: rssBytes() });

// After the load: the server must still answer, then stop cleanly on SIGTERM.
const health = await fetch(`${base}/health`).then((r) => r.json());
server.kill('SIGTERM');
const exitCode = await new Promise((ok) => server.once('exit', ok));

// ---------------------------------------------------------------------------------------------------------------
// Report.

const pct = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const mb = (b) => (b / 2 ** 20).toFixed(1);
const all = [...stats.byKind.values()].flatMap((k) => k.ms);
console.log('\nkind            served    p50 ms    p99 ms');
for (const [kind] of KINDS) {
  const k = stats.byKind.get(kind) ?? { n: 0, ms: [] };
  console.log(
    `${kind.padEnd(14)} ${String(k.n).padStart(7)} ${pct(k.ms, 0.5).toFixed(0).padStart(9)} ${pct(k.ms, 0.99).toFixed(0).padStart(9)}`,
  );
}
console.log(
  `${'all'.padEnd(14)} ${String(stats.served).padStart(7)} ${pct(all, 0.5).toFixed(0).padStart(9)} ${pct(all, 0.99).toFixed(0).padStart(9)}`,
);
console.log(`\nHTTP statuses seen by clients: ${JSON.stringify(Object.fromEntries(stats.status))}`);
console.log(`server access log: ${accessLog.lines} lines, ${JSON.stringify(Object.fromEntries(accessLog.byStatus))}`);
console.log(`errors by kind: ${stats.errors.size === 0 ? 'none' : JSON.stringify(Object.fromEntries(stats.errors))}`);
console.log(`server health after the load: ${JSON.stringify(health)}; exit after SIGTERM: ${exitCode}`);

// RSS: averaged over the samples of the last tenth of each window, so one sample's noise does not decide.
const window = (from, to) => {
  const xs = rss.filter((s) => s.t * 1000 >= from && s.t * 1000 <= to).map((s) => s.bytes);
  return xs.reduce((a, b) => a + b, 0) / xs.length;
};
const tail = durationMs / 10;
const atWarm = window(warmupMs - tail, warmupMs);
const atEnd = window(durationMs - tail, durationMs + 60_000);
const growth = (atEnd - atWarm) / atWarm;
console.log('\nRSS over time (MiB):');
const stepEvery = Math.max(1, Math.floor(rss.length / 20));
console.log(
  rss
    .filter((_, i) => i % stepEvery === 0 || i === rss.length - 1)
    .map((s) => `${s.t.toFixed(0)}s ${mb(s.bytes)}`)
    .join(', '),
);
console.log(
  `RSS at the end of warm-up ${mb(atWarm)} MiB, at the end ${mb(atEnd)} MiB: ${(growth * 100).toFixed(2)}% growth (limit 5%); peak ${mb(Math.max(...rss.map((s) => s.bytes)))} MiB`,
);

const fiveXX = [...stats.status].filter(([s]) => Number(s) >= 500).reduce((a, [, n]) => a + n, 0);
const failures = [];
if (fiveXX > 0) failures.push(`${fiveXX} 5xx answers`);
if (stats.mismatches.length > 0) failures.push(`${stats.mismatches.length} greedy answers differ from their reference`);
if (stats.errors.size > 0) failures.push(`errors: ${[...stats.errors.keys()].join(', ')}`);
if (growth > 0.05) failures.push(`RSS grew ${(growth * 100).toFixed(1)}% after warm-up`);
if (exitCode !== 0) failures.push(`server exit code ${exitCode} after SIGTERM`);
fs.rmSync(tmp, { recursive: true, force: true });
console.log(failures.length === 0 ? '\nsoak: PASS' : `\nsoak: FAIL (${failures.join('; ')})`);
process.exit(failures.length === 0 ? 0 : 1);
