// A small client for any OpenAI-compatible chat-completions server (vLLM, TGI, llama.cpp's server, Ollama, `scalpel
// serve`), shared by the endpoint backend and the LLM judge. Plain fetch (Node 20), so the library needs no HTTP
// dependency: the two calls it makes (GET /models, POST /chat/completions) are small JSON requests. Every request has
// a timeout; 408, 409, 429, 5xx answers and network failures are retried with exponential backoff (Retry-After when
// the server sends one); at most `concurrency` requests are in flight. Failures that a retry cannot fix (401, a
// missing model, a bad request) and retries that run out become one-line ScalpelErrors naming the endpoint.
import { ScalpelError } from '../errors.js';

export interface EndpointOptions {
  /** The API's base URL, as the openai client takes it: `http://host:port/v1`. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer KEY` when given. */
  apiKey?: string;
  /** What to call it in messages: the flag it came from (`--endpoint URL`, `--judge openai:URL`). */
  label: string;
  /** Requests in flight at once (default 4). */
  concurrency?: number;
  /** Longest wait for one answer, in ms (default $SCALPEL_ENDPOINT_TIMEOUT_MS, else 300 s: a slow server generates). */
  timeoutMs?: number;
  /** Retries after the first attempt (default 4). */
  retries?: number;
  /** First backoff in ms, doubled each retry (default $SCALPEL_ENDPOINT_RETRY_MS, else 500). */
  retryBaseMs?: number;
  /** Told about each retry (what failed, how long until the next attempt). */
  onRetry?: (why: string, waitMs: number) => void;
}

export interface ChatRequest {
  model: string;
  messages: { role: string; content: string }[];
  temperature: number;
  max_tokens: number;
}

export interface ChatAnswer {
  content: string;
  finishReason: string | null;
  promptTokens: number | null;
  completionTokens: number | null;
}

/** Requests and token counts so far, as the server reported them (usage). */
export interface EndpointUsage {
  requests: number;
  retries: number;
  prompt_tokens: number;
  completion_tokens: number;
}

const RETRY_STATUSES = new Set([408, 409, 429, 500, 502, 503, 504]);
/** Longest Retry-After honoured, in ms; a server asking for more gets our own backoff instead. */
const MAX_RETRY_AFTER_MS = 60_000;

function envMs(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v.trim() === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new ScalpelError(`$${name} ${v}: expected a number of milliseconds ≥ 0`);
  return n;
}

/** A base URL checked for scheme and host, without a trailing slash. */
export function checkBaseUrl(url: string, label: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ScalpelError(`${label}: not a URL (expected http://HOST:PORT/v1)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new ScalpelError(`${label}: expected an http:// or https:// URL, got ${u.protocol}`);
  if (u.search !== '' || u.hash !== '')
    throw new ScalpelError(`${label}: the base URL takes no query or fragment (expected http://HOST:PORT/v1)`);
  return url.replace(/\/+$/, '');
}

/** At most `limit` calls of `run` at once; the rest wait in order. */
export class Limiter {
  private active = 0;
  private readonly queue: (() => void)[] = [];
  constructor(readonly limit: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((go) => this.queue.push(go));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.queue.shift()?.();
    }
  }
}

/** The `error.message` of an OpenAI-shaped error body, or the body's first line, quoted and cut short. */
function serverMessage(text: string): string {
  let msg = text;
  try {
    const j = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
    if (typeof j.error === 'string') msg = j.error;
    else if (typeof j.error?.message === 'string') msg = j.error.message;
    else if (typeof j.message === 'string') msg = j.message;
  } catch {
    // not JSON: the text itself
  }
  const line = msg.split('\n')[0]!.trim();
  return JSON.stringify(line.length > 200 ? `${line.slice(0, 200)}…` : line);
}

