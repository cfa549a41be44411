// What the CLI tests share: the repository's paths, running `scalpel` as a user would (a child process, from the
// repository root, with no SCALPEL_DATA from the caller's environment), and the small run several tests start from.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (tests run from dist/test/, two folders below it). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BIN = path.join(ROOT, 'bin', 'scalpel.js');
export const TINY_CHAT = path.join(ROOT, 'models', 'scalpel-tiny-chat');

/** Runs `scalpel ARGS…` and asserts it succeeded; returns what it printed. */
export function runScalpel(...args: string[]): { out: string; err: string } {
  const env = { ...process.env };
  delete env['SCALPEL_DATA'];
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env, cwd: ROOT });
  assert.equal(r.status, 0, `scalpel ${args.join(' ')}: ${r.stderr}`);
  return { out: r.stdout, err: r.stderr };
}

/**
 * `runScalpel` without blocking this process's event loop: for tests that also run a server or a client in-process,
 * whose sockets and keep-alive timers must go on while the command runs (a blocked loop let a server close a
 * keep-alive connection in the same turn the client reused it: "Connection error.").
 */
export function runScalpelAsync(...args: string[]): Promise<{ out: string; err: string }> {
  const env = { ...process.env };
  delete env['SCALPEL_DATA'];
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { encoding: 'utf8', env, cwd: ROOT, maxBuffer: 64 << 20 },
      (e, out, err) =>
        e ? reject(new Error(`scalpel ${args.join(' ')}: ${err || e.message}`)) : resolve({ out, err }),
    );
  });
}

/** Small samples of the built-in prompt sets (no --data-dir), `maxNewTokens` new tokens: about a second per stage. */
export const smallRunFlags = (maxNewTokens = 16): string[] => [
  '--n-train',
  '16',
  '--n-val',
  '8',
  '--max-new-tokens',
  String(maxNewTokens),
];
export const SMALL_RUN_FLAGS = smallRunFlags();

/**
 * The arguments of `scalpel run` on the project's model into `out` with SMALL_RUN_FLAGS (or those flags with another
 * number of new tokens), then `extra`.
 */
export function smallRunArgs(
  out: string,
  extra: readonly string[] = [],
  opts: { maxNewTokens?: number } = {},
): string[] {
  return ['run', '--model', TINY_CHAT, '--out', out, ...smallRunFlags(opts.maxNewTokens), ...extra];
}

/** `scalpel run` on the project's model with SMALL_RUN_FLAGS into `runDir`. */
export function makeSmallRun(runDir: string): void {
  runScalpel(...smallRunArgs(runDir, ['--quiet']));
}
