// scalpel report: one self-contained HTML file from a run directory (headline with intervals and paired tests, the
// paper's figures as inline SVG, example responses, ability, judge agreement, timings and provenance). The building
// is src/report/'s job; this parses the flags and says where the file went.
import type { Command } from 'commander';
import { writeReport } from '../../report/build.js';

export function register(program: Command): void {
  program
    .command('report')
    .description('write a self-contained HTML report of a run (charts inline, no network when opened)')
    .argument('<run>', 'run directory (made by scalpel run)')
    .option('--out <file>', 'where to write the report (default RUN/report.html)')
    .action(async (runDir: string, opts: { out?: string }) => {
      const { path, bytes } = await writeReport(runDir, opts.out);
      process.stdout.write(`report: ${path} (${(bytes / 1024).toFixed(0)} KiB)\n`);
    });
}
