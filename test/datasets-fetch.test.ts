// Downloading the public prompt sets: `scalpel datasets fetch` and the fetch on first use, against a raw-file server
// on 127.0.0.1 that this test starts (test/support/raw-server.ts) and that serves the shared raw/ collection in place.
// Every child process gets SCALPEL_DATASETS_ENDPOINT pointing at it and a fresh SCALPEL_CACHE, so nothing here
// leaves the machine or touches the user's cache.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DATASETS, loadPromptSet, setSource } from '../src/method/datasets.js';
import { fetchDatasets } from '../src/method/fetch.js';
import { FILE_SOURCES, fileSource, sourceUrl } from '../src/method/sources.js';
import { rawPath, startRawServer, type RawServer } from './support/raw-server.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = path.join(root, 'bin', 'scalpel.js');
const RAW = path.resolve(root, '..', 'shared', 'datasets', 'raw');
const MODEL = path.join(root, 'models', 'scalpel-tiny-chat');
const skip = fs.existsSync(RAW) ? false : `no shared data at ${RAW}`;
const PUBLIC = DATASETS.filter((d) => !d.builtin);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-fetch-'));
let server: RawServer;
before(async () => {
  if (!skip) server = await startRawServer(RAW);
});
after(async () => {
  await server?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A fresh cache root (SCALPEL_CACHE); the files go under its datasets/ folder. */
const newCache = (name: string) => path.join(tmp, name);

/** Runs the CLI asynchronously (the server answers from this process, so a synchronous spawn would deadlock). */
function scalpel(cache: string, ...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, SCALPEL_CACHE: cache, SCALPEL_DATASETS_ENDPOINT: server.url };
  delete env['SCALPEL_DATA'];
  const child = spawn(process.execPath, [bin, ...args], { env, cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    err += c.toString();
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err })));
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
/** Every file under dir, relative, temp files included. */
const listFiles = (dir: string) =>
  fs.existsSync(dir)
    ? (fs.readdirSync(dir, { recursive: true }) as string[])
        .filter((f) => fs.statSync(path.join(dir, f)).isFile())
        .sort()
    : [];

test('every public set knows its pinned source, and the table matches the shared raw/ files', { skip }, () => {
  for (const d of PUBLIC) {
    const s = setSource(d);
    assert.ok(s, `${d.name}: no pinned source`);
    assert.match(s.repo, /^[\w.-]+\/[\w.-]+$/, d.name);
    assert.match(s.commit, /^[0-9a-f]{40}$/, d.name);
    assert.match(s.sha256, /^[0-9a-f]{64}$/, d.name);
    assert.ok(s.licence.length > 0 && s.path.length > 0, d.name);
  }
  for (const s of FILE_SOURCES) {
    const bytes = fs.readFileSync(path.join(RAW, s.file));
    assert.equal(sha256(bytes), s.sha256, s.file);
    assert.equal(bytes.length, s.bytes, s.file);
  }
  // The URL layout of GitHub's raw files: {endpoint}/{owner}/{repo}/{commit}/{path}.
  assert.equal(
    sourceUrl(fileSource('xstest/xstest_prompts.csv')!, 'https://raw.githubusercontent.com'),
    'https://raw.githubusercontent.com/paul-rottger/exaggerated-safety/d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d/xstest_prompts.csv',
  );
});

