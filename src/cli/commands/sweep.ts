// scalpel sweep: a finished run evaluated at many settings (λ list × α list) on its evaluation sets, the chosen
// (position, layer) fixed or re-selected per setting (--reselect), optionally with general ability (--ability) and a
// second judge (--judge) at every setting. The work is in src/method/sweep.ts; this file parses the lists, prints
// one row per setting, and leaves sweep.json / sweep-responses.jsonl in the run.
import type { Command } from 'commander';
import { ScalpelError } from '../../errors.js';
import { klDatasetFor } from '../../method/ability-run.js';
import type { Backend } from '../../method/backend.js';
import type { AblationMode } from '../../method/config.js';
import type { SweepAbilityRequest } from '../../method/sweep-ability.js';
import { runSweep, type SweepJson } from '../../method/sweep.js';
import type { LoadedModel } from '../../model/load.js';
import { ABILITY_SIZE_OPTIONS, type AbilitySizeFlags, abilitySizesOf, fetchAbilitySamples } from '../ability-flags.js';
import { batchSizeOf, runOptions } from '../config.js';
import { fetchRunSets } from '../fetch.js';
import { JUDGE_OPTIONS, connectJudgeFlags, judgeFlags } from '../judge.js';
import { defineStageCommand, openRun, runDirOf, type CommonOpts } from '../options.js';

/** The ability size flags by commander's attribute name (they only go with --ability). */
const ABILITY_FLAG_NAMES = ['nMmlu', 'nArc', 'nPplDocs', 'shots', 'nKl', 'klDataset'] as const;

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
      [
        '--ability',
        'also measure general ability at every setting (as `scalpel ability`: harmless KL, perplexity, MMLU, ARC; the baseline once)',
      ],
      ...ABILITY_SIZE_OPTIONS.map(([flags, help, value]): [string, string] => [
        flags,
        `--ability: ${help} (default ${value})`,
      ]),
      [
        '--kl-dataset <set>',
        "--ability: harmless prompts for the KL (default: the test split of the run's harmless-val)",
      ],
      ...JUDGE_OPTIONS,
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
    if (!opts['ability'])
      for (const name of ABILITY_FLAG_NAMES)
        if (opts[name] !== undefined)
          throw new ScalpelError(`--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: only with --ability`);
    const sizes = opts['ability'] ? abilitySizesOf(opts as AbilitySizeFlags) : null;
    const judgeAsked = judgeFlags(opts);
    const { runDir, run, modelDir } = await openRun(runDirOf(opts, 'run'), opts.model, opts.quiet);
    const o = await runOptions(cmd, { ...opts, model: modelDir }, runDir, run.config);
    await fetchRunSets(o, datasets ?? o.config.evalDatasets);
    // One model for generation and ability (ability reads log-probabilities, which the Backend does not offer).
    let loading: Promise<{ backend: Backend; loaded: LoadedModel }> | undefined;
    const load = () => {
      loading ??= import('../../method/engine-backend.js').then((m) =>
        m.loadEngineBackend(modelDir, { batchSize: batchSizeOf(opts), system: o.config.system }),
      );
      return loading;
    };
    o.backend = async () => (await load()).backend;
    let ability: SweepAbilityRequest | undefined;
    if (sizes) {
      const klDataset =
        (opts['klDataset'] as string | undefined) ?? klDatasetFor(String(run.config['harmlessVal'] ?? 'harmless-val'));
      if (o.dataDir === undefined) await fetchAbilitySamples(sizes.sizes, { progress: o.progress, log: o.log! });
      await fetchRunSets(o, [klDataset]);
      ability = {
        ...sizes,
        klDataset,
        model: async () => (await load()).loaded,
        system: o.config.system,
        batchSize: batchSizeOf(opts),
      };
    }
    // The judge answers (and has its model) before the long work starts.
    const judge = judgeAsked ? await connectJudgeFlags(judgeAsked) : null;
    const sweep = await runSweep(o, {
      lambdas,
      alphas: alphas ?? [o.config.alpha],
      ablation: o.config.ablation as AblationMode,
      reselect: !!opts['reselect'],
      datasets,
      run,
      ...(ability ? { ability } : {}),
      ...(judge
        ? {
            judge: {
              spec: { ...judge.spec, model: judge.spec.model! },
              ...(judge.apiKey !== undefined ? { apiKey: judge.apiKey } : {}),
              concurrency: judge.concurrency,
              cacheDir: runDir,
              onRetry: (why: string, ms: number) => o.log?.(`judge: ${why}; retrying in ${(ms / 1000).toFixed(1)} s`),
              log: o.log,
            },
          }
        : {}),
    });
    if (opts.json) process.stdout.write(`${JSON.stringify(sweep, null, 2)}\n`);
    else process.stdout.write(`${formatSweep(sweep, datasets ?? o.config.evalDatasets)}\n`);
  });
}

