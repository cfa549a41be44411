// scalpel extract: stage 1 alone — sample, find refusal tokens, filter, and store the candidates r and w.
import type { Command } from 'commander';
import { defineStageCommand, runDirOf, type CommonOpts } from '../options.js';
import { runStages } from '../config.js';

export function register(program: Command): void {
  const cmd = defineStageCommand(program, {
    name: 'extract',
    description: 'compute the candidate vectors r and w at every post-instruction position and layer into RUN',
    runDir: { flag: 'out', help: 'run directory', alias: true },
    options: [],
  });
  cmd.action(async (opts: CommonOpts) => {
    const res = await runStages(cmd, opts, runDirOf(opts, 'out'), ['extract'], false);
    const d = res.run.data ?? {};
    const kept = (k: string) => (d[k] ? `${d[k]!.kept}/${d[k]!.sampled}` : '–');
    process.stdout.write(
      `candidates: ${res.runDir}/candidates.safetensors (harmful ${kept('harmful_train')}, harmless ${kept('harmless_train')}, pseudo-harmful ${kept('pseudo_train')} kept)\n`,
    );
  });
}
