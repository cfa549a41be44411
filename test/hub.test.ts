// Models from the Hub, in process: resolveModel against the tests' Hub stand-in on 127.0.0.1 (test/support/
// hub-server.ts), into a temporary cache. The cache layout, which files are fetched, revisions, resuming, checksums,
// slow and stalled servers, the Hub's refusals, no network, offline mode and a full disk.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { ScalpelError } from '../src/errors.js';
import { hubCacheDir } from '../src/hub/cache.js';
import { hubSettings, parseHubRef, type ResolveOptions, resolveModel } from '../src/hub/resolve.js';
import { startHubServer, type HubServer } from './support/hub-server.js';

const ROOT = process.cwd();
const LLAMA = path.join(ROOT, 'test/fixtures/models/llama');
const SHARDED = path.join(ROOT, 'test/fixtures/models/llama-sharded');
const REPO = 'test-org/tiny-llama';
const TOKEN = 'hf_test_token';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-hub-'));
let n = 0;
const freshCache = () => fs.mkdtempSync(path.join(tmp, `cache${n++}-`));
const folder = (cache: string, repo = REPO) => path.join(cache, `models--${repo.replace('/', '--')}`);
const sha256 = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** A repository folder: the sharded fixture plus files a model does not need (they must not be fetched). */
function shardedWithExtras(): string {
  const dir = path.join(tmp, 'sharded-extras');
  fs.cpSync(SHARDED, dir, { recursive: true });
  for (const f of ['pytorch_model.bin', 'model.gguf', 'README.md', 'logo.png', 'consolidated.safetensors'])
    fs.writeFileSync(path.join(dir, f), `not needed: ${f}\n`);
  return dir;
}

function noSafetensors(): string {
  const dir = path.join(tmp, 'bin-only');
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(path.join(LLAMA, 'config.json'), path.join(dir, 'config.json'));
  fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), 'pickle');
  return dir;
}

let server: HubServer;
test.before(async () => {
  server = await startHubServer(
    [
      { repo: REPO, dir: LLAMA, tags: ['v1'] },
      { repo: 'test-org/tiny-llama-sharded', dir: shardedWithExtras() },
      { repo: 'test-org/gated-llama', dir: LLAMA, gated: true },
      { repo: 'test-org/bin-only', dir: noSafetensors() },
    ],
    { token: TOKEN },
  );
});
test.after(() => server.close());

const opts = (cacheDir: string, extra: ResolveOptions = {}): ResolveOptions => ({
  endpoint: server.url,
  cacheDir,
  offline: false,
  token: undefined,
  timeoutMs: 5000,
  ...extra,
});

/** Rejects with a ScalpelError whose one-line message matches. */
async function rejects(p: Promise<unknown>, re: RegExp): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ScalpelError, `expected a ScalpelError, got ${(err as Error).stack}`);
    assert.match(err.message, re);
    assert.ok(!err.message.includes('\n'), `one line: ${err.message}`);
    return err.message;
  }
  assert.fail(`expected an error matching ${re}`);
}

test('hub references and settings are read as huggingface_hub reads them', () => {
  assert.deepEqual(parseHubRef('org/name'), { repo: 'org/name', revision: 'main' });
  assert.deepEqual(parseHubRef('Qwen/Qwen2.5-0.5B-Instruct@v1.0'), {
    repo: 'Qwen/Qwen2.5-0.5B-Instruct',
    revision: 'v1.0',
  });
  assert.deepEqual(parseHubRef('org/name@refs/pr/1'), { repo: 'org/name', revision: 'refs/pr/1' });
  for (const bad of ['name', 'a/b/c', '/abs/path', './org/name', 'org/na--me', 'org/name@', 'org/name@../x', 'org/.x'])
    assert.equal(parseHubRef(bad), null, bad);
  const home = os.homedir();
  assert.equal(hubCacheDir({}), path.join(home, '.cache/huggingface/hub'));
  assert.equal(hubCacheDir({ XDG_CACHE_HOME: '/x' }), '/x/huggingface/hub');
  assert.equal(hubCacheDir({ HF_HOME: '/h', XDG_CACHE_HOME: '/x' }), '/h/hub');
  assert.equal(hubCacheDir({ HF_HUB_CACHE: '/c', HF_HOME: '/h' }), '/c');
  const s = hubSettings({ HF_ENDPOINT: 'http://127.0.0.1:9/', HF_TOKEN: 'abc', HF_HUB_OFFLINE: 'TRUE' });
  assert.deepEqual(
    { endpoint: s.endpoint, token: s.token, offline: s.offline, timeoutMs: s.timeoutMs },
    { endpoint: 'http://127.0.0.1:9', token: 'abc', offline: true, timeoutMs: 30_000 },
  );
  assert.equal(hubSettings({}).endpoint, 'https://huggingface.co');
  assert.equal(hubSettings({ HF_HUB_OFFLINE: '0' }).offline, false);
  assert.throws(
    () => hubSettings({ SCALPEL_HUB_TIMEOUT_MS: 'soon' }),
    /SCALPEL_HUB_TIMEOUT_MS=soon: expected a positive/,
  );
});

