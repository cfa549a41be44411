// `scalpel ability`: does the edit cost general ability? Baseline vs the run's intervention on harmless first-token
// KL, WikiText-2 perplexity, MMLU (5-shot) and ARC-Challenge accuracy by answer log-likelihood; or, with --model and
// no run, the baseline of any model. Writes ability.json and ability-items.jsonl and prints a table.
import { existsSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ScalpelError } from '../../errors.js';
import type { Ability, AbilityJson } from '../../method/ability.js';
import { klDatasetFor, runAbility } from '../../method/ability-run.js';
import { resolveDataDir } from '../../method/datasets.js';
import { type AblationMode, validateSettings } from '../../method/intervention.js';
import { batchSizeOf } from '../config.js';
import { ABILITY_SIZE_OPTIONS, abilitySizesOf, fetchAbilitySamples } from '../ability-flags.js';
import { fetchRunSets } from '../fetch.js';
import { MODEL_HELP, lambdaFlag, openRun, resolveModelFlag } from '../options.js';
import { logger, progressFactory } from '../progress.js';

interface AbilityFlags {
  run?: string;
  model?: string;
  out?: string;
  lambda?: string;
  alpha?: string;
  ablation?: string;
  nMmlu: string;
  nArc: string;
  nPplDocs: string;
  shots: string;
  nKl: string;
  klDataset?: string;
  dataDir?: string;
  system?: string;
  batchSize?: string;
  json?: boolean;
  quiet?: boolean;
}

const pct = (x: number | undefined) => (x === undefined ? '-' : `${(100 * x).toFixed(1)}%`);
const num = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(3));

/** The summary table: one row per figure, a column per condition. */
export function abilityTable(j: AbilityJson): string {
  const conds: [string, Ability | null][] = [
    ['baseline', j.conditions.baseline],
    ['edited', j.conditions.edited],
  ];
  const cols = conds.filter(([, a]) => a !== null) as [string, Ability][];
  const rows: string[][] = [['figure', 'n', ...cols.map(([c]) => c)]];
  const b = j.conditions.baseline;
  if (b.perplexity)
    rows.push([
      'wikitext2 perplexity',
      `${b.perplexity.tokens} tok`,
      ...cols.map(([, a]) => a.perplexity!.value.toFixed(3)),
    ]);
  if (b.mmlu)
    rows.push([`mmlu ${b.mmlu.shots}-shot acc`, String(b.mmlu.n), ...cols.map(([, a]) => pct(a.mmlu?.accuracy))]);
  if (b.arc_challenge) {
    const n = String(b.arc_challenge.n);
    rows.push(['arc-challenge acc', n, ...cols.map(([, a]) => pct(a.arc_challenge?.accuracy))]);
    rows.push(['arc-challenge acc_norm', n, ...cols.map(([, a]) => pct(a.arc_challenge?.acc_norm))]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const lines = rows.map((r) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '),
  );
  if (j.kl)
    lines.push(
      `first-token KL(baseline ‖ edited) on ${j.kl.dataset} (n=${j.kl.n}): mean ${num(j.kl.first_token_mean)}, p95 ${num(j.kl.first_token_p95)}`,
    );
  return lines.join('\n');
}

export function register(program: Command): void {
  const cmd = program
    .command('ability')
    .description(
      "general ability, baseline vs the run's edit: harmless first-token KL, WikiText-2 perplexity, MMLU and ARC-Challenge accuracy (with --model and no run: the baseline alone)",
    )
    .option('--run <dir>', 'run directory with a finished select stage (ability.json is written there)')
    .option('--model <model>', `${MODEL_HELP} (with --run: default the run's; without: required)`)
    .option('--out <dir>', 'without --run: folder for ability.json (default: print only)')
    .option('--lambda <x>', "partial orthogonalization strength λ in [0, 1] (default: the run's)")
    .option('--alpha <x>', "activation addition coefficient (default: the run's)")
    .option('--ablation <mode>', '"zero" or "affine" (default: the run\'s)');
  for (const [flags, help, value] of ABILITY_SIZE_OPTIONS) cmd.option(flags, help, value);
  cmd
    .option('--kl-dataset <set>', "harmless prompts for the KL (default: the test split of the run's harmless-val set)")
    .option(
      '--data-dir <dir>',
      "folder of public sets (the raw/ layout); default the run's, $SCALPEL_DATA, else the download cache",
    )
    .option('--system <text>', 'system prompt for the KL prompts')
    .option('--batch-size <n>', 'sequences per forward pass')
    .option('--json', 'print ability.json')
    .option('--quiet', 'no progress bars or log lines')
    .action(async (flags: AbilityFlags) => {
      const { sizes, nKl } = abilitySizesOf(flags);
      const batchSize = batchSizeOf({ batchSize: flags.batchSize });
      const lambda = lambdaFlag(flags.lambda);
      const alpha = flags.alpha === undefined ? undefined : Number(flags.alpha);
      if (alpha !== undefined) validateSettings({ alpha }, () => `--alpha ${flags.alpha}`);
      if (flags.ablation !== undefined) validateSettings({ ablation: flags.ablation as AblationMode });
      const log = logger(flags.quiet);
      const progress = progressFactory({ quiet: flags.quiet });

      let runDir: string | undefined;
      let modelDir: string;
      let outDir: string | undefined;
      let storedDataDir: unknown;
      let request = {};
      let harmlessVal: string | undefined;
      if (flags.run !== undefined) {
        if (flags.out !== undefined)
          throw new ScalpelError('--out: only without --run (ability.json goes into the run)');
        const opened = await openRun(flags.run, flags.model, flags.quiet);
        ({ runDir, modelDir } = opened);
        outDir = runDir;
        storedDataDir = opened.run.config['dataDir'];
        harmlessVal = String(opened.run.config['harmlessVal'] ?? 'harmless-val');
        const storedSystem = opened.run.config['system'];
        if (flags.system === undefined && typeof storedSystem === 'string') flags.system = storedSystem;
        request = { run: opened.run, lambda, alpha, ablation: flags.ablation as AblationMode | undefined };
      } else {
        for (const f of ['lambda', 'alpha', 'ablation', 'klDataset'] as const)
          if (flags[f] !== undefined)
            throw new ScalpelError(`--${f.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: only with --run RUN`);
        if (flags.model === undefined)
          throw new ScalpelError('--run RUN is required, or --model MODEL for a baseline alone');
        modelDir = (await resolveModelFlag(flags.model, flags.quiet)).dir;
        if (flags.out !== undefined) {
          outDir = resolve(flags.out);
          if (!existsSync(outDir)) mkdirSync(outDir, { recursive: true });
        }
      }
      const dataDir = resolveDataDir(flags.dataDir ?? (typeof storedDataDir === 'string' ? storedDataDir : undefined));
      // Without a data directory the samples come from the download cache: fetch what is missing (once).
      if (dataDir === undefined) {
        await fetchAbilitySamples(sizes, { progress, log });
        if (runDir !== undefined)
          await fetchRunSets({ dataDir, progress, log }, [flags.klDataset ?? klDatasetFor(harmlessVal!)]);
      }
      const json = await runAbility({
        modelDir,
        runDir,
        request,
        outDir,
        sizes,
        klDataset: flags.klDataset,
        nKl,
        system: flags.system,
        dataDir,
        batchSize,
        progress,
        log,
      });
      if (flags.json) process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
      else process.stdout.write(`${abilityTable(json)}\n`);
    });
}