test('scalpel datasets fetch: every public set downloaded and verified, licences printed once; a second fetch downloads nothing', {
  skip,
}, async () => {
  const cache = newCache('all');
  const n0 = server.count();
  const r = await scalpel(cache, 'datasets', 'fetch');
  assert.equal(r.code, 0, r.err);
  assert.equal(server.count() - n0, FILE_SOURCES.length, 'one request per file');
  assert.match(
    r.out,
    new RegExp(`^${FILE_SOURCES.length} files verified in .* \\(${FILE_SOURCES.length} downloaded`, 'm'),
  );
  assert.equal((r.out.match(/^ +licence of /gm) ?? []).length, FILE_SOURCES.length, 'a licence line per file');
  assert.match(r.out, /licence of xstest-safe, xstest-unsafe: CC BY 4\.0/);
  // The cache has the raw/ layout, byte for byte, and nothing else (no temp files left over).
  const dir = path.join(cache, 'datasets');
  assert.deepEqual(listFiles(dir), FILE_SOURCES.map((s) => path.join(...s.file.split('/'))).sort());
  for (const s of FILE_SOURCES)
    assert.ok(fs.readFileSync(path.join(dir, s.file)).equals(fs.readFileSync(path.join(RAW, s.file))), s.file);
  // Every set now loads from the cache without a data directory, with the same prompts as from raw/.
  const saved = process.env['SCALPEL_CACHE'];
  process.env['SCALPEL_CACHE'] = cache;
  try {
    for (const d of PUBLIC)
      assert.deepEqual(loadPromptSet(d.name, undefined).prompts, loadPromptSet(d.name, RAW).prompts, d.name);
  } finally {
    if (saved === undefined) delete process.env['SCALPEL_CACHE'];
    else process.env['SCALPEL_CACHE'] = saved;
  }

  const n1 = server.count();
  const again = await scalpel(cache, 'datasets', 'fetch');
  assert.equal(again.code, 0, again.err);
  assert.equal(server.count(), n1, 'nothing requested the second time');
  assert.match(again.out, new RegExp(`\\(0 downloaded .*, ${FILE_SOURCES.length} already cached\\)`));
  assert.doesNotMatch(again.out, /licence of/);

  const listed = await scalpel(cache, 'datasets', '--json');
  const rows = JSON.parse(listed.out).datasets as { name: string; size: number; pinned: unknown; licence: string }[];
  const xs = rows.find((x) => x.name === 'xstest-safe')!;
  assert.equal(xs.size, 250);
  assert.equal(xs.licence, 'CC BY 4.0');
  assert.deepEqual(xs.pinned, {
    repo: 'paul-rottger/exaggerated-safety',
    commit: 'd7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d',
    path: 'xstest_prompts.csv',
    sha256: fileSource('xstest/xstest_prompts.csv')!.sha256,
    bytes: 38719,
  });
  const text = await scalpel(cache, 'datasets');
  assert.match(
    text.out,
    /or-bench-toxic +655 .*\n +source +sebastianvne\/supp_exp@4b8a74e37021d7a25cb13529b84d82137c6cb0a7 datasets\/or-bench\/or-bench-toxic\.csv\n +upstream +HF bench-llm\/or-bench/,
  );
});

test('a file whose sha256 differs is refused in one line with both hashes, and nothing is cached under its name', {
  skip,
}, async () => {
  const cache = newCache('corrupt');
  const toxic = fileSource('or-bench/or-bench-toxic.csv')!;
  const url = rawPath(toxic);
  const flipped = Buffer.from(fs.readFileSync(path.join(RAW, toxic.file)));
  flipped[99] = flipped[99]! ^ 0x01;
  server.corrupt.add(url);
  let r: Awaited<ReturnType<typeof scalpel>>;
  try {
    r = await scalpel(cache, 'datasets', 'fetch');
  } finally {
    server.corrupt.delete(url);
  }
  assert.equal(r.code, 1);
  const lines = r.err.trimEnd().split('\n');
  assert.equal(lines.length, 1, r.err);
  assert.equal(
    lines[0],
    `scalpel: or-bench/or-bench-toxic.csv: sha256 mismatch, expected ${toxic.sha256}, got ${sha256(flipped)} (64067 bytes from ${server.url}${url}); refused, nothing written`,
  );
  // The other files were fetched; the bad one left neither a file nor a temp file behind.
  const dir = path.join(cache, 'datasets');
  assert.equal(listFiles(dir).length, FILE_SOURCES.length - 1);
  assert.deepEqual(listFiles(path.join(dir, 'or-bench')), []);
  // Once the server sends the right bytes, a rerun downloads only that file.
  const n0 = server.count();
  const before = server.requests.get(url) ?? 0;
  const again = await scalpel(cache, 'datasets', 'fetch');
  assert.equal(again.code, 0, again.err);
  assert.equal(server.count() - n0, 1);
  assert.equal(server.requests.get(url), before + 1);
});

test('a connection dropped mid-file leaves no partial file under the final name, and a rerun succeeds', {
  skip,
}, async () => {
  const cache = newCache('drop');
  const xs = fileSource('xstest/xstest_prompts.csv')!;
  const url = rawPath(xs);
  server.drop.add(url);
  let r: Awaited<ReturnType<typeof scalpel>>;
  try {
    r = await scalpel(cache, 'datasets', 'fetch', 'xstest-safe');
  } finally {
    server.drop.delete(url);
  }
  assert.equal(r.code, 1);
  assert.match(
    r.err,
    /^scalpel: xstest\/xstest_prompts\.csv: download from http:\/\/127\.0\.0\.1:\d+\/paul-rottger\/.* broke off after \d+ of 38719 bytes .*; run it again\n$/,
  );
  assert.deepEqual(listFiles(path.join(cache, 'datasets')), [], 'no file and no temp file');
  const again = await scalpel(cache, 'datasets', 'fetch', 'xstest-safe', 'xstest-unsafe');
  assert.equal(again.code, 0, again.err);
  assert.match(again.out, /licence of xstest-safe, xstest-unsafe: CC BY 4\.0/);
  assert.deepEqual(listFiles(path.join(cache, 'datasets')), [path.join('xstest', 'xstest_prompts.csv')]);
});

