import type { Command } from 'commander';

// Placeholder: the 'generate' command is being written.
export function register(_program: Command): void {}
