// scalpel eval: stage 3 alone, or any λ / α on a finished run without re-extracting: the chosen (position, layer)
// stays, ŵ is recomputed from the stored w and r.
import type { Command } from 'commander';
import { evaluateRun } from '../../method/pipeline.js';
import { runOptions } from '../config.js';
import { formatTable } from '../format.js';
import { defineStageCommand, lambdaFlag, openRun, runDirOf, type CommonOpts } from '../options.js';

export function register(program: Command): void {
  const cmd = defineStageCommand(program, {
    name: 'eval',
    description: 'evaluate a run: greedy generation on evaluation sets, baseline and intervened, substring judge',
    runDir: { flag: 'run', help: 'run directory with a finished select stage', alias: true },
    options: [
      ['--dataset <names...>', "evaluation sets (dataset names, name:N, or prompt files); default: the run's"],
      ['--json', 'print {"results": [...]} as in eval.json'],
    ],
  });
  cmd.action(async (opts: CommonOpts) => {
    const { runDir, run, modelDir } = await openRun(runDirOf(opts, 'run'), opts.model, opts.quiet);
    const lambda = lambdaFlag(opts['lambda'] as string | undefined);
    // The run's configuration with the flags on top: λ, α and the ablation mode are dials on the chosen site. A
    // changed dial changes the select stage's key, so the run directory is left alone.
    // The model is resolved already (a Hub id would be looked up twice).
    const o = await runOptions(cmd, { ...opts, model: modelDir }, runDir, run.config);
    const datasets = cmd.getOptionValueSource('dataset') === 'cli' ? (opts['dataset'] as string[]) : undefined;
    const results = await evaluateRun(o, { run, lambda, datasets });
    if (opts.json) process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
    else process.stdout.write(`${formatTable(results)}\n`);
  });
}
