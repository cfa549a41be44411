// scalpel run: the whole method (extract → select → eval) on a model, with a before/after table.
// Also home of the helpers the stage commands (extract, select, eval) share: configuration from flags, run options,
// the tables they print. Their flags are defined in ../options.ts.
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ScalpelError } from '../../errors.js';
import { defaultConfig, type MethodConfig, type RefusalTokenRule } from '../../method/config.js';
import { resolveDataDir } from '../../method/datasets.js';
import { readRunJson } from '../../method/rundir.js';
import {
  runPipeline,
  type EvalResult,
  type RunOptions,
  type SelectionJson,
  type Stage,
} from '../../method/pipeline.js';
import { readPromptFile } from '../../io/prompts.js';
import { logger, progressFactory } from '../progress.js';
import { defineStageCommand, type CommonOpts } from '../options.js';

function num(v: unknown, flag: string): number {
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n))
    throw new ScalpelError(`--${flag} ${String(v)}: expected a number`);
  return n;
}

function parseRefusalTokens(v: string): RefusalTokenRule {
  if (v === 'auto' || v === 'auto-harmful' || v === 'paper') return v;
  return v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

const FLAG_FIELDS: [string, keyof MethodConfig, (v: unknown, flag: string) => unknown][] = [
  ['harmfulTrain', 'harmfulTrain', String],
  ['harmfulVal', 'harmfulVal', String],
  ['harmlessTrain', 'harmlessTrain', String],
  ['harmlessVal', 'harmlessVal', String],
  ['pseudoTrain', 'pseudoTrain', String],
  ['pseudoVal', 'pseudoVal', String],
  ['column', 'column', String],
  ['system', 'system', String],
  ['nTrain', 'nTrain', num],
  ['nVal', 'nVal', num],
  ['seed', 'seed', num],
  ['probeTokens', 'probeTokens', num],
  ['refusalTokens', 'refusalTokens', (v) => parseRefusalTokens(String(v))],
  ['filter', 'filter', Boolean],
  ['harmGuard', 'harmGuard', Boolean],
  ['lambda', 'lambda', num],
  ['target', 'target', String],
  ['ablation', 'ablation', String],
  ['klThreshold', 'klThreshold', num],
  ['trueKlThreshold', 'trueKlThreshold', num],
  ['induceThreshold', 'induceThreshold', num],
  ['prune', 'prunePercent', num],
  ['alpha', 'alpha', num],
  ['actaddKlThreshold', 'actaddKlThreshold', num],
  ['maxNewTokens', 'maxNewTokens', num],
  ['refusalSubstrings', 'judgeSubstrings', (v) => readPromptFile(String(v))],
];

const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/**
 * The configuration: built-in defaults (public sets when a data directory is known), then the stored config of
 * an existing run (stage commands), then the flags given on the command line.
 */
export function buildConfig(
  cmd: Command,
  opts: CommonOpts,
  stored?: Record<string, unknown>,
): { config: MethodConfig; dataDir: string | undefined } {
  const explicit = (key: string) => cmd.getOptionValueSource(key) === 'cli';
  const storedDir = stored?.['dataDir'];
  const dataDir = resolveDataDir(
    explicit('dataDir') ? opts.dataDir : typeof storedDir === 'string' ? storedDir : opts.dataDir,
  );
  const config = defaultConfig(dataDir !== undefined, explicit('paper') && !!opts['paper']) as MethodConfig &
    Record<string, unknown>;
  if (stored) {
    for (const [k, v] of Object.entries(stored))
      if (k !== 'dataDir' && v !== null && k in config) (config as Record<string, unknown>)[k] = v;
    if (stored['column'] !== null && stored['column'] !== undefined) config.column = stored['column'] as string;
    if (stored['system'] !== null && stored['system'] !== undefined) config.system = stored['system'] as string;
    if (explicit('paper') && opts['paper'])
      Object.assign(config, { harmGuard: false, ablation: 'zero', refusalTokens: 'paper' });
  }
  for (const [opt, field, parse] of FLAG_FIELDS) {
    if (explicit(opt)) (config as Record<string, unknown>)[field] = parse(opts[opt], kebab(opt));
  }
  return { config, dataDir };
}

export function batchSizeOf(opts: CommonOpts): number | undefined {
  if (opts.batchSize === undefined) return undefined;
  const n = num(opts.batchSize, 'batch-size');
  if (!Number.isInteger(n) || n < 1)
    throw new ScalpelError(`--batch-size ${opts.batchSize}: expected a positive integer`);
  return n;
}

export function runOptions(
  cmd: Command,
  opts: CommonOpts,
  runDir: string,
  stored?: Record<string, unknown>,
  storedModel?: string,
): RunOptions {
  const modelDir = opts.model ?? storedModel;
  if (!modelDir) throw new ScalpelError('--model DIR is required');
  const { config, dataDir } = buildConfig(cmd, opts, stored);
  const batchSize = batchSizeOf(opts);
  return {
    runDir: resolve(runDir),
    modelDir: resolve(modelDir),
    config,
    dataDir,
    backend: async () => {
      const { loadEngineBackend } = await import('../../method/engine-backend.js');
      return (await loadEngineBackend(resolve(modelDir), { batchSize, system: config.system })).backend;
    },
    progress: progressFactory({ quiet: opts.quiet }),
    log: logger(opts.quiet),
    force: !!opts.force,
  };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** The before/after table of compliance rates, one row per dataset. */
export function formatTable(results: EvalResult[]): string {
  const sets = [...new Set(results.map((r) => r.dataset))];
  const conds = [...new Set(results.map((r) => r.condition))];
  const head = ['dataset', 'n', ...conds.map((c) => `${c}`), ...(conds.length === 2 ? ['change'] : [])];
  const rows = sets.map((s) => {
    const by = (c: string) => results.find((r) => r.dataset === s && r.condition === c);
    const cells = conds.map((c) => (by(c) ? pct(by(c)!.compliance_rate) : '–'));
    const change =
      conds.length === 2 && by(conds[0]!) && by(conds[1]!)
        ? [
            `${by(conds[1]!)!.compliance_rate >= by(conds[0]!)!.compliance_rate ? '+' : ''}${(100 * (by(conds[1]!)!.compliance_rate - by(conds[0]!)!.compliance_rate)).toFixed(1)}`,
          ]
        : [];
    return [s, String(by(conds[0]!)?.n ?? ''), ...cells, ...change];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [
    'compliance rate (share of responses the substring judge does not flag as refusals)',
    line(head),
    ...rows.map(line),
  ].join('\n');
}

export function describeSelection(sel: SelectionJson | undefined): string {
  if (!sel?.chosen) return 'no candidate chosen';
  const c = sel.chosen;
  const f = (x: number | null) => (x === null ? '–' : x.toFixed(3));
  return `chosen: position ${c.position}, layer ${c.layer} (target ${sel.target}, λ = ${sel.lambda}, ${sel.ablation} ablation; pseudo-val refusal score ${f(c.refusal_score)}, harmless KL ${f(c.kl)}, harmful-val score ${f(c.harmful_score)})`;
}

export async function runStages(cmd: Command, opts: CommonOpts, runDir: string, stages: Stage[], useStored: boolean) {
  const stored = useStored ? readRunJson(resolve(runDir)) : null;
  const o = runOptions(cmd, opts, runDir, stored?.config, stored?.model.dir);
  return await runPipeline(o, stages);
}

export function register(program: Command): void {
  const cmd = defineStageCommand(program, {
    name: 'run',
    description: 'extract, select and evaluate the false-refusal vector of a chat model; prints a before/after table',
    runDir: { flag: 'out', help: 'run directory (created; a rerun resumes finished stages)', required: true },
    options: [
      ['--eval <sets>', 'comma-separated evaluation sets (dataset names, name:N for the first N, or files)'],
      ['--json', 'print {"results": [...]} instead of the table'],
    ],
  });
  cmd.action(async (opts: CommonOpts) => {
    if (cmd.getOptionValueSource('eval') === 'cli') opts['evalDatasets'] = opts['eval'];
    const o = runOptions(cmd, opts, opts.out!);
    if (typeof opts['eval'] === 'string')
      o.config.evalDatasets = String(opts['eval'])
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    const res = await runPipeline(o, ['extract', 'select', 'eval']);
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ results: res.results }, null, 2)}\n`);
      return;
    }
    process.stdout.write(`${describeSelection(res.selection)}\n\n${formatTable(res.results ?? [])}\n`);
    const st = res.run.stages;
    const timing = (['extract', 'select', 'eval'] as const)
      .map((s) => (st[s] ? `${s} ${st[s]!.seconds}s / ${st[s]!.forward_passes} passes` : `${s} –`))
      .join(', ');
    process.stdout.write(`\n${timing}\nrun directory: ${res.runDir}\n`);
  });
}
