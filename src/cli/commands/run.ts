// scalpel run: the whole method (extract → select → eval) on a model, with a before/after table.
// Its flags are defined in ../options.ts, shared with the stage commands (extract, select, eval).
import type { Command } from 'commander';
import { readResponses } from '../../method/evaluate.js';
import { fitRunGate } from '../../method/gate-run.js';
import { evaluateRun, runPipeline } from '../../method/pipeline.js';
import { runOptions } from '../config.js';
import { configSets, fetchRunSets } from '../fetch.js';
import { describeSelection, formatAgreement, formatTable } from '../format.js';
import { JUDGE_OPTIONS, connectJudgeFlags, judgeFlags, runJudge } from '../judge.js';
import { defineStageCommand, type CommonOpts } from '../options.js';
import { writeReport } from '../../report/build.js';

export function register(program: Command): void {
  const cmd = defineStageCommand(program, {
    name: 'run',
    description: 'extract, select and evaluate the false-refusal vector of a chat model; prints a before/after table',
    runDir: { flag: 'out', help: 'run directory (created; a rerun resumes finished stages)', required: true },
    options: [
      ['--eval <sets>', 'comma-separated evaluation sets (dataset names, name:N for the first N, or files)'],
      ['--json', 'print {"results": [...]} instead of the table'],
      [
        '--gate',
        'after the run, fit its gate (scalpel gate) and evaluate the edit applied only to prompts the gate clears',
      ],
      ['--report [file]', 'at the end, write the HTML report (scalpel report) to file (default RUN/report.html)'],
      ...JUDGE_OPTIONS,
    ],
  });
  cmd.action(async (opts: CommonOpts) => {
    if (cmd.getOptionValueSource('eval') === 'cli') opts['evalDatasets'] = opts['eval'];
    const judgeAsked = judgeFlags(opts);
    const o = await runOptions(cmd, opts, opts.out!);
    // The judge's server is asked before the run: a wrong URL, key or model fails before hours of work.
    const judge = judgeAsked ? await connectJudgeFlags(judgeAsked) : null;
    if (typeof opts['eval'] === 'string')
      o.config.evalDatasets = String(opts['eval'])
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    await fetchRunSets(o, configSets(o.config, true));
    const res = await runPipeline(o, ['extract', 'select', 'eval']);
    if (opts['gate']) {
      // The gate is fitted after the run and its gated evaluation is a third condition (gate-eval.json); the table
      // below then shows baseline, the edit and the gated edit.
      await fitRunGate(o);
      res.results = await evaluateRun(o, { run: res.run, gate: true });
    }
    // The second judge labels the eval stage's responses (cached answers are not asked again).
    const j = judge
      ? await runJudge(judge, readResponses(res.runDir), { cacheDir: res.runDir, writeDir: res.runDir }, opts)
      : undefined;
    // The report comes last, so it shows the judge's labels too.
    const report = opts['report']
      ? await writeReport(res.runDir, typeof opts['report'] === 'string' ? opts['report'] : undefined)
      : undefined;
    if (opts.json) {
      const extra = j ? { judge: { judge: j.judge, rubric_version: j.rubric_version, agreement: j.agreement } } : {};
      process.stdout.write(`${JSON.stringify({ results: res.results, ...extra }, null, 2)}\n`);
      if (report) process.stderr.write(`report: ${report.path}\n`);
      return;
    }
    process.stdout.write(`${describeSelection(res.selection)}\n\n${formatTable(res.results ?? [], j)}\n`);
    if (j) process.stdout.write(`\n${formatAgreement(j)}\n`);
    const st = res.run.stages;
    const timing = (['extract', 'select', 'eval'] as const)
      .map((s) => (st[s] ? `${s} ${st[s]!.seconds}s / ${st[s]!.forward_passes} passes` : `${s} –`))
      .join(', ');
    process.stdout.write(`\n${timing}\nrun directory: ${res.runDir}\n`);
    if (report) process.stdout.write(`report: ${report.path}\n`);
  });
}