test('a Hub model lands in the standard cache layout, and a second call downloads nothing', async () => {
  const cache = freshCache();
  const before = server.fileGets().length;
  const progress: [number, number][] = [];
  const got = await resolveModel(REPO, opts(cache, { onProgress: (d, t) => progress.push([d, t]) }));
  const commit = server.commit(REPO);
  const repoDir = folder(cache);
  assert.deepEqual(got, {
    dir: path.join(repoDir, 'snapshots', commit),
    hub: { repo: REPO, revision: 'main', commit },
  });
  // refs/main holds the bare commit hash, as huggingface_hub writes it.
  assert.equal(fs.readFileSync(path.join(repoDir, 'refs/main'), 'utf8'), commit);
  const files = fs.readdirSync(LLAMA).sort();
  assert.deepEqual(fs.readdirSync(got.dir).sort(), files);
  for (const f of files) {
    const link = path.join(got.dir, f);
    const target = fs.readlinkSync(link);
    // Relative links into blobs/, named by the LFS sha256 for LFS files and the git blob id for the others.
    const blob = f.endsWith('.safetensors')
      ? sha256(path.join(LLAMA, f))
      : createHash('sha1')
          .update(`blob ${fs.statSync(path.join(LLAMA, f)).size}\0`)
          .update(fs.readFileSync(path.join(LLAMA, f)))
          .digest('hex');
    assert.equal(target, `../../blobs/${blob}`, f);
    assert.ok(fs.readFileSync(link).equals(fs.readFileSync(path.join(LLAMA, f))), f);
  }
  assert.deepEqual(
    fs.readdirSync(path.join(repoDir, 'blobs')).filter((b) => b.endsWith('.incomplete')),
    [],
  );
  const total = files.reduce((s, f) => s + fs.statSync(path.join(LLAMA, f)).size, 0);
  assert.deepEqual(progress.at(-1), [total, total]);
  assert.equal(server.fileGets().length - before, files.length + 1, 'one GET per file, plus the LFS redirect target');

  const again = await resolveModel(REPO, opts(cache));
  assert.deepEqual(again, got);
  assert.equal(server.fileGets().length - before, files.length + 1, 'the second call downloads no file');
});

test('a sharded model: the index, then only the shards it names; no .bin, .gguf, README or images', async () => {
  const cache = freshCache();
  const repo = 'test-org/tiny-llama-sharded';
  const before = server.requests.length;
  const got = await resolveModel(repo, opts(cache));
  const fetched = server.requests
    .slice(before)
    .filter((r) => r.method === 'GET' && r.path.includes('/resolve/'))
    .map((r) => path.basename(r.path));
  assert.equal(fetched[0], 'model.safetensors.index.json', 'the index comes first');
  assert.deepEqual(fetched.slice().sort(), fs.readdirSync(SHARDED).sort());
  assert.deepEqual(fs.readdirSync(got.dir).sort(), fs.readdirSync(SHARDED).sort());
});