test('the library fetch reports progress over the bytes it downloads, and refuses names that are not public sets', {
  skip,
}, async () => {
  const cacheDir = path.join(newCache('lib'), 'datasets');
  const updates: number[] = [];
  let total = 0;
  const files = await fetchDatasets(['oktest', 'jbb-benign'], {
    cacheDir,
    endpoint: server.url,
    progress: (_label, t) => {
      total = t;
      return { update: (done) => updates.push(done), stop() {} };
    },
  });
  assert.deepEqual(
    files.map((f) => [f.source.file, f.status]),
    [
      ['oktest/OKTest.csv', 'downloaded'],
      ['jailbreakbench/benign-behaviors.csv', 'downloaded'],
    ],
  );
  assert.equal(total, 22289 + 20570);
  assert.equal(updates.at(-1), total);
  await assert.rejects(fetchDatasets(['builtin-harmful-train'], { cacheDir, endpoint: server.url }), /is built in/);
  await assert.rejects(fetchDatasets(['no-such-set'], { cacheDir, endpoint: server.url }), /not a public set/);
  // A loopback port nobody listens on (taken and let go): one line naming the file and the URL.
  const closed = http.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((resolve) => closed.close(resolve));
  await assert.rejects(
    fetchDatasets(['advbench'], { cacheDir, endpoint: `http://127.0.0.1:${port}` }),
    /^ScalpelError: advbench\/advbench\.csv: cannot reach http:\/\/127\.0\.0\.1:\d+\/andyrdt\/refusal_direction\/.*\(ECONNREFUSED\); pass --data-dir DIR to use a local copy$/,
  );
});

test('the method commands fetch a public set named without a data directory on first use; --data-dir wins', {
  skip: skip || (!fs.existsSync(path.join(MODEL, 'config.json')) && 'no small chat model'),
  timeout: 120_000,
}, async () => {
  const cache = newCache('run');
  // No refusal probing or filter: this is about which files are read, not about what the model does with them.
  const small = ['--n-train', '4', '--n-val', '2', '--no-filter', '--refusal-tokens', 'paper'];
  // The built-in defaults need nothing from the network.
  const n0 = server.count();
  const builtin = await scalpel(cache, 'extract', '--model', MODEL, '--out', path.join(tmp, 'r0'), ...small);
  assert.equal(builtin.code, 0, builtin.err);
  assert.equal(server.count(), n0);
  // Public pseudo-harmful sets by name: their two files are fetched, with their licence, and nothing else.
  const named = ['--pseudo-train', 'or-bench-hard-train', '--pseudo-val', 'or-bench-hard-val'];
  const r = await scalpel(cache, 'extract', '--model', MODEL, '--out', path.join(tmp, 'r1'), ...small, ...named);
  assert.equal(r.code, 0, r.err);
  assert.equal(server.count() - n0, 2);
  assert.match(
    r.err,
    /downloaded false_refusal_mitigation_splits\/or_bench_hard_train\.json .*licence of or-bench-hard-train: CC BY 4\.0/,
  );
  assert.deepEqual(listFiles(path.join(cache, 'datasets')), [
    path.join('false_refusal_mitigation_splits', 'or_bench_hard_train.json'),
    path.join('false_refusal_mitigation_splits', 'or_bench_hard_val.json'),
  ]);
  const run = JSON.parse(fs.readFileSync(path.join(tmp, 'r1', 'run.json'), 'utf8'));
  assert.equal(run.config.dataDir, null, 'the run records no data directory: the cache is pinned by hash');
  // A data directory wins: nothing is fetched, even for a set the cache lacks.
  const n1 = server.count();
  const local = ['--data-dir', RAW, '--pseudo-val', 'xstest-safe'];
  const d = await scalpel(cache, 'extract', '--model', MODEL, '--out', path.join(tmp, 'r2'), ...small, ...local);
  assert.equal(d.code, 0, d.err);
  assert.equal(server.count(), n1);
  assert.ok(!fs.existsSync(path.join(cache, 'datasets', 'xstest')));
});
