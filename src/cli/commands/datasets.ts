import type { Command } from 'commander';

// Placeholder: the 'datasets' command is being written.
export function register(_program: Command): void {}
