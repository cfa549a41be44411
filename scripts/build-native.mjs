// Builds the native kernel addon (native/) with node-gyp at install time.
// A failed build is not an error: Scalpel falls back to its portable kernels and says so once at run time.
// SCALPEL_SKIP_NATIVE=1 skips the build. Works from `npm install` (npm puts its node-gyp on PATH and sets
// npm_config_nodedir) and by hand (`node scripts/build-native.mjs`): then npm's bundled node-gyp is used and the
// headers that ship with this Node (<prefix>/include/node) are preferred, so nothing is downloaded.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');
if (!existsSync(join(nativeDir, 'binding.gyp')) || process.env.SCALPEL_SKIP_NATIVE === '1') process.exit(0);

/** node-gyp as [command, ...leading args]: npm's own copy when we can find it, else whatever is on PATH. */
function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(
      dirname(process.execPath),
      '..',
      'lib',
      'node_modules',
      'npm',
      'node_modules',
      'node-gyp',
      'bin',
      'node-gyp.js',
    ),
    join(dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  for (const c of candidates) if (c && existsSync(c)) return [process.execPath, c];
  return ['node-gyp'];
}

const args = ['rebuild', '--directory', nativeDir];
const localHeaders = join(dirname(process.execPath), '..', 'include', 'node', 'node_api.h');
if (!process.env.npm_config_nodedir && existsSync(localHeaders))
  args.push(`--nodedir=${join(dirname(process.execPath), '..')}`);

const [cmd, ...lead] = nodeGyp();
const started = Date.now();
const r = spawnSync(cmd, [...lead, ...args], {
  stdio: ['ignore', 'pipe', 'pipe'],
  encoding: 'utf8',
  shell: process.platform === 'win32',
});
if (r.status === 0) {
  console.log(`scalpel: native kernels built (${((Date.now() - started) / 1000).toFixed(0)} s)`);
} else {
  // Show the compiler's complaint, not node-gyp's whole log.
  const log = `${r.stdout ?? ''}\n${r.stderr ?? ''}`
    .split('\n')
    .filter((l) => /error|Error|not found/.test(l) && !/^gyp info/.test(l));
  for (const line of log.slice(0, 8)) console.warn(line);
  if (r.error) console.warn(String(r.error));
  console.warn('scalpel: the native kernels did not build; the portable kernels will be used (slower).');
}
