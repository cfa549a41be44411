// scalpel eval: stage 3 alone, or any λ / α on a finished run without re-extracting: the chosen (position, layer)
// stays, ŵ is recomputed from the stored w and r. With --model and no run: the baseline of any model (a Hugging
// Face folder, or one written by `scalpel bake`), the same rows as a run's baseline. With --endpoint and no run: the
// baseline of a model served by any OpenAI-compatible server. With --judge: a second judge's labels (judge.json).
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ScalpelError } from '../../errors.js';
import type { ResponseRow } from '../../method/evaluate.js';
import type { JudgeJson } from '../../method/llm-judge.js';
import { evaluateModel, evaluateRun, type EvalResult } from '../../method/pipeline.js';
import { FILES } from '../../method/rundir.js';
import { buildConfig, runOptions } from '../config.js';
import { ENDPOINT_FLAG_NAMES, ENDPOINT_OPTIONS, endpointFlags } from '../endpoint.js';
import { fetchRunSets } from '../fetch.js';
import { formatAgreement, formatTable } from '../format.js';
import { JUDGE_FLAG_NAMES, JUDGE_OPTIONS, connectJudgeFlags, judgeFlags, runJudge } from '../judge.js';
import { defineStageCommand, lambdaFlag, openRun, runDirOf, type CommonOpts } from '../options.js';
import { logger, progressFactory } from '../progress.js';
import { readResponses } from '../../method/evaluate.js';

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
  ...JUDGE_FLAG_NAMES,
  ...ENDPOINT_FLAG_NAMES,
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
      [
        '--gate',
        "also evaluate the edit applied only to prompts the run's gate clears (fit it with `scalpel gate`); writes gate-eval.json and gate-responses.jsonl",
      ],
      ...ENDPOINT_OPTIONS,
      ...JUDGE_OPTIONS,
    ],
  });
  cmd.action(async (opts: CommonOpts) => {
    // --out has always named the run too (`eval --out RUN`): a folder holding run.json keeps that meaning.
    const isRun = opts.run !== undefined || (opts.out !== undefined && existsSync(join(resolve(opts.out), FILES.run)));
    const datasets = cmd.getOptionValueSource('dataset') === 'cli' ? (opts['dataset'] as string[]) : undefined;
    const judgeAsked = judgeFlags(opts);
    const endpoint = endpointFlags(opts);
    if (endpoint && isRun)
      throw new ScalpelError(
        "--endpoint: only without --run (a run's intervention needs the local engine; an edited model can be baked and served)",
      );
    if (!isRun) {
      const flag = cmd.options.find(
        (f) => cmd.getOptionValueSource(f.attributeName()) === 'cli' && !MODEL_FLAGS.has(f.attributeName()),
      );
      if (flag)
        throw new ScalpelError(`${flag.long}: only with --run RUN (without a run, eval measures the model's baseline)`);
      if (endpoint && opts.model !== undefined)
        throw new ScalpelError(
          '--model: not with --endpoint (the server has the model; choose it with --endpoint-model)',
        );
      if (endpoint && opts.batchSize !== undefined)
        throw new ScalpelError('--batch-size: not with --endpoint (requests in flight: --endpoint-concurrency)');
      if (!endpoint && opts.model === undefined)
        throw new ScalpelError(
          opts.out !== undefined
            ? `--out ${opts.out}: not a Scalpel run (no run.json); add --model MODEL to evaluate a model alone`
            : '--run RUN is required, or --model MODEL to evaluate a model alone (or --endpoint URL)',
        );
      // runOptions wants a run directory; a model evaluation has none and uses only the model, settings and backend.
      const setup = endpoint
        ? (() => {
            const log = logger(opts.quiet);
            const { config, dataDir } = buildConfig(cmd, opts);
            const backend = () => endpoint.open(config.system, log);
            return { config, dataDir, backend, progress: progressFactory({ quiet: opts.quiet }), log };
          })()
        : await runOptions(cmd, opts, opts.out ?? '.');
      const { config, dataDir, backend, progress, log } = setup;
      if (datasets) config.evalDatasets = datasets;
      // The judge's server is asked first: a wrong URL, key or model fails before any generation.
      const judge = judgeAsked ? await connectJudgeFlags(judgeAsked) : null;
      await fetchRunSets({ dataDir, progress, log }, config.evalDatasets);
      const outDir = opts.out !== undefined ? resolve(opts.out) : undefined;
      let rows: ResponseRow[] = [];
      const results = await evaluateModel({
        config,
        dataDir,
        backend,
        progress,
        log,
        outDir,
        onRows: (r) => {
          rows = r;
        },
      });
      const j = judge
        ? await runJudge(judge, rows, { cacheDir: outDir ?? null, writeDir: outDir ?? null }, opts)
        : undefined;
      print(results, opts, j);
      return;
    }
    const { runDir, run, modelDir } = await openRun(runDirOf(opts, 'run'), opts.model, opts.quiet);
    const lambda = lambdaFlag(opts['lambda'] as string | undefined);
    // The run's configuration with the flags on top: λ, α and the ablation mode are dials on the chosen site. A
    // changed dial changes the select stage's key, so the run directory is left alone.
    // The model is resolved already (a Hub id would be looked up twice).
    const o = await runOptions(cmd, { ...opts, model: modelDir }, runDir, run.config);
    const judge = judgeAsked ? await connectJudgeFlags(judgeAsked) : null;
    await fetchRunSets(o, datasets ?? o.config.evalDatasets);
    let rows: ResponseRow[] | undefined;
    const results = await evaluateRun(o, {
      run,
      lambda,
      datasets,
      gate: !!opts['gate'],
      onRows: (r) => {
        rows = r;
      },
    });
    let j: JudgeJson | undefined;
    if (judge) {
      // Resumed: the eval stage's rows are responses.jsonl. judge.json belongs to those rows; a look at other
      // settings (another λ, other sets) is judged and printed, and only the cache is kept in the run directory.
      const stage = readResponses(runDir);
      const judged = rows ?? stage;
      const isStage = sameRows(judged, stage);
      j = await runJudge(judge, judged, { cacheDir: runDir, writeDir: isStage ? runDir : null }, opts);
    }
    print(results, opts, j);
  });
}

/** Whether two lists of response rows are the same rows (the eval stage's, when one is responses.jsonl). */
function sameRows(a: readonly ResponseRow[], b: readonly ResponseRow[]): boolean {
  const id = (r: ResponseRow) => JSON.stringify([r.dataset, r.condition, r.lambda, r.alpha, r.index, r.response]);
  return a.length === b.length && a.every((r, i) => id(r) === id(b[i]!));
}

function print(results: EvalResult[], opts: CommonOpts, judge?: JudgeJson): void {
  if (opts.json) {
    const extra = judge
      ? { judge: { judge: judge.judge, rubric_version: judge.rubric_version, agreement: judge.agreement } }
      : {};
    process.stdout.write(`${JSON.stringify({ results, ...extra }, null, 2)}\n`);
  } else {
    process.stdout.write(`${formatTable(results, judge)}\n`);
    if (judge) process.stdout.write(`\n${formatAgreement(judge)}\n`);
  }
}
