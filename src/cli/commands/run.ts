import type { Command } from 'commander';

// Placeholder: the 'run' command is being written.
export function register(_program: Command): void {}