test('revisions: a tag gets its ref file, a commit gets none, an unknown revision is a one-line error', async () => {
  const cache = freshCache();
  const commit = server.commit(REPO);
  const tagged = await resolveModel(`${REPO}@v1`, opts(cache));
  assert.equal(tagged.hub?.commit, commit);
  assert.equal(fs.readFileSync(path.join(folder(cache), 'refs/v1'), 'utf8'), commit);
  const pinned = await resolveModel(`${REPO}@${commit}`, opts(cache));
  assert.equal(pinned.dir, tagged.dir);
  assert.deepEqual(fs.readdirSync(path.join(folder(cache), 'refs')), ['v1']);
  await rejects(resolveModel(`${REPO}@nope`, opts(cache)), /^test-org\/tiny-llama@nope: no such revision/);
});

test('the Hub refuses: unknown repository, gated repository (and HF_TOKEN as a Bearer token), no safetensors', async () => {
  const cache = freshCache();
  await rejects(
    resolveModel('test-org/missing', opts(cache)),
    /^test-org\/missing: no such local folder, and no such model repository on http:\/\/127\.0\.0\.1:\d+ \(HTTP 404\); if it is private, set HF_TOKEN$/,
  );
  const gated = await rejects(
    resolveModel('test-org/gated-llama', opts(cache)),
    /gated repository \(HTTP 401\); accept its licence at http:\/\/127\.0\.0\.1:\d+\/test-org\/gated-llama and set HF_TOKEN/,
  );
  assert.match(gated, /^test-org\/gated-llama\/config\.json: /);
  assert.ok(!fs.existsSync(path.join(folder(cache, 'test-org/gated-llama'), 'snapshots')));
  const before = server.requests.length;
  const got = await resolveModel('test-org/gated-llama', opts(cache, { token: TOKEN }));
  assert.ok(fs.existsSync(path.join(got.dir, 'model.safetensors')));
  const sent = server.requests.slice(before);
  assert.ok(sent.length > 0 && sent.every((r) => r.authorization === `Bearer ${TOKEN}`));
  await rejects(
    resolveModel('test-org/bin-only', opts(cache)),
    /^test-org\/bin-only@[0-9a-f]{40}: no safetensors weights \(model\.safetensors or model\.safetensors\.index\.json\); it has pytorch_model\.bin; Scalpel reads safetensors checkpoints only$/,
  );
  await rejects(
    resolveModel('no-such-folder', opts(cache)),
    /^no-such-folder: no such model folder, and not a Hugging Face repo id/,
  );
});

test('a dropped connection leaves blobs/{sha}.incomplete; the next call resumes it with Range, byte-identical', async () => {
  const cache = freshCache();
  const file = path.join(LLAMA, 'model.safetensors');
  const size = fs.statSync(file).size;
  const half = Math.floor(size / 2);
  server.faults.push({ kind: 'drop', file: 'model.safetensors', at: half });
  try {
    await rejects(
      resolveModel(REPO, opts(cache, { retries: 0 })),
      /^test-org\/tiny-llama\/model\.safetensors: download failed \(.* after \d+ of 695144 bytes\); run again to resume from .*\.incomplete$/,
    );
  } finally {
    server.faults.length = 0;
  }
  const incomplete = path.join(folder(cache), 'blobs', `${sha256(file)}.incomplete`);
  // The server sent half before dropping; how much of it the client had taken in when the socket closed depends on
  // timing (bytes still queued in the HTTP stack are lost with the connection), so the partial file holds at most half.
  const kept = fs.statSync(incomplete).size;
  assert.ok(kept <= half, `${kept} bytes kept of the ${half} sent`);
  assert.ok(
    !fs.existsSync(path.join(folder(cache), 'snapshots')),
    'nothing in snapshots/ before every file is verified',
  );
  const got = await resolveModel(REPO, opts(cache));
  assert.ok(fs.readFileSync(path.join(got.dir, 'model.safetensors')).equals(fs.readFileSync(file)));
  assert.ok(!fs.existsSync(incomplete));
});

