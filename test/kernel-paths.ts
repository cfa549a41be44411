// Test helper (not a test file): the kernel paths a test runs on. The portable kernels always run; the native ones
// when the addon loads here. A path that cannot run is a visible skip (node:test prints `# SKIP reason`), never a
// loop that silently runs over nothing; SCALPEL_REQUIRE_NATIVE=1 (CI) turns a missing addon into a failure.
import assert from 'node:assert/strict';
import { tryNativeKernels } from '../src/engine/kernels/index.js';
import { jsKernels } from '../src/engine/kernels/js.js';
import type { Kernels } from '../src/engine/types.js';

export const REQUIRE_NATIVE = process.env['SCALPEL_REQUIRE_NATIVE'] === '1';

export interface KernelPath {
  /** For test names: the kernels' own name ('js', 'native-avx512', …), or 'native' when the addon did not load. */
  label: string;
  /** node:test's `skip` option: false, or why this path does not run here. */
  skip: string | false;
  /** The kernels; a test failure (with the reason) when the addon is missing and SCALPEL_REQUIRE_NATIVE=1. */
  get(): Kernels;
}

const js: KernelPath = { label: jsKernels.name, skip: false, get: () => jsKernels };

/** The native path, or why it does not run: SCALPEL_KERNELS=js, or an addon that does not load. */
export function nativePath(): KernelPath {
  if (process.env['SCALPEL_KERNELS'] === 'js')
    return {
      label: 'native',
      skip: 'SCALPEL_KERNELS=js: portable kernels only',
      get: () => assert.fail('SCALPEL_KERNELS=js'),
    };
  const { kernels, reason } = tryNativeKernels();
  if (kernels) return { label: kernels.name, skip: false, get: () => kernels };
  const why = `native addon not loadable: ${reason}`;
  return {
    label: 'native',
    skip: REQUIRE_NATIVE ? false : why,
    get: () => assert.fail(`SCALPEL_REQUIRE_NATIVE=1 but the ${why}`),
  };
}

/** The portable kernels, then the native ones (possibly a skip). */
export function kernelPaths(): KernelPath[] {
  return [js, nativePath()];
}
