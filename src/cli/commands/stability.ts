// scalpel stability: a finished run's method repeated on other draws of its training and validation prompts, to see
// whether the chosen site and its test figures hinge on the draw. A command of its own rather than a select flag:
// each draw re-extracts, re-selects and evaluates (all three stages), and the study lands in stability.json. The
// work is in src/method/stability.ts; this file parses flags and prints the spread.
import type { Command } from 'commander';
import { ScalpelError } from '../../errors.js';
import { drawSites, runStability, spreadRows, type StudyJson } from '../../method/stability.js';
import { runOptions } from '../config.js';
import { configSets, fetchRunSets } from '../fetch.js';
import { defineStageCommand, openRun, runDirOf, type CommonOpts } from '../options.js';

export function register(program: Command): void {
  const cmd = defineStageCommand(program, {
    name: 'stability',
    description:
      "repeat a run's extract → select → eval on K draws of its training/validation prompts; chosen site per draw and the spread of its test figures in the run's stability.json (resumable per draw)",
    runDir: {
      flag: 'run',
      help: 'run directory (its configuration is used; method flags given here override it)',
      required: true,
    },
    options: [
      ['--draws <k>', 'number of draws (seeds: the run seed, +1, …; default 5)'],
      ['--dataset <names...>', "evaluation sets (dataset names, name:N, or prompt files); default: the run's"],
      ['--json', 'print the study from stability.json'],
    ],
  });
  cmd.action(async (opts: CommonOpts) => {
    const drawsText = String(opts['draws'] ?? '5');
    const draws = Number(drawsText);
    if (!/^\d+$/.test(drawsText.trim()) || draws < 1)
      throw new ScalpelError(`--draws ${drawsText}: expected an integer ≥ 1`);
    const datasets = cmd.getOptionValueSource('dataset') === 'cli' ? (opts['dataset'] as string[]) : undefined;
    const { runDir, run, modelDir } = await openRun(runDirOf(opts, 'run'), opts.model, opts.quiet);
    const o = await runOptions(cmd, { ...opts, model: modelDir }, runDir, run.config);
    await fetchRunSets(o, [...configSets(o.config, false), ...(datasets ?? o.config.evalDatasets)]);
    const doc = await runStability(o, { draws, datasets, run });
    const study = doc.studies.at(-1)!;
    if (opts.json) process.stdout.write(`${JSON.stringify(study, null, 2)}\n`);
    else process.stdout.write(`${formatStudy(study)}\n`);
  });
}

const pts = (x: number) => (100 * x).toFixed(1);

/** Chosen site per draw, then per dataset the edited compliance's mean, range (max − min) and sd in points. */
export function formatStudy(s: StudyJson): string {
  const sites = drawSites(s);
  const head = ['dataset', 'gain mean', 'min', 'max', 'max − min', 'sd'];
  const rows = spreadRows(s, 'held-out harmful refusal (pooled)');
  const c = s.spread.direction_cosine;
  const cosine = c
    ? `cosine between the draws' chosen directions: mean ${c.mean.toFixed(3)}, min ${c.min.toFixed(3)} (${c.n} pairs)`
    : '';
  const all = [head, ...rows];
  const widths = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [
    `stability (${s.study}), ${s.draws.length} draws: chosen site (position/layer) ${sites.join(', ')}; ${s.spread.distinct_sites} distinct, the most frequent on ${pts(s.spread.modal_site_share)}% of draws`,
    'compliance gain over the baseline in points across draws (held-out harmful: edited refusal in %)',
    ...all.map(line),
    ...(cosine ? [cosine] : []),
  ].join('\n');
}