test('an interrupted download left in blobs/{sha}.incomplete is resumed with Range for the rest only', async () => {
  // The partial file is laid down by hand, so the resume is checked at a known offset whatever the timing.
  const cache = freshCache();
  const file = path.join(LLAMA, 'model.safetensors');
  const bytes = fs.readFileSync(file);
  const at = Math.floor(bytes.length / 3);
  const blobs = path.join(folder(cache), 'blobs');
  fs.mkdirSync(blobs, { recursive: true });
  fs.writeFileSync(path.join(blobs, `${sha256(file)}.incomplete`), bytes.subarray(0, at));
  const before = server.requests.length;
  const got = await resolveModel(REPO, opts(cache));
  const ranges = server.requests.slice(before).filter((r) => r.range);
  assert.deepEqual(
    ranges.map((r) => r.range),
    [`bytes=${at}-`, `bytes=${at}-`],
    'the resolve URL and its redirect target were asked for the rest only',
  );
  assert.ok(fs.readFileSync(path.join(got.dir, 'model.safetensors')).equals(bytes));
  assert.ok(!fs.existsSync(path.join(blobs, `${sha256(file)}.incomplete`)));
});

test('within one call, a dropped connection is resumed by a retry', async () => {
  const cache = freshCache();
  server.faults.push({ kind: 'drop', file: 'model.safetensors', at: 1000 });
  try {
    const got = await resolveModel(REPO, opts(cache));
    assert.ok(
      fs
        .readFileSync(path.join(got.dir, 'model.safetensors'))
        .equals(fs.readFileSync(path.join(LLAMA, 'model.safetensors'))),
    );
  } finally {
    server.faults.length = 0;
  }
});

test('a corrupted body is refused with the checksum error; nothing of it is left in blobs/ or snapshots/', async () => {
  const cache = freshCache();
  const expected = sha256(path.join(LLAMA, 'model.safetensors'));
  server.faults.push({ kind: 'corrupt', file: 'model.safetensors' });
  try {
    await rejects(
      resolveModel(REPO, opts(cache)),
      new RegExp(
        `^test-org/tiny-llama/model\\.safetensors: checksum mismatch \\(sha256 expected ${expected}, got [0-9a-f]{64}\\); the download was removed, run again$`,
      ),
    );
    assert.ok(!fs.readdirSync(path.join(folder(cache), 'blobs')).some((b) => b.startsWith(expected)));
    assert.ok(!fs.existsSync(path.join(folder(cache), 'snapshots')));
    // A small file is checked against its git blob id.
    server.faults[0] = { kind: 'corrupt', file: 'config.json' };
    const other = freshCache();
    await rejects(
      resolveModel(REPO, opts(other)),
      /^test-org\/tiny-llama\/config\.json: checksum mismatch \(git blob id expected [0-9a-f]{40}, got [0-9a-f]{40}\)/,
    );
    assert.deepEqual(fs.readdirSync(path.join(folder(other), 'blobs')), []);
    assert.ok(!fs.existsSync(path.join(folder(other), 'snapshots')));
  } finally {
    server.faults.length = 0;
  }
});

test('a slow server: progress keeps moving, and a download longer than the timeout is not a stall', async () => {
  const cache = freshCache();
  // 43 pieces 60 ms apart (about 2.6 s) against a 1 s inactivity timeout: wide margins, as the server shares this
  // process's event loop with the client.
  server.faults.push({ kind: 'slow', file: 'model.safetensors', chunk: 16 * 1024, delayMs: 60 });
  const seen: { t: number; done: number }[] = [];
  const t0 = Date.now();
  try {
    await resolveModel(
      REPO,
      opts(cache, { timeoutMs: 1000, onProgress: (done) => seen.push({ t: Date.now() - t0, done }) }),
    );
  } finally {
    server.faults.length = 0;
  }
  const elapsed = Date.now() - t0;
  assert.ok(elapsed > 2000, `the slow file took ${elapsed} ms, longer than the 1 s timeout`);
  assert.ok(seen.length >= 20, `${seen.length} progress reports`);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.done >= seen[i - 1]!.done);
  // No quiet half: reports arrive all through the download.
  const late = seen.filter((s) => s.t > elapsed / 2);
  assert.ok(late.length >= 5, `${late.length} reports in the second half`);
});

