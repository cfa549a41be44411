// `scalpel serve`: an OpenAI-compatible HTTP server (Fastify) over one loaded model. GET /health, GET /v1/models,
// POST /v1/chat/completions and POST /v1/completions, each whole or streamed as server-sent events in OpenAI's chunk
// format. Every request goes into ONE scheduler, so concurrent requests share forward passes, each with its own
// hooks (its model alias and `scalpel` field pick the intervention). Bodies are checked by one JSON schema per route;
// every failure is answered in OpenAI's error shape. A client that goes away aborts its sequence at once.
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { type IncomingMessage, STATUS_CODES, createServer as createHttpServer } from 'node:http';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { ScalpelError, escapeControls, quoteUntrusted } from '../errors.js';
import {
  Scheduler,
  SchedulerFullError,
  contextMessage,
  type SequenceGate,
  type SequenceResult,
} from '../engine/scheduler.js';
import type { SamplingParams } from '../engine/sampling.js';
import type { LoadedModel } from '../model/load.js';
import type { RunJson } from '../method/rundir.js';
import { encodeChat } from '../tokenizer/chat.js';
import { TextStream } from '../tokenizer/stream.js';
import { ApiError } from './api-error.js';
import { type ChatBody, type CompletionBody, chatSchema, completionSchema } from './schemas.js';
import { Variants } from './variants.js';

/** Largest request body (bytes); a larger one is answered 413. */
export const DEFAULT_BODY_LIMIT = 1024 * 1024;
/** max_tokens when a request gives none: OpenAI's 16 for completions; for chat, a bounded answer. */
const DEFAULT_MAX_TOKENS = { chat: 256, completion: 16 } as const;

export interface ServeOptions {
  loaded: LoadedModel;
  /** The served model's name (the folder's basename or the Hub id); the aliases are built on it. */
  name: string;
  /** A finished run: its intervention is the default model and the base of the λ aliases. */
  run?: { dir: string; json: RunJson };
  /** The run's gate (`serve --gate`): every edited request is edited only when the gate clears its prompt. */
  gate?: SequenceGate;
  /** Require `Authorization: Bearer <apiKey>` on every route but /health. */
  apiKey?: string;
  /** Sequences generating at once (the scheduler's batch, default 16). */
  maxSequences?: number;
  /** Requests allowed to wait for room; beyond it a request is answered 429 (default 64). */
  maxQueue?: number;
  bodyLimit?: number;
  /** Where the access log goes, one line per request (default: stderr). */
  log?: (line: string) => void;
}

export interface ScalpelServer {
  app: FastifyInstance;
  scheduler: Scheduler;
  variants: Variants;
  /** Starts listening (127.0.0.1 and port 8000 by default; port 0 picks a free one); returns the base URL. */
  listen(where?: { host?: string; port?: number }): Promise<string>;
  /** Stops accepting connections and resolves once the requests in flight have been answered. */
  close(): Promise<void>;
}

type Kind = 'chat' | 'completion';
/** What the access log says about a request beyond its method, path and status. */
interface RequestNote {
  model?: string;
  tokens?: number;
}

