// scalpel sweep: a finished run evaluated at many settings (λ list × α list) on its evaluation sets, the chosen
// (position, layer) fixed or re-selected per setting (--reselect). The work is in src/method/sweep.ts; this file
// parses the lists, prints one row per setting, and leaves sweep.json / sweep-responses.jsonl in the run.
import type { Command } from 'commander';
import { ScalpelError } from '../../errors.js';
import type { AblationMode } from '../../method/config.js';
import { runSweep, type SweepJson } from '../../method/sweep.js';
import { runOptions } from '../config.js';
import { fetchRunSets } from '../fetch.js';
import { defineStageCommand, openRun, runDirOf, type CommonOpts } from '../options.js';

const DEFAULT_LAMBDAS = '0,0.25,0.5,0.75,1';

/** A comma list of numbers, as given to `flag`. */
export function numberList(text: string, flag: string): number[] {
  const parts = text.split(',').map((s) => s.trim());
  const out = parts.map(Number);
  if (parts.some((p) => p === '') || out.some((x) => !Number.isFinite(x)))
    throw new ScalpelError(`${flag} ${text}: expected a comma-separated list of numbers, e.g. ${DEFAULT_LAMBDAS}`);
  return out;
}

export function register(program: Command): void {
  const cmd = defineStageCommand(program, {
    name: 'sweep',
    description:
      "evaluate a run at many settings (λ × α) on its evaluation sets, sharing generation between them; results in the run's sweep.json (resumable)",
    runDir: { flag: 'run', help: 'run directory with a finished select stage', required: true },
    options: [
      [
        '--reselect',
        "re-select the (position, layer) at each setting with the select stage's scoring, as the paper does",
      ],
      ['--dataset <names...>', "evaluation sets (dataset names, name:N, or prompt files); default: the run's"],
      ['--json', 'print sweep.json'],
    ],
  });
  // The method's --lambda and --alpha take one number; here they take lists.
  for (const o of cmd.options) {
    if (o.long === '--lambda') o.description = `comma list of λ values in [0, 1] (default ${DEFAULT_LAMBDAS})`;
    if (o.long === '--alpha') o.description = "comma list of α values (default: the run's α)";
  }
  cmd.action(async (opts: CommonOpts) => {
    const given = (key: string) => cmd.getOptionValueSource(key) === 'cli';
    const lambdas = numberList(given('lambda') ? String(opts['lambda']) : DEFAULT_LAMBDAS, '--lambda');
    const alphaText = given('alpha') ? String(opts['alpha']) : undefined;
    const alphas = alphaText !== undefined ? numberList(alphaText, '--alpha') : undefined;
    // The lists are read here; the configuration keeps the run's λ and α.
    for (const key of ['lambda', 'alpha']) cmd.setOptionValueWithSource(key, undefined, 'default');
    const datasets = given('dataset') ? (opts['dataset'] as string[]) : undefined;
    const { runDir, run, modelDir } = await openRun(runDirOf(opts, 'run'), opts.model, opts.quiet);
    const o = await runOptions(cmd, { ...opts, model: modelDir }, runDir, run.config);
    await fetchRunSets(o, datasets ?? o.config.evalDatasets);
    const sweep = await runSweep(o, {
      lambdas,
      alphas: alphas ?? [o.config.alpha],
      ablation: o.config.ablation as AblationMode,
      reselect: !!opts['reselect'],
      datasets,
      run,
    });
    if (opts.json) process.stdout.write(`${JSON.stringify(sweep, null, 2)}\n`);
    else process.stdout.write(`${formatSweep(sweep, datasets ?? o.config.evalDatasets)}\n`);
  });
}

/** One row per setting: λ, α, the site, and compliance per dataset (the baseline first). */
function formatSweep(sweep: SweepJson, datasets: string[]): string {
  const pct = (x: number | undefined) => (x === undefined ? '–' : `${(100 * x).toFixed(1)}%`);
  const head = ['λ', 'α', 'site', ...datasets];
  const base = [
    'baseline',
    '',
    '',
    ...datasets.map((d) =>
      pct(sweep.baseline.find((b) => b.dataset === d && b.max_new_tokens === sweep.max_new_tokens)?.compliance_rate),
    ),
  ];
  const rows = sweep.points
    .filter((p) => p.max_new_tokens === sweep.max_new_tokens && datasets.every((d) => p.datasets.includes(d)))
    .map((p) => [
      String(p.lambda),
      String(p.alpha),
      p.site ? `${p.site.position}/${p.site.layer}${p.reselect ? '*' : ''}` : 'none',
      ...datasets.map((d) => pct(p.results.find((r) => r.dataset === d)?.compliance_rate)),
    ]);
  const all = [head, base, ...rows];
  const widths = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [
    `compliance rate per setting (site: position/layer, * re-selected; ${sweep.cost.forward_passes} forward passes in all)`,
    ...all.map(line),
  ].join('\n');
}
