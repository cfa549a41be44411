// scalpel run: the whole method (extract → select → eval) on a model, with a before/after table.
// Its flags are defined in ../options.ts, shared with the stage commands (extract, select, eval).
import type { Command } from 'commander';
import { runPipeline } from '../../method/pipeline.js';
import { runOptions } from '../config.js';
import { configSets, fetchRunSets } from '../fetch.js';
import { describeSelection, formatTable } from '../format.js';
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
      ['--report [file]', 'at the end, write the HTML report (scalpel report) to file (default RUN/report.html)'],
    ],
  });
  cmd.action(async (opts: CommonOpts) => {
    if (cmd.getOptionValueSource('eval') === 'cli') opts['evalDatasets'] = opts['eval'];
    const o = await runOptions(cmd, opts, opts.out!);
    if (typeof opts['eval'] === 'string')
      o.config.evalDatasets = String(opts['eval'])
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    await fetchRunSets(o, configSets(o.config, true));
    const res = await runPipeline(o, ['extract', 'select', 'eval']);
    const report = opts['report']
      ? await writeReport(res.runDir, typeof opts['report'] === 'string' ? opts['report'] : undefined)
      : undefined;
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ results: res.results }, null, 2)}\n`);
      if (report) process.stderr.write(`report: ${report.path}\n`);
      return;
    }
    process.stdout.write(`${describeSelection(res.selection)}\n\n${formatTable(res.results ?? [])}\n`);
    const st = res.run.stages;
    const timing = (['extract', 'select', 'eval'] as const)
      .map((s) => (st[s] ? `${s} ${st[s]!.seconds}s / ${st[s]!.forward_passes} passes` : `${s} –`))
      .join(', ');
    process.stdout.write(`\n${timing}\nrun directory: ${res.runDir}\n`);
    if (report) process.stdout.write(`report: ${report.path}\n`);
  });
}
