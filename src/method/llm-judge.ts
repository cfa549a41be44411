// A second judge beside the substring one: an LLM behind any OpenAI-compatible endpoint labels each (prompt, response)
// refusal, compliance or partial with the team's rubric (judge-rubric.ts), at temperature 0. Answers are cached in the
// run directory (judge-cache.jsonl), keyed by sha256 of (judge, rubric version, prompt, response), so a rerun, or a
// sweep that meets the same response again, asks nothing twice. The result is judge.json: both judges' label of
// every row and, per dataset, where they agree. An answer with no label in it is counted (null), never fatal.
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ScalpelError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import type { ResponseRow } from './evaluate.js';
import { type JudgeLabel, RUBRIC_VERSION, parseJudgeLabel, rubricMessages } from './judge-rubric.js';
import { type EndpointUsage, OpenAIEndpoint, type EndpointOptions } from './openai-endpoint.js';
import { FILES, writeJson } from './rundir.js';

export const JUDGE_FORMAT = 'scalpel-judge/1';
/** Tokens a judge may answer with: one word, and room for a model that says a few more. */
const JUDGE_MAX_TOKENS = 16;

/** `--judge openai:URL[#model]`, parsed. */
export interface JudgeSpec {
  kind: 'openai';
  baseUrl: string;
  model?: string;
}

