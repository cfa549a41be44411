// The flags of the second judge (`--judge openai:URL[#model]`, on eval and run) and what the commands do with it
// after evaluating: label the response rows through the endpoint (src/method/llm-judge.ts), cache the answers in the
// run directory and write judge.json there.
import { ScalpelError } from '../errors.js';
import type { ResponseRow } from '../method/evaluate.js';
import {
  connectJudge,
  type JudgeJson,
  type JudgeSpec,
  judgeRows,
  parseJudgeSpec,
  writeJudgeJson,
} from '../method/llm-judge.js';
import { apiKeyFrom } from '../method/openai-endpoint.js';
import type { CommonOpts } from './options.js';
import { logger, progressFactory } from './progress.js';

/** The judge's flags, as [flags, help] for defineStageCommand's options. */
export const JUDGE_OPTIONS: [string, string][] = [
  [
    '--judge <spec>',
    'a second judge beside the substring one: openai:URL[#model], any OpenAI-compatible endpoint labelling each response refusal / compliance / partial (writes judge.json; answers cached in judge-cache.jsonl)',
  ],
  ['--judge-concurrency <n>', 'judge requests in flight at once (default 4)'],
  ['--judge-key-env <name>', "environment variable holding the judge's API key (default OPENAI_API_KEY)"],
];

/** The flags by commander's attribute name, for commands that list which flags apply where. */
export const JUDGE_FLAG_NAMES = ['judge', 'judgeConcurrency', 'judgeKeyEnv'] as const;

/** A positive integer flag, or the default when absent. */
export function countFlag(value: unknown, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const text = String(value);
  const n = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || !Number.isSafeInteger(n) || n < 1)
    throw new ScalpelError(`${flag} ${text}: expected an integer ≥ 1`);
  return n;
}

export interface JudgeFlags {
  spec: JudgeSpec;
  apiKey?: string;
  concurrency: number;
}

/** The judge the flags ask for, checked before any model is loaded; null without --judge. */
export function judgeFlags(opts: CommonOpts): JudgeFlags | null {
  if (opts['judge'] === undefined) {
    for (const name of ['judgeConcurrency', 'judgeKeyEnv'])
      if (opts[name] !== undefined)
        throw new ScalpelError(
          `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: only with --judge openai:URL[#model]`,
        );
    return null;
  }
  const spec = parseJudgeSpec(String(opts['judge']));
  const concurrency = countFlag(opts['judgeConcurrency'], '--judge-concurrency', 4);
  const keyEnv = opts['judgeKeyEnv'] as string | undefined;
  const apiKey = apiKeyFrom(keyEnv, '--judge-key-env');
  return { spec, concurrency, ...(apiKey !== undefined ? { apiKey } : {}) };
}

/** The judge with its model known, once the server has answered (before the command's long work). */
export async function connectJudgeFlags(j: JudgeFlags): Promise<JudgeFlags> {
  return { ...j, spec: await connectJudge(j.spec, j.apiKey) };
}

/**
 * Labels `rows` with the judge; the cache lives in `cacheDir` and judge.json is written into `writeDir` (either may
 * be null: nothing on disk).
 */
export async function runJudge(
  judge: JudgeFlags,
  rows: readonly ResponseRow[],
  where: { cacheDir: string | null; writeDir: string | null },
  opts: CommonOpts,
): Promise<JudgeJson> {
  const log = logger(opts.quiet);
  const bar = progressFactory({ quiet: opts.quiet })('judging', rows.length);
  let j: JudgeJson;
  try {
    j = await judgeRows(rows, {
      ...judge,
      cacheDir: where.cacheDir,
      onProgress: (done, total) => bar.update(done, total),
      onRetry: (why, ms) => log(`judge: ${why}; retrying in ${(ms / 1000).toFixed(1)} s`),
      log,
    });
  } finally {
    bar.stop();
  }
  const u = j.usage;
  log(
    `judge: ${rows.length} rows, ${u.cached} from the cache, ${u.requests} requests (${u.retries} retried)${where.writeDir ? `; judge.json in ${where.writeDir}` : ''}`,
  );
  if (where.writeDir !== null) await writeJudgeJson(where.writeDir, j);
  return j;
}