test('a stalled server times out with a clear error (SCALPEL_HUB_TIMEOUT_MS)', async () => {
  const cache = freshCache();
  server.faults.push({ kind: 'stall', file: 'model.safetensors', at: 4096 });
  const t0 = Date.now();
  try {
    await rejects(
      resolveModel(REPO, opts(cache, { timeoutMs: 500, retries: 1 })),
      /^test-org\/tiny-llama\/model\.safetensors: download failed \(no data for 0\.5 s after 4096 of 695144 bytes \(timeout\)\); run again to resume/,
    );
  } finally {
    server.faults.length = 0;
  }
  assert.ok(Date.now() - t0 < 5000);
  assert.ok(!fs.existsSync(path.join(folder(cache), 'snapshots')));
});

test('no network: a one-line error naming HF_HUB_OFFLINE and the cache; with the model cached, the cache answers', async () => {
  const closed = http.createServer();
  await new Promise<void>((ok) => closed.listen(0, '127.0.0.1', ok));
  const dead = `http://127.0.0.1:${(closed.address() as { port: number }).port}`;
  await new Promise<void>((ok) => closed.close(() => ok()));
  const cache = freshCache();
  await rejects(
    resolveModel(REPO, opts(cache, { endpoint: dead })),
    new RegExp(
      `^test-org/tiny-llama: cannot reach ${dead} \\(ECONNREFUSED\\) and the model is not in the cache ${cache}; connect to the network, or set HF_HUB_OFFLINE=1 to use a cache that has it$`,
    ),
  );
  const got = await resolveModel(REPO, opts(cache));
  const lines: string[] = [];
  const cached = await resolveModel(REPO, opts(cache, { endpoint: dead, log: (l) => lines.push(l) }));
  assert.deepEqual(cached, got);
  assert.match(lines.join('\n'), /cannot be reached \(ECONNREFUSED\); using the cached snapshot [0-9a-f]{40}/);
});

test('HF_HUB_OFFLINE: only the cache is read, and a model not cached is a one-line error', async () => {
  const cache = freshCache();
  await rejects(
    resolveModel(REPO, opts(cache, { offline: true })),
    /^test-org\/tiny-llama: no such local folder, and not in the Hugging Face cache .* \(HF_HUB_OFFLINE=1 allows no download\); unset HF_HUB_OFFLINE to download it$/,
  );
  const got = await resolveModel(REPO, opts(cache));
  const before = server.requests.length;
  assert.deepEqual(await resolveModel(REPO, opts(cache, { offline: true })), got);
  assert.deepEqual(await resolveModel(`${REPO}@${got.hub!.commit}`, opts(cache, { offline: true })), {
    ...got,
    hub: { ...got.hub!, revision: got.hub!.commit },
  });
  assert.equal(server.requests.length, before, 'offline sends nothing');
  // A snapshot that lacks the weights (a transformers user fetched only config.json) is not a cached model.
  fs.rmSync(path.join(got.dir, 'model.safetensors'));
  await rejects(resolveModel(REPO, opts(cache, { offline: true })), /not in the Hugging Face cache/);
});

test('a full disk: ENOSPC names the file and says how to get out', { skip: !fs.existsSync('/dev/full') }, async () => {
  const cache = freshCache();
  const blobs = path.join(folder(cache), 'blobs');
  fs.mkdirSync(blobs, { recursive: true });
  // Writes into /dev/full fail with ENOSPC, as on a full disk.
  fs.symlinkSync('/dev/full', path.join(blobs, `${sha256(path.join(LLAMA, 'model.safetensors'))}.incomplete`));
  await rejects(
    resolveModel(REPO, opts(cache)),
    /\.incomplete: no space left on the device while downloading test-org\/tiny-llama\/model\.safetensors \(695144 bytes\); free space or set HF_HUB_CACHE to a larger disk, then run again to resume$/,
  );
  assert.ok(!fs.existsSync(path.join(folder(cache), 'snapshots')));
});

test('a local folder wins over a Hub id of the same shape', async () => {
  const cwd = process.cwd();
  const dir = fs.mkdtempSync(path.join(tmp, 'local-'));
  fs.mkdirSync(path.join(dir, 'test-org'));
  fs.cpSync(LLAMA, path.join(dir, REPO), { recursive: true });
  process.chdir(dir);
  try {
    const before = server.requests.length;
    assert.deepEqual(await resolveModel(REPO, opts(freshCache())), { dir: path.join(dir, REPO) });
    assert.equal(server.requests.length, before);
  } finally {
    process.chdir(cwd);
  }
});