export function createServer(opts: ServeOptions): ScalpelServer {
  const { loaded } = opts;
  const { tokenizer, model } = loaded;
  const decode = (ids: readonly number[]) => tokenizer.decode(ids, { skipSpecialTokens: true });
  const scheduler = new Scheduler(model, {
    maxSequences: opts.maxSequences ?? 16,
    maxWaiting: opts.maxQueue ?? 64,
    decode,
  });
  const variants = new Variants(opts.name, model.numLayers, opts.run);
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const notes = new WeakMap<IncomingMessage, RequestNote>();

  const app = Fastify({
    bodyLimit: opts.bodyLimit ?? DEFAULT_BODY_LIMIT,
    logger: false,
    // A wrong type is an error, not something to convert ("max_tokens": "5" is a 400, as OpenAI answers it).
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    schemaErrorFormatter: (errors) => new Error(validationMessage(errors[0])),
    clientErrorHandler: answerClientError,
    // Node answers an HTTP/1.1 request without a Host header with a bare 400 before Fastify sees it; the check is
    // made in onRequest below instead, so that answer too comes in the one error shape.
    serverFactory: (handler) => createHttpServer({ requireHostHeader: false }, handler),
  });
  // Node answers an Expect header other than 100-continue itself, with an empty 417: answered in the one shape.
  app.server.on('checkExpectation', (_request, response) => {
    const body = JSON.stringify(new ApiError(417, 'expect: only 100-continue is supported', 'expect').body());
    response.writeHead(417, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    response.end(body);
  });

  // Access log: one line per request once its response is over (answered, streamed, or abandoned by the client).
  app.addHook('onRequest', async (request, reply) => {
    const t0 = performance.now();
    const note: RequestNote = {};
    notes.set(request.raw, note);
    reply.raw.once('close', () => {
      const ms = (performance.now() - t0).toFixed(0);
      const status = reply.raw.writableFinished ? reply.raw.statusCode : 499; // 499: the client closed first
      // The URL and model name are the client's text: quoted, with control characters as \xNN.
      const model = note.model !== undefined ? ` model=${quoteUntrusted(note.model, 256)}` : '';
      const url = quoteUntrusted(request.url, 2048);
      log(`${escapeControls(request.method)} ${url} ${status}${model} tokens=${note.tokens ?? 0} ${ms}ms`);
    });
  });

  app.addHook('onRequest', async (request) => {
    if (request.raw.httpVersion === '1.1' && request.headers.host === undefined)
      throw new ApiError(400, 'the request has no Host header (HTTP/1.1 requires one)', null, 'bad_request');
  });

  if (opts.apiKey !== undefined) {
    const expected = digest(`Bearer ${opts.apiKey}`);
    app.addHook('onRequest', async (request) => {
      if (request.url === '/health') return;
      const given = request.headers.authorization;
      if (given === undefined || !timingSafeEqual(digest(given), expected))
        throw new ApiError(401, 'Incorrect or missing API key (Authorization: Bearer KEY)', null, 'invalid_api_key');
    });
  }

  app.setErrorHandler((err: FastifyError, _request, reply) => {
    const api = toApiError(err);
    if (api.status >= 500) process.stderr.write(`scalpel serve: ${escapeControls(err.stack ?? err.message, '\n')}\n`);
    reply.status(api.status).send(api.body());
  });
  app.setNotFoundHandler((request, reply) => {
    const api = new ApiError(404, `no route ${request.method} ${quoteUntrusted(request.url)}`, null, 'not_found');
    reply.status(404).send(api.body());
  });

  app.get('/health', async () => ({ status: 'ok', running: scheduler.running, waiting: scheduler.waiting }));
  app.get('/v1/models', async () => ({
    object: 'list',
    data: variants.aliases().map((id) => ({ id, object: 'model', created: 0, owned_by: 'scalpel' })),
  }));

  /** The shared body of both generation routes. */
  async function complete(kind: Kind, body: ChatBody | CompletionBody, raw: IncomingMessage, reply: FastifyReply) {
    const note = notes.get(raw);
    if (note) note.model = body.model;
    const variant = variants.resolve(body.model, body.scalpel);
    const hooks = await variants.hooks(variant).catch((e: unknown) => {
      throw e instanceof ScalpelError ? new ApiError(400, e.message, 'scalpel') : e;
    });
    const prompt = kind === 'chat' ? chatPrompt(body as ChatBody) : completionPrompt(body as CompletionBody);
    if (prompt.length === 0) throw new ApiError(400, 'the prompt tokenizes to no tokens', 'prompt');
    const stops = body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
    // The prompt and its answer must fit the model's context: a request that asks for more is refused (OpenAI's
    // context_length_exceeded); one that asks for nothing gets the default, cut to what fits.
    const context = model.args.contextLength ?? Number.POSITIVE_INFINITY;
    const promptField = kind === 'chat' ? 'messages' : 'prompt';
    if (prompt.length >= context)
      throw new ApiError(
        400,
        `the prompt's ${prompt.length} tokens fill the model's context of ${context} (max_position_embeddings); shorten it`,
        promptField,
        'context_length_exceeded',
      );
    const asked = (kind === 'chat' ? (body as ChatBody).max_completion_tokens : undefined) ?? body.max_tokens;
    const maxTokens = asked ?? Math.min(DEFAULT_MAX_TOKENS[kind], context - prompt.length);
    if (prompt.length + maxTokens > context)
      throw new ApiError(
        400,
        contextMessage(prompt.length, maxTokens, context, 'max_tokens'),
        'max_tokens',
        'context_length_exceeded',
      );
    const sampling: SamplingParams = {
      temperature: body.temperature ?? 1,
      topP: body.top_p ?? 1,
      ...(body.seed != null ? { seed: body.seed } : {}),
    };
    // The response's end, or the client's: a client gone before the end aborts its sequence, which frees the slot.
    const abort = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) abort.abort();
    });
    if (reply.raw.destroyed) abort.abort(); // gone while the hooks were being built
    let handle: ReturnType<Scheduler['submit']>;
    try {
      handle = scheduler.submit({
        prompt,
        maxNewTokens: maxTokens,
        hooks,
        ...(hooks && opts.gate ? { gate: opts.gate } : {}),
        sampling,
        stopTokenIds: body.ignore_eos ? [] : loaded.eosTokenIds,
        stopStrings: stops,
        signal: abort.signal,
        onDone: (r) => {
          if (note) note.tokens = r.tokens.length;
        },
      });
    } catch (e) {
      if (e instanceof SchedulerFullError) throw new ApiError(429, e.message, null, 'queue_full');
      if (e instanceof ScalpelError) throw new ApiError(400, e.message);
      throw e;
    }
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID()}`;
    const head = { id, created: Math.floor(Date.now() / 1000), model: body.model };
    const text = new TextStream(decode, stops);

    if (!body.stream) {
      const result = await handle.result;
      if (result.finishReason === 'abort') return reply.hijack(); // nobody is listening
      text.push(...result.tokens);
      text.end();
      const finish = finishReason(result);
      const choice =
        kind === 'chat'
          ? { index: 0, message: { role: 'assistant', content: text.text }, finish_reason: finish, logprobs: null }
          : { index: 0, text: text.text, finish_reason: finish, logprobs: null };
      return {
        ...head,
        object: kind === 'chat' ? 'chat.completion' : 'text_completion',
        choices: [choice],
        usage: usage(result),
      };
    }

    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const send = (data: unknown) => {
      if (!res.destroyed) res.write(`data: ${JSON.stringify(data)}\n\n`);
    };
    const chunk = (piece: string | null, finish: string | null, role?: boolean) =>
      send({
        ...head,
        object,
        choices: [
          kind === 'chat'
            ? {
                index: 0,
                delta: piece === null ? {} : { ...(role ? { role: 'assistant' } : {}), content: piece },
                finish_reason: finish,
                logprobs: null,
              }
            : { index: 0, text: piece ?? '', finish_reason: finish, logprobs: null },
        ],
      });
    // Backpressure: once the socket holds more than it will take, wait for the client to read before writing the
    // next piece (the sequence's tokens wait in its handle meanwhile), so a slow reader costs its own connection's
    // buffer and not the server's memory. A client that is gone ends the wait too.
    const drained = () =>
      !res.writableNeedDrain || res.destroyed
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            const done = () => {
              res.off('drain', done);
              res.off('close', done);
              resolve();
            };
            res.on('drain', done);
            res.on('close', done);
          });
    try {
      if (kind === 'chat') chunk('', null, true);
      for await (const token of handle) {
        const fresh = text.push(token);
        if (fresh) {
          chunk(fresh, null);
          await drained();
        }
      }
      const result = await handle.result;
      if (result.finishReason === 'abort') return;
      const rest = text.end();
      if (rest) chunk(rest, null);
      chunk(null, finishReason(result));
      if (body.stream_options?.include_usage) send({ ...head, object, choices: [], usage: usage(result) });
      if (!res.destroyed) res.end('data: [DONE]\n\n');
    } catch (e) {
      // Past the headers the status is sent; the failure goes into the stream in the error shape, then it ends.
      const api = toApiError(e);
      if (api.status >= 500)
        process.stderr.write(`scalpel serve: ${escapeControls((e as Error).stack ?? String(e), '\n')}\n`);
      send(api.body());
      if (!res.destroyed) res.end('data: [DONE]\n\n');
    }
  }

  function chatPrompt(body: ChatBody): number[] {
    if (!loaded.chat) throw new ApiError(400, `${opts.name} has no chat template; use /v1/completions`, 'messages');
    const messages = body.messages.map((m) => ({
      role: m.role,
      content: typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join(''),
    }));
    return encodeChat(tokenizer, loaded.chat, messages, { addGenerationPrompt: true });
  }

  function completionPrompt(body: CompletionBody): number[] {
    return tokenizer.encode(typeof body.prompt === 'string' ? body.prompt : body.prompt[0]);
  }

  app.post<{ Body: ChatBody }>('/v1/chat/completions', { schema: { body: chatSchema } }, (request, reply) =>
    complete('chat', request.body, request.raw, reply),
  );
  app.post<{ Body: CompletionBody }>('/v1/completions', { schema: { body: completionSchema } }, (request, reply) =>
    complete('completion', request.body, request.raw, reply),
  );

  return {
    app,
    scheduler,
    variants,
    async listen(where = {}) {
      await app.listen({ host: where.host ?? '127.0.0.1', port: where.port ?? 8000 });
      const address = app.server.address();
      if (address === null || typeof address === 'string') return String(address);
      const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      return `http://${host}:${address.port}`;
    },
    close: () => app.close(),
  };
}

