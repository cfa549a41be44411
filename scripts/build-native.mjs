// Builds the native kernel addon (native/) with node-gyp at install time.
// A failed build is not an error: Scalpel falls back to its portable kernels and says so once at run time.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');
if (!existsSync(join(nativeDir, 'binding.gyp')) || process.env.SCALPEL_SKIP_NATIVE === '1') process.exit(0);
const r = spawnSync('node-gyp', ['rebuild', '--directory', nativeDir], { stdio: 'inherit', shell: process.platform === 'win32' });
if (r.status !== 0) {
  console.warn('scalpel: the native kernels did not build; the portable kernels will be used (slower).');
}
