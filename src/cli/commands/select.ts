import type { Command } from 'commander';

// Placeholder: the 'select' command is being written.
export function register(_program: Command): void {}