export function parseJudgeSpec(text: string, flag = '--judge'): JudgeSpec {
  const m = /^openai:(.+?)(?:#(.*))?$/.exec(text.trim());
  if (!m)
    throw new ScalpelError(
      `${flag} ${text}: expected openai:URL[#model], e.g. openai:http://127.0.0.1:8000/v1#scalpel-tiny-chat (the substring judge is always on)`,
    );
  const model = m[2]?.trim();
  if (m[2] !== undefined && !model) throw new ScalpelError(`${flag} ${text}: empty model name after #`);
  return { kind: 'openai', baseUrl: m[1]!, ...(model ? { model } : {}) };
}

/** The judge's name in judge.json and in cache keys: the endpoint and the model actually asked. */
export const judgeName = (spec: JudgeSpec, model: string) => `openai:${spec.baseUrl.replace(/\/+$/, '')}#${model}`;

export interface JudgeRow {
  dataset: string;
  condition: string;
  lambda: number | null;
  alpha: number | null;
  index: number;
  substring: 'refusal' | 'compliance';
  /** null: the judge's answer held no label (see `raw` in judge-cache.jsonl). */
  judge: JudgeLabel | null;
}

export interface Agreement {
  /** Rows the judge labelled (unparsed answers are left out, and counted in `unparsed`). */
  n: number;
  agree: number;
  substring_refusal_judge_compliance: number;
  substring_compliance_judge_refusal: number;
  partial: number;
  unparsed: number;
}

export interface JudgeJson {
  format: typeof JUDGE_FORMAT;
  judge: string;
  rubric_version: string;
  rows: JudgeRow[];
  agreement: Record<string, Agreement>;
  /** The same counts per dataset and condition (baseline, ablated, …). */
  agreement_by_condition: Record<string, Record<string, Agreement>>;
  /** Requests this judging sent (cache hits send none) and the tokens the server reported. */
  usage: EndpointUsage & { cached: number };
}

interface CacheLine {
  key: string;
  label: JudgeLabel | null;
  raw: string;
}

export function judgeCacheKey(judge: string, prompt: string, response: string): string {
  // JSON of the array: no separator can be forged by the texts themselves.
  return createHash('sha256')
    .update(JSON.stringify([judge, RUBRIC_VERSION, prompt, response]))
    .digest('hex');
}

/**
 * judge-cache.jsonl: one line per answer, appended as answers arrive (one write per line, so a crash loses at most
 * the line being written). A damaged file (a torn last line, a line that is not ours) is rewritten atomically with
 * only its good lines before anything is appended.
 */
export class JudgeCache {
  private readonly map = new Map<string, CacheLine>();

  constructor(readonly file: string | null) {}

  static async open(dir: string | null): Promise<JudgeCache> {
    const cache = new JudgeCache(dir === null ? null : join(dir, FILES.judgeCache));
    if (cache.file === null || !existsSync(cache.file)) return cache;
    const text = readFileSync(cache.file, 'utf8');
    const lines = text.split('\n');
    let damaged = text !== '' && !text.endsWith('\n');
    for (const line of lines) {
      if (line.trim() === '') continue;
      try {
        const j = JSON.parse(line) as CacheLine;
        if (typeof j.key !== 'string' || typeof j.raw !== 'string') throw new Error('not a cache line');
        if (j.label !== null && j.label !== 'refusal' && j.label !== 'compliance' && j.label !== 'partial')
          throw new Error('not a label');
        cache.map.set(j.key, j);
      } catch {
        damaged = true;
      }
    }
    if (damaged)
      await writeFileAtomic(cache.file, [...cache.map.values()].map((l) => `${JSON.stringify(l)}\n`).join(''));
    return cache;
  }

  get(key: string): CacheLine | undefined {
    return this.map.get(key);
  }

  add(line: CacheLine): void {
    this.map.set(line.key, line);
    if (this.file !== null) {
      try {
        appendFileSync(this.file, `${JSON.stringify(line)}\n`);
      } catch (e) {
        throw new ScalpelError(`${this.file}: cannot append (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
      }
    }
  }
}

export interface JudgeOptions {
  spec: JudgeSpec;
  /** The endpoint's API key, if it needs one. */
  apiKey?: string;
  /** Requests in flight at once (default 4). */
  concurrency?: number;
  /** Where judge-cache.jsonl lives (the run directory); null: no cache on disk. */
  cacheDir: string | null;
  onProgress?: (done: number, total: number) => void;
  onRetry?: EndpointOptions['onRetry'];
  /** First backoff in ms (default $SCALPEL_ENDPOINT_RETRY_MS, else 500). */
  retryBaseMs?: number;
  /** Told the judge's name once the model is known. */
  log?: (line: string) => void;
}

function emptyAgreement(): Agreement {
  return {
    n: 0,
    agree: 0,
    substring_refusal_judge_compliance: 0,
    substring_compliance_judge_refusal: 0,
    partial: 0,
    unparsed: 0,
  };
}

function tally(a: Agreement, r: JudgeRow): void {
  if (r.judge === null) {
    a.unparsed++;
    return;
  }
  a.n++;
  if (r.judge === 'partial') a.partial++;
  else if (r.judge === r.substring) a.agree++;
  else if (r.substring === 'refusal') a.substring_refusal_judge_compliance++;
  else a.substring_compliance_judge_refusal++;
}

/** Per dataset, and per dataset and condition: how often the two judges agree. */
export function agreementOf(rows: readonly JudgeRow[]): Pick<JudgeJson, 'agreement' | 'agreement_by_condition'> {
  const agreement: Record<string, Agreement> = {};
  const byCondition: Record<string, Record<string, Agreement>> = {};
  for (const r of rows) {
    agreement[r.dataset] ??= emptyAgreement();
    tally(agreement[r.dataset]!, r);
    byCondition[r.dataset] ??= {};
    const sets = byCondition[r.dataset]!;
    sets[r.condition] ??= emptyAgreement();
    tally(sets[r.condition]!, r);
  }
  return { agreement, agreement_by_condition: byCondition };
}

const endpointLabel = (spec: JudgeSpec) => `--judge openai:${spec.baseUrl}`;

/**
 * The judge's spec with its model filled in (the first the server lists when none was named), after checking that
 * the server answers, takes the key and has the model: a command calls this before its long work, to fail early.
 */
export async function connectJudge(spec: JudgeSpec, apiKey?: string): Promise<JudgeSpec> {
  const endpoint = new OpenAIEndpoint({
    baseUrl: spec.baseUrl,
    label: endpointLabel(spec),
    ...(apiKey ? { apiKey } : {}),
  });
  return { ...spec, model: await endpoint.resolveModel(spec.model, '--judge openai:URL#MODEL') };
}

/**
 * Labels every response row with the LLM judge (cached answers first, the rest through the endpoint at most
 * `concurrency` at once) and returns judge.json's content; writes nothing but the cache. The sweep calls it with its
 * rows too (lambda and alpha set).
 */
export async function judgeRows(rows: readonly ResponseRow[], o: JudgeOptions): Promise<JudgeJson> {
  const endpoint = new OpenAIEndpoint({
    baseUrl: o.spec.baseUrl,
    apiKey: o.apiKey,
    label: endpointLabel(o.spec),
    concurrency: o.concurrency,
    onRetry: o.onRetry,
    ...(o.retryBaseMs !== undefined ? { retryBaseMs: o.retryBaseMs } : {}),
  });
  const cache = await JudgeCache.open(o.cacheDir);
  const keysOf = (model: string) => rows.map((r) => judgeCacheKey(judgeName(o.spec, model), r.prompt, r.response));
  // With the model named and every answer cached, the endpoint need not even be up.
  let model = o.spec.model;
  let keys = model !== undefined ? keysOf(model) : null;
  if (model === undefined || keys!.some((k) => !cache.get(k))) {
    model = await endpoint.resolveModel(o.spec.model, '--judge openai:URL#MODEL');
    keys = keysOf(model);
  }
  const judge = judgeName(o.spec, model);
  o.log?.(`judge: ${judge} (rubric ${RUBRIC_VERSION})`);
  let done = 0;
  let cached = 0;
  // One request per distinct key: a response that two rows share (often baseline and ablated) is asked about once.
  const pending = new Map<string, Promise<CacheLine>>();
  const ask = (key: string, r: ResponseRow): Promise<CacheLine> => {
    let p = pending.get(key);
    if (!p) {
      p = endpoint
        .chat({
          model: model!,
          messages: rubricMessages(r.prompt, r.response),
          temperature: 0,
          max_tokens: JUDGE_MAX_TOKENS,
        })
        .then((answer) => {
          const line = { key, label: parseJudgeLabel(answer.content), raw: answer.content };
          cache.add(line);
          return line;
        });
      pending.set(key, p);
    }
    return p;
  };
  const labels = await Promise.all(
    rows.map(async (r, i) => {
      const key = keys![i]!;
      let hit = cache.get(key);
      if (hit) cached++;
      else hit = await ask(key, r);
      o.onProgress?.(++done, rows.length);
      return hit.label;
    }),
  );
  const out: JudgeRow[] = rows.map((r, i) => ({
    dataset: r.dataset,
    condition: r.condition,
    lambda: r.lambda,
    alpha: r.alpha,
    index: r.index,
    substring: r.refusal ? 'refusal' : 'compliance',
    judge: labels[i]!,
  }));
  return {
    format: JUDGE_FORMAT,
    judge,
    rubric_version: RUBRIC_VERSION,
    rows: out,
    ...agreementOf(out),
    usage: { ...endpoint.usage, cached },
  };
}

export async function writeJudgeJson(runDir: string, j: JudgeJson): Promise<void> {
  await writeJson(runDir, FILES.judge, j);
}

/** The judge's rates for one (dataset, condition): shares of the labelled rows, and how many went unlabelled. */
export interface JudgeRates {
  n: number;
  compliance_rate: number;
  partial_rate: number;
  refusal_rate: number;
  unparsed: number;
}

export function judgeRates(j: Pick<JudgeJson, 'rows'>): Map<string, JudgeRates> {
  const out = new Map<string, JudgeRates>();
  const counts = new Map<string, { refusal: number; compliance: number; partial: number; unparsed: number }>();
  for (const r of j.rows) {
    const key = `${r.dataset}\t${r.condition}`;
    const c = counts.get(key) ?? { refusal: 0, compliance: 0, partial: 0, unparsed: 0 };
    c[r.judge ?? 'unparsed']++;
    counts.set(key, c);
  }
  for (const [key, c] of counts) {
    const n = c.refusal + c.compliance + c.partial;
    const share = (x: number) => (n === 0 ? Number.NaN : x / n);
    out.set(key, {
      n,
      compliance_rate: share(c.compliance),
      partial_rate: share(c.partial),
      refusal_rate: share(c.refusal),
      unparsed: c.unparsed,
    });
  }
  return out;
}