function networkWhy(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer within ${timeoutMs / 1000} s`;
  const code = e?.cause?.code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ENOTFOUND') return 'host not found';
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return 'connection reset';
  return e?.cause?.message ?? e?.message ?? String(err);
}

/** Thrown when every attempt failed for reasons a retry might have fixed. */
class RetryableFailure extends Error {}

export class OpenAIEndpoint {
  readonly baseUrl: string;
  readonly label: string;
  private readonly limiter: Limiter;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly retryBaseMs: number;
  readonly usage: EndpointUsage = { requests: 0, retries: 0, prompt_tokens: 0, completion_tokens: 0 };

  constructor(private readonly o: EndpointOptions) {
    this.label = o.label;
    this.baseUrl = checkBaseUrl(o.baseUrl, o.label);
    const concurrency = o.concurrency ?? 4;
    if (!Number.isInteger(concurrency) || concurrency < 1)
      throw new ScalpelError(`${o.label}: concurrency ${concurrency}: expected an integer ≥ 1`);
    this.limiter = new Limiter(concurrency);
    this.timeoutMs = o.timeoutMs ?? envMs('SCALPEL_ENDPOINT_TIMEOUT_MS', 300_000);
    this.retries = o.retries ?? 4;
    this.retryBaseMs = o.retryBaseMs ?? envMs('SCALPEL_ENDPOINT_RETRY_MS', 500);
  }

  private headers(json: boolean): Record<string, string> {
    return {
      accept: 'application/json',
      ...(json ? { 'content-type': 'application/json' } : {}),
      ...(this.o.apiKey ? { authorization: `Bearer ${this.o.apiKey}` } : {}),
    };
  }

  /** One request with retries; returns the status and body text of the first answer that is not retryable. */
  private async send(path: string, body: unknown, retries: number): Promise<{ status: number; text: string }> {
    const url = `${this.baseUrl}${path}`;
    for (let attempt = 0; ; attempt++) {
      let why: string;
      let retryAfterMs: number | undefined;
      try {
        this.usage.requests++;
        const res = await fetch(url, {
          method: body === undefined ? 'GET' : 'POST',
          headers: this.headers(body !== undefined),
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        const text = await res.text();
        if (!RETRY_STATUSES.has(res.status)) return { status: res.status, text };
        why = `HTTP ${res.status} ${serverMessage(text)}`;
        const ra = Number(res.headers.get('retry-after'));
        if (Number.isFinite(ra) && ra >= 0 && ra * 1000 <= MAX_RETRY_AFTER_MS) retryAfterMs = ra * 1000;
      } catch (err) {
        why = networkWhy(err, this.timeoutMs);
      }
      if (attempt >= retries)
        throw new RetryableFailure(
          `${this.label}: ${url}: ${why}${retries > 0 ? ` (gave up after ${retries + 1} attempts)` : ''}`,
        );
      const wait = retryAfterMs ?? this.retryBaseMs * 2 ** attempt;
      this.usage.retries++;
      this.o.onRetry?.(why, wait);
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  private failure(status: number, text: string, what: string): ScalpelError {
    if (status === 401 || status === 403)
      return new ScalpelError(
        `${this.label}: HTTP ${status}, the server refused the API key ${serverMessage(text)}; give the key in $OPENAI_API_KEY or name its variable with the key-env flag`,
      );
    return new ScalpelError(`${this.label}: ${what}: HTTP ${status} ${serverMessage(text)}`);
  }

  /**
   * The model ids the server lists (GET /models), or null when it has no such route. The first contact with a
   * server: a refused connection fails here at once (no retries), with the URL, before any work is queued.
   */
  async listModels(): Promise<string[] | null> {
    let r: { status: number; text: string };
    try {
      r = await this.send('/models', undefined, 1);
    } catch (e) {
      if (e instanceof RetryableFailure) throw new ScalpelError(`${e.message}; is the server running at that URL?`);
      throw e;
    }
    if (r.status === 404 || r.status === 405) return null;
    if (r.status !== 200) throw this.failure(r.status, r.text, 'GET /models');
    try {
      const j = JSON.parse(r.text) as { data?: { id?: unknown }[] };
      if (!Array.isArray(j.data)) throw new Error('no data list');
      return j.data.map((m) => m.id).filter((id): id is string => typeof id === 'string');
    } catch {
      throw new ScalpelError(
        `${this.label}: GET /models answered ${serverMessage(r.text)}, not an OpenAI model list; is this the API's base URL (…/v1)?`,
      );
    }
  }

  /** The model to use: `wanted`, checked against the server's list when it has one; else the first it lists. */
  async resolveModel(wanted: string | undefined, flagForModel: string): Promise<string> {
    const listed = await this.listModels();
    if (wanted !== undefined) {
      if (listed !== null && !listed.includes(wanted))
        throw new ScalpelError(
          `${this.label}: the server has no model ${JSON.stringify(wanted)} (it lists: ${listed.join(', ') || 'none'})`,
        );
      return wanted;
    }
    if (listed === null)
      throw new ScalpelError(
        `${this.label}: the server lists no models (no GET /models); name one with ${flagForModel}`,
      );
    if (listed.length === 0) throw new ScalpelError(`${this.label}: the server lists no models`);
    return listed[0]!;
  }

  /** One chat completion, waiting its turn under the concurrency limit. */
  async chat(req: ChatRequest): Promise<ChatAnswer> {
    return await this.limiter.run(async () => {
      let r: { status: number; text: string };
      try {
        r = await this.send('/chat/completions', req, this.retries);
      } catch (e) {
        if (e instanceof RetryableFailure) throw new ScalpelError(e.message);
        throw e;
      }
      if (r.status === 404 && /model/i.test(r.text))
        throw new ScalpelError(
          `${this.label}: the server has no model ${JSON.stringify(req.model)} ${serverMessage(r.text)}`,
        );
      if (r.status !== 200) throw this.failure(r.status, r.text, 'POST /chat/completions');
      return this.readAnswer(r.text);
    });
  }

  private readAnswer(text: string): ChatAnswer {
    let j: {
      choices?: { message?: { content?: unknown }; finish_reason?: unknown }[];
      usage?: { prompt_tokens?: unknown; completion_tokens?: unknown };
    };
    try {
      j = JSON.parse(text);
    } catch {
      throw new ScalpelError(`${this.label}: POST /chat/completions answered ${serverMessage(text)}, not JSON`);
    }
    const choice = j.choices?.[0];
    const content = choice?.message?.content;
    if (!choice?.message || (content !== null && content !== undefined && typeof content !== 'string'))
      throw new ScalpelError(
        `${this.label}: POST /chat/completions answered without choices[0].message.content ${serverMessage(text)}`,
      );
    const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    const promptTokens = num(j.usage?.prompt_tokens);
    const completionTokens = num(j.usage?.completion_tokens);
    this.usage.prompt_tokens += promptTokens ?? 0;
    this.usage.completion_tokens += completionTokens ?? 0;
    return {
      content: typeof content === 'string' ? content : '',
      finishReason: typeof choice.finish_reason === 'string' ? choice.finish_reason : null,
      promptTokens,
      completionTokens,
    };
  }
}

/** The API key: from the variable `keyEnv` names (which must then be set), else $OPENAI_API_KEY, else none. */
export function apiKeyFrom(keyEnv: string | undefined, flag: string): string | undefined {
  if (keyEnv !== undefined) {
    const v = process.env[keyEnv];
    if (v === undefined || v === '') throw new ScalpelError(`${flag} ${keyEnv}: the environment variable is not set`);
    return v;
  }
  const v = process.env['OPENAI_API_KEY'];
  return v === undefined || v === '' ? undefined : v;
}
