// scalpel select: stage 2 alone — ablate each candidate, apply the rules, store the chosen vector.
import type { Command } from 'commander';
import { ScalpelError } from '../../errors.js';
import { addMethodOptions, describeSelection, runStages, type CommonOpts } from './run.js';

export function register(program: Command): void {
  const cmd = program
    .command('select')
    .description('select the candidate to ablate (writes selection.json and vector.safetensors); --lambda L re-selects')
    .option('--model <dir>', 'Hugging Face model directory (default: the run\'s)')
    .option('--run <dir>', 'run directory made by `scalpel extract` or `scalpel run`')
    .option('--out <dir>', 'run directory (same as --run)')
    .option('--json', 'print selection.json');
  addMethodOptions(cmd);
  cmd.action(async (opts: CommonOpts) => {
    const runDir = opts.run ?? opts.out;
    if (!runDir) throw new ScalpelError('--run RUN is required');
    const res = await runStages(cmd, opts, runDir, ['select'], true);
    if (opts.json) process.stdout.write(JSON.stringify(res.selection, null, 2) + '\n');
    else process.stdout.write(`${describeSelection(res.selection)}\n`);
  });
}
