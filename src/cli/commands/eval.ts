import type { Command } from 'commander';

// Placeholder: the 'eval' command is being written.
export function register(_program: Command): void {}
