// scalpel select: stage 2 alone — ablate each candidate, apply the rules, store the chosen vector.
import type { Command } from 'commander';
import { defineStageCommand, runDirOf, type CommonOpts } from '../options.js';
import { runStages } from '../config.js';
import { describeSelection } from '../format.js';

export function register(program: Command): void {
  const cmd = defineStageCommand(program, {
    name: 'select',
    description: 'select the candidate to ablate (writes selection.json and vector.safetensors); --lambda L re-selects',
    runDir: { flag: 'run', help: 'run directory made by `scalpel extract` or `scalpel run`', alias: true },
    options: [['--json', 'print selection.json']],
  });
  cmd.action(async (opts: CommonOpts) => {
    const res = await runStages(cmd, opts, runDirOf(opts, 'run'), ['select'], true);
    if (opts.json) process.stdout.write(`${JSON.stringify(res.selection, null, 2)}\n`);
    else process.stdout.write(`${describeSelection(res.selection)}\n`);
  });
}
