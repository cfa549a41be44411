// Picks the kernels once per process: native when the addon loads, else the portable ones with a one-line notice.
// SCALPEL_KERNELS=js forces the portable path (tests run both); SCALPEL_KERNELS=native makes a missing addon an error.
import { ScalpelError } from '../../errors.js';
import type { Kernels } from '../types.js';
import { jsKernels } from './js.js';
import { ADDON_PATH, nativeKernels } from './native.js';

let chosen: Kernels | undefined;

/** The native kernels, or null (with the reason) when the addon cannot be loaded here. */
export function tryNativeKernels(): { kernels: Kernels | null; reason: string } {
  try {
    return { kernels: nativeKernels(), reason: '' };
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    return {
      kernels: null,
      reason: msg.split('\n')[0]!.replace(ADDON_PATH, 'native/build/Release/scalpel_native.node'),
    };
  }
}

export function getKernels(): Kernels {
  if (chosen) return chosen;
  const want = process.env.SCALPEL_KERNELS ?? 'auto';
  if (want === 'js') {
    chosen = jsKernels;
    return chosen;
  }
  if (want !== 'auto' && want !== 'native' && want !== '') {
    throw new ScalpelError(`SCALPEL_KERNELS: expected 'js', 'native' or 'auto', got '${want}'`);
  }
  const { kernels, reason } = tryNativeKernels();
  if (kernels) {
    chosen = kernels;
    return chosen;
  }
  if (want === 'native') {
    throw new ScalpelError(
      `SCALPEL_KERNELS=native: the native addon did not load (${reason}); run 'npm rebuild' in the scalpel package`,
    );
  }
  process.stderr.write(`scalpel: native kernels unavailable (${reason}); using the portable JS kernels (slower)\n`);
  chosen = jsKernels;
  return chosen;
}