const pct = (x: number | null | undefined) =>
  x === undefined || x === null || !Number.isFinite(x) ? '–' : `${(100 * x).toFixed(1)}%`;

/** Rows as aligned columns, the first left-aligned. */
function columns(all: string[][]): string[] {
  const widths = all[0]!.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return all.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
}

/** --ability: one row per setting with its figures, the baseline first. */
function formatAbility(sweep: SweepJson, points: SweepJson['points']): string[] {
  const base = sweep.ability_baseline;
  const withAbility = points.filter((p) => p.ability && p.ability.key === base?.key);
  if (!base || withAbility.length === 0) return [];
  const fig = (a: NonNullable<SweepJson['ability_baseline']>['baseline']) => [
    a.perplexity ? a.perplexity.value.toFixed(2) : '–',
    pct(a.mmlu?.accuracy),
    pct(a.arc_challenge?.accuracy),
  ];
  const sz = base.sizes;
  const rows = [
    ['λ', 'α', 'KL mean', 'KL p95', 'perplexity', 'MMLU', 'ARC'],
    ['baseline', '', '', '', ...fig(base.baseline)],
    ...withAbility.map((p) => [
      String(p.lambda),
      String(p.alpha),
      p.ability!.kl.first_token_mean.toFixed(4),
      p.ability!.kl.first_token_p95.toFixed(4),
      ...fig(p.ability!.edited),
    ]),
  ];
  return [
    '',
    `general ability per setting (KL on ${base.kl_dataset} n=${sz.n_kl}; MMLU n=${sz.n_mmlu} ${sz.shots}-shot; ARC n=${sz.n_arc}; perplexity ${sz.n_ppl_docs} WikiText-2 articles)`,
    ...columns(rows),
  ];
}

/** --judge: the second judge's compliance per setting and dataset, the baseline first. */
function formatJudge(sweep: SweepJson, points: SweepJson['points'], datasets: string[]): string[] {
  const bj = sweep.baseline_judge;
  const judged = points.filter((p) => p.judge && p.judge.judge === bj?.judge);
  if (!bj || judged.length === 0) return [];
  const agree = (a: { n: number; agree: number } | undefined) => (a && a.n > 0 ? pct(a.agree / a.n) : '–');
  const cells = (j: NonNullable<SweepJson['baseline_judge']>) =>
    datasets.flatMap((d) => [pct(j.rates[d]?.compliance_rate), agree(j.agreement[d])]);
  const rows = [
    ['λ', 'α', ...datasets.flatMap((d) => [d, 'agree'])],
    ['baseline', '', ...cells(bj)],
    ...judged.map((p) => [String(p.lambda), String(p.alpha), ...cells({ ...p.judge!, max_new_tokens: 0 })]),
  ];
  return [
    '',
    `compliance by the judge ${bj.judge} (agree: share of its labels the substring judge shares)`,
    ...columns(rows),
  ];
}

/** One row per setting: λ, α, the site, and compliance per dataset (the baseline first). */
function formatSweep(sweep: SweepJson, datasets: string[]): string {
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
  const shown = sweep.points.filter(
    (p) => p.max_new_tokens === sweep.max_new_tokens && datasets.every((d) => p.datasets.includes(d)),
  );
  return [
    `compliance rate per setting (site: position/layer, * re-selected; ${sweep.cost.forward_passes} forward passes in all)`,
    ...columns([head, base, ...rows]),
    ...formatAbility(sweep, shown),
    ...formatJudge(sweep, shown, datasets),
  ].join('\n');
}
