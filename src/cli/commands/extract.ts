// scalpel extract: stage 1 alone — sample, find refusal tokens, filter, and store the candidates r and w.
import type { Command } from 'commander';
import { addMethodOptions, runStages, type CommonOpts } from './run.js';

export function register(program: Command): void {
  const cmd = program
    .command('extract')
    .description('compute the candidate vectors r and w at every post-instruction position and layer into RUN')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .option('--out <dir>', 'run directory')
    .option('--run <dir>', 'run directory (same as --out)');
  addMethodOptions(cmd);
  cmd.action(async (opts: CommonOpts) => {
    const runDir = opts.out ?? opts.run;
    if (!runDir) throw new (await import('../../errors.js')).ScalpelError('--out RUN is required');
    const res = await runStages(cmd, opts, runDir, ['extract'], false);
    const d = res.run.data ?? {};
    const kept = (k: string) => (d[k] ? `${d[k]!.kept}/${d[k]!.sampled}` : '–');
    process.stdout.write(`candidates: ${res.runDir}/candidates.safetensors (harmful ${kept('harmful_train')}, harmless ${kept('harmless_train')}, pseudo-harmful ${kept('pseudo_train')} kept)\n`);
  });
}
