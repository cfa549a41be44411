// scalpel eval: stage 3 alone, or any λ / α on a finished run without re-extracting: the chosen (position, layer)
// stays, ŵ is recomputed from the stored w and r. With --model and no run: the baseline of any model (a Hugging
// Face folder, or one written by `scalpel bake`), the same rows as a run's baseline.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ScalpelError } from '../../errors.js';
import { evaluateModel, evaluateRun, type EvalResult } from '../../method/pipeline.js';
import { FILES } from '../../method/rundir.js';
import { runOptions } from '../config.js';
import { fetchRunSets } from '../fetch.js';
import { formatTable } from '../format.js';
import { defineStageCommand, lambdaFlag, openRun, runDirOf, type CommonOpts } from '../options.js';

/** The flags that mean something without a run (by commander's attribute name); the rest dial a run's intervention. */
const MODEL_FLAGS = new Set([
  'model',
  'out',
  'dataset',
  'dataDir',
  'column',
  'maxNewTokens',
  'system',
  'refusalSubstrings',
  'batchSize',
  'json',
  'quiet',
]);

export function register(program: Command): void {
  const cmd = defineStageCommand(program, {
    name: 'eval',
    description:
      'evaluate a run (baseline and intervened) or, with --model and no --run, a model alone (baseline): greedy generation on evaluation sets, substring judge',
    runDir: {
      flag: 'run',
      help: 'run directory with a finished select stage',
      modelNote: "required without --run; with --run, default the run's",
    },
    options: [
      [
        '--out <dir>',
        "without --run: write the model's responses.jsonl and eval.json here (new, empty, or an earlier such folder; no run.json, it is not a run); a folder holding a run is that run, as --run",
      ],
      [
        '--dataset <names...>',
        "evaluation sets (dataset names, name:N, or prompt files); default: the run's, else the paper's with --data-dir and the built-in test sets without",
      ],
      ['--json', 'print {"results": [...]} as in eval.json'],
    ],
  });
  cmd.action(async (opts: CommonOpts) => {
    // --out has always named the run too (`eval --out RUN`): a folder holding run.json keeps that meaning.
    const isRun = opts.run !== undefined || (opts.out !== undefined && existsSync(join(resolve(opts.out), FILES.run)));
    const datasets = cmd.getOptionValueSource('dataset') === 'cli' ? (opts['dataset'] as string[]) : undefined;
    if (!isRun) {
      const flag = cmd.options.find(
        (f) => cmd.getOptionValueSource(f.attributeName()) === 'cli' && !MODEL_FLAGS.has(f.attributeName()),
      );
      if (flag)
        throw new ScalpelError(`${flag.long}: only with --run RUN (without a run, eval measures the model's baseline)`);
      if (opts.model === undefined)
        throw new ScalpelError(
          opts.out !== undefined
            ? `--out ${opts.out}: not a Scalpel run (no run.json); add --model MODEL to evaluate a model alone`
            : '--run RUN is required, or --model MODEL to evaluate a model alone',
        );
      // runOptions wants a run directory; a model evaluation has none and uses only the model, settings and backend.
      const { config, dataDir, backend, progress, log } = await runOptions(cmd, opts, opts.out ?? '.');
      if (datasets) config.evalDatasets = datasets;
      await fetchRunSets({ dataDir, progress, log }, config.evalDatasets);
      const outDir = opts.out !== undefined ? resolve(opts.out) : undefined;
      const results = await evaluateModel({ config, dataDir, backend, progress, log, outDir });
      print(results, opts);
      return;
    }
    const { runDir, run, modelDir } = await openRun(runDirOf(opts, 'run'), opts.model, opts.quiet);
    const lambda = lambdaFlag(opts['lambda'] as string | undefined);
    // The run's configuration with the flags on top: λ, α and the ablation mode are dials on the chosen site. A
    // changed dial changes the select stage's key, so the run directory is left alone.
    // The model is resolved already (a Hub id would be looked up twice).
    const o = await runOptions(cmd, { ...opts, model: modelDir }, runDir, run.config);
    await fetchRunSets(o, datasets ?? o.config.evalDatasets);
    const results = await evaluateRun(o, { run, lambda, datasets });
    print(results, opts);
  });
}

function print(results: EvalResult[], opts: CommonOpts): void {
  if (opts.json) process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
  else process.stdout.write(`${formatTable(results)}\n`);
}
