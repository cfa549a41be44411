import type { Command } from 'commander';

// Placeholder: the 'extract' command is being written.
export function register(_program: Command): void {}
