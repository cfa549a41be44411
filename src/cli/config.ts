// Flags → the method's configuration and run options, shared by the commands that run the method (run, extract,
// select, eval): built-in defaults, then a stored run's configuration, then what was given on the command line.
// The flags themselves are defined in options.ts.
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ScalpelError } from '../errors.js';
import { readPromptFile } from '../io/prompts.js';
import { defaultConfig, type MethodConfig, PAPER_OVERRIDES, type RefusalTokenRule } from '../method/config.js';
import { resolveDataDir } from '../method/datasets.js';
import { runPipeline, type RunOptions, type Stage } from '../method/pipeline.js';
import { readRunJson } from '../method/rundir.js';
import { configSets, fetchRunSets } from './fetch.js';
import { type CommonOpts, resolveModelFlag, storedModelRef } from './options.js';
import { logger, progressFactory } from './progress.js';

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

/**
 * Flags with one default and one other value, the default stored as no field so that runs made before the flag keep
 * their stage keys: --sampler (Scalpel's own or CPython's), --objective (the paper's rule or the Pareto search),
 * --search (the exhaustive sweep or successive halving).
 */
const OPTIONAL_MODES = {
  sampler: ['mulberry32', 'python'],
  objective: ['refusal-score', 'pareto'],
  search: ['exhaustive', 'halving'],
} as const;

function parseMode(field: keyof typeof OPTIONAL_MODES) {
  const [absent, other] = OPTIONAL_MODES[field];
  return (v: unknown, flag: string): string | undefined => {
    if (v === absent) return undefined;
    if (v === other) return other;
    throw new ScalpelError(`--${flag} ${String(v)}: expected ${absent} or ${other}`);
  };
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
  ['valDraws', 'valDraws', num],
  ['seed', 'seed', num],
  ['sampler', 'sampler', parseMode('sampler')],
  ['probeTokens', 'probeTokens', num],
  ['refusalTokens', 'refusalTokens', (v) => parseRefusalTokens(String(v))],
  ['filter', 'filter', Boolean],
  ['harmGuard', 'harmGuard', Boolean],
  ['lambda', 'lambda', num],
  ['target', 'target', String],
  ['ablation', 'ablation', String],
  ['strength', 'strength', num],
  ['objective', 'objective', parseMode('objective')],
  ['pick', 'pick', num],
  ['search', 'search', parseMode('search')],
  ['harmfulPool', 'harmfulPool', String],
  ['klThreshold', 'klThreshold', num],
  ['trueKlThreshold', 'trueKlThreshold', num],
  ['induceThreshold', 'induceThreshold', num],
  ['induceFilter', 'induceFilter', Boolean],
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
    for (const [field, [, other]] of Object.entries(OPTIONAL_MODES))
      if (stored[field] === other) (config as Record<string, unknown>)[field] = other;
    if (typeof stored['pick'] === 'number') config.pick = stored['pick'];
    if (explicit('paper') && opts['paper']) Object.assign(config, PAPER_OVERRIDES);
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

export async function runOptions(
  cmd: Command,
  opts: CommonOpts,
  runDir: string,
  stored?: Record<string, unknown>,
  storedModel?: string,
): Promise<RunOptions> {
  const modelRef = opts.model ?? storedModel;
  if (!modelRef) throw new ScalpelError('--model MODEL is required');
  const { config, dataDir } = buildConfig(cmd, opts, stored);
  const batchSize = batchSizeOf(opts);
  // Flags are parsed (bad numbers refused) before a model is downloaded.
  const { dir: modelDir, hub } = await resolveModelFlag(modelRef, opts.quiet);
  return {
    runDir: resolve(runDir),
    modelDir,
    ...(hub ? { modelHub: hub } : {}),
    config,
    dataDir,
    backend: async () => {
      const { loadEngineBackend } = await import('../method/engine-backend.js');
      return (await loadEngineBackend(modelDir, { batchSize, system: config.system })).backend;
    },
    progress: progressFactory({ quiet: opts.quiet }),
    log: logger(opts.quiet),
    force: !!opts.force,
  };
}

export async function runStages(cmd: Command, opts: CommonOpts, runDir: string, stages: Stage[], useStored: boolean) {
  const stored = useStored ? readRunJson(resolve(runDir)) : null;
  const o = await runOptions(cmd, opts, runDir, stored?.config, stored ? storedModelRef(stored) : undefined);
  await fetchRunSets(o, configSets(o.config, stages.includes('eval')));
  return await runPipeline(o, stages);
}
