// scalpel eval: stage 3 alone, or any λ / α on a finished run without re-extracting: the chosen (position, layer)
// stays, ŵ is recomputed from the stored w and r.
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ScalpelError } from '../../errors.js';
import { evaluateRun } from '../../method/pipeline.js';
import { readRunJson } from '../../method/rundir.js';
import { defineStageCommand, runDirOf, type CommonOpts } from '../options.js';
import { runOptions } from '../config.js';
import { formatTable } from '../format.js';

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
    const runDir = runDirOf(opts, 'run');
    const stored = readRunJson(resolve(runDir));
    if (!stored)
      throw new ScalpelError(`${resolve(runDir)}/run.json: missing; make the run with \`scalpel run\` first`);
    const explicit = (k: string) => cmd.getOptionValueSource(k) === 'cli';
    // λ and α are dials on the stored run: keep the run's configuration and pass them as overrides.
    const o = runOptions(cmd, opts, runDir, stored.config, stored.model.dir);
    const storedCfg = stored.config as { lambda?: number; alpha?: number };
    const overrides = {
      lambda: explicit('lambda') ? o.config.lambda : undefined,
      alpha: explicit('alpha') ? o.config.alpha : undefined,
      datasets: explicit('dataset') ? (opts['dataset'] as string[]) : undefined,
    };
    if (overrides.lambda !== undefined && storedCfg.lambda !== undefined) o.config.lambda = storedCfg.lambda;
    if (overrides.alpha !== undefined && storedCfg.alpha !== undefined) o.config.alpha = storedCfg.alpha;
    if (overrides.lambda !== undefined && !(overrides.lambda >= 0 && overrides.lambda <= 1))
      throw new ScalpelError(`--lambda ${overrides.lambda}: expected a number in [0, 1]`);
    const results = await evaluateRun(o, overrides);
    if (opts.json) process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
    else process.stdout.write(`${formatTable(results)}\n`);
  });
}