/**
 * A request Node's HTTP parser rejects before any route sees it (a malformed request line or header, headers too
 * large, a timeout): answered in OpenAI's error shape like every other failure, then the connection is closed.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, message] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'the request took too long to arrive']
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'the request headers are too large']
        : [400, 'the request is not valid HTTP'];
  const body = JSON.stringify(new ApiError(status, message, null, 'bad_request').body());
  if (socket.writable)
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  socket.destroy();
}

function finishReason(r: SequenceResult): 'stop' | 'length' {
  return r.finishReason === 'length' ? 'length' : 'stop';
}

function usage(r: SequenceResult) {
  const completion = r.tokens.length;
  return { prompt_tokens: r.promptTokens, completion_tokens: completion, total_tokens: r.promptTokens + completion };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

interface SchemaError {
  instancePath?: string;
  message?: string;
  keyword?: string;
  params?: Record<string, unknown>;
}

/** The dotted name of the field a schema error is about: `/scalpel/lambda` → `scalpel.lambda`. */
function errorParam(e: SchemaError | undefined): string | null {
  if (!e) return null;
  const parts = (e.instancePath ?? '').split('/').filter((p) => p !== '');
  if (e.keyword === 'required' && typeof e.params?.['missingProperty'] === 'string')
    parts.push(e.params['missingProperty']);
  return parts.length > 0 ? parts.join('.') : null;
}

function validationMessage(e: SchemaError | undefined): string {
  const param = errorParam(e);
  const what = e?.message ?? 'is not valid';
  if (param === 'n') return 'n: only n = 1 is supported';
  return param === null ? `the request body ${what}` : `${param}: ${what}`;
}

/** Any failure → the status and OpenAI-shaped body it is answered with. */
function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof SchedulerFullError) return new ApiError(429, err.message, null, 'queue_full');
  if (err instanceof ScalpelError) return new ApiError(400, err.message);
  const e = err as FastifyError & { validation?: SchemaError[] };
  if (e.validation) return new ApiError(400, e.message, errorParam(e.validation[0]));
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return new ApiError(413, 'the request body is too large', null, 'request_too_large');
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500)
    return new ApiError(e.statusCode, e.message);
  return new ApiError(500, 'internal server error');
}
