// Models from the Hub through the command line: `scalpel generate --model org/name` with HF_ENDPOINT at the tests'
// Hub stand-in on 127.0.0.1 and HF_HUB_CACHE in a temporary folder gives the local folder's tokens, downloads once,
// works offline from the cache, reads a cache written by Python's huggingface_hub without downloading, and a run
// made from the Hub records where its model came from. The CLI runs as a child process while the server lives in
// this one, so children are awaited (spawnSync would block the server).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { modelFingerprint } from '../src/method/rundir.js';
import { startHubServer, type HubServer } from './support/hub-server.js';

const ROOT = process.cwd();
const BIN = path.join(ROOT, 'bin/scalpel.js');
const LLAMA = path.join(ROOT, 'test/fixtures/models/llama');
const PY_CACHE = path.join(ROOT, 'test/fixtures/hub-cache');
const REPO = 'test-org/tiny-llama';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-hub-cli-'));

let server: HubServer;
test.before(async () => {
  server = await startHubServer([{ repo: REPO, dir: LLAMA }]);
});
test.after(() => server.close());

/** Runs the CLI with only the Hub settings given here (none inherited from the machine). */
function scalpel(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; out: string; err: string }> {
  const base = { ...process.env };
  for (const k of Object.keys(base)) if (/^(HF_|HUGGING)/.test(k) || k === 'SCALPEL_DATA') delete base[k];
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...base, ...env } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  return new Promise((ok) => child.on('close', (code) => ok({ code, out, err })));
}

const GENERATE = ['generate', '--prompt', 'hi', '--max-new-tokens', '8', '--json'];

test('scalpel generate --model org/name: downloads into the cache, gives the local tokens, and downloads nothing twice', async () => {
  const cache = path.join(tmp, 'cache-generate');
  const env = { HF_ENDPOINT: server.url, HF_HUB_CACHE: cache };
  const local = await scalpel([...GENERATE, '--model', LLAMA], env);
  assert.equal(local.code, 0, local.err);
  const before = server.fileGets().length;
  const first = await scalpel([...GENERATE, '--model', REPO], env);
  assert.equal(first.code, 0, first.err);
  assert.deepEqual(JSON.parse(first.out), JSON.parse(local.out));
  assert.match(first.err, /test-org\/tiny-llama: downloading 5 files \(0\.7 MB\) of commit [0-9a-f]{40} into /);
  const downloads = server.fileGets().length - before;
  assert.equal(downloads, 6, 'five files, and the LFS redirect of the weights');
  assert.ok(
    fs.existsSync(path.join(cache, 'models--test-org--tiny-llama/snapshots', server.commit(REPO), 'model.safetensors')),
  );
  const second = await scalpel([...GENERATE, '--model', REPO], env);
  assert.equal(second.code, 0, second.err);
  assert.equal(second.out, first.out);
  assert.equal(second.err, '', 'nothing to say when the cache has it');
  assert.equal(server.fileGets().length - before, downloads, 'the second call downloads no file');

  // HF_HUB_OFFLINE=1: the cache answers with no request at all; a model not in it is one line on stderr.
  const requests = server.requests.length;
  const offline = await scalpel([...GENERATE, '--model', REPO], { ...env, HF_HUB_OFFLINE: '1' });
  assert.equal(offline.code, 0, offline.err);
  assert.equal(offline.out, first.out);
  const missing = await scalpel([...GENERATE, '--model', 'test-org/other-model'], { ...env, HF_HUB_OFFLINE: '1' });
  assert.equal(missing.code, 1);
  assert.equal(
    missing.err,
    `scalpel: test-org/other-model: no such local folder, and not in the Hugging Face cache ${cache} (HF_HUB_OFFLINE=1 allows no download); unset HF_HUB_OFFLINE to download it\n`,
  );
  assert.equal(server.requests.length, requests, 'offline sends nothing');
});

test("a cache written by Python's huggingface_hub.snapshot_download is read without downloading", async () => {
  const cache = path.join(tmp, 'cache-python');
  // verbatimSymlinks keeps the snapshot's relative links as huggingface_hub wrote them.
  fs.cpSync(PY_CACHE, cache, { recursive: true, verbatimSymlinks: true });
  const snapshots = fs.readdirSync(path.join(cache, 'models--test-org--tiny-llama/snapshots'));
  assert.deepEqual(
    snapshots,
    [server.commit(REPO)],
    'the fixture was made against this server; after changing it, rerun tools/make_hub_cache_fixture.py',
  );
  const env = { HF_ENDPOINT: server.url, HF_HUB_CACHE: cache };
  const local = await scalpel([...GENERATE, '--model', LLAMA], env);
  const before = server.fileGets().length;
  const online = await scalpel([...GENERATE, '--model', REPO], env);
  assert.equal(online.code, 0, online.err);
  assert.deepEqual(JSON.parse(online.out), JSON.parse(local.out));
  const offline = await scalpel([...GENERATE, '--model', REPO], { ...env, HF_HUB_OFFLINE: '1' });
  assert.equal(offline.code, 0, offline.err);
  assert.equal(offline.out, online.out);
  assert.equal(server.fileGets().length, before, 'no file downloaded');
});

test('a run made from the Hub records model.hub; with its snapshot gone, the run fetches that commit again', async () => {
  const cache = path.join(tmp, 'cache-run');
  const env = { HF_ENDPOINT: server.url, HF_HUB_CACHE: cache };
  const run = path.join(tmp, 'run');
  // The random-weight fixture refuses nothing: give it refusal tokens and keep every prompt.
  const flags = ['--n-train', '4', '--refusal-tokens', '5,17', '--no-filter', '--quiet'];
  const r = await scalpel(['extract', '--model', REPO, '--out', run, ...flags], env);
  assert.equal(r.code, 0, r.err);
  const json = JSON.parse(fs.readFileSync(path.join(run, 'run.json'), 'utf8'));
  const commit = server.commit(REPO);
  assert.equal(json.model.dir, path.join(cache, 'models--test-org--tiny-llama/snapshots', commit));
  assert.deepEqual(json.model.hub, { repo: REPO, revision: 'main', commit });
  assert.equal(json.model.fingerprint, modelFingerprint(LLAMA), 'the same fingerprint as the local folder');

  fs.rmSync(cache, { recursive: true });
  const before = server.fileGets().length;
  const select = await scalpel(
    ['select', '--run', run, '--n-val', '4', '--prune', '0', '--kl-threshold', '100', '--no-harm-guard', '--quiet'],
    env,
  );
  assert.equal(select.code, 0, select.err);
  assert.ok(server.fileGets().length > before, 'the commit was downloaded again');
  assert.ok(fs.existsSync(path.join(run, 'selection.json')));
});
