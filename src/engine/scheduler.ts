// The generation scheduler (continuous batching, after vLLM's scheduler and llama.cpp server's slots): a waiting
// queue and a running batch. Each step admits waiting sequences while the batch has room, runs ONE forward pass for
// every running sequence (prompts being prefilled next to sequences decoding one token each), hands each sequence
// its next token, and retires the finished and the aborted at once. Every sequence carries its own record: tokens,
// KV cache (its own, growing with it, dropped when it ends), hooks (its intervention, or none), sampling and stop
// rule. Nothing request-specific lives in the forward pass.
//
// A sequence's tokens do not depend on what else runs with it: every row of the forward pass is computed from its
// own inputs alone (tested: greedy output is identical alone and among 31 others joining and leaving).
import { ScalpelError } from '../errors.js';
import { KVCache } from './cache.js';
import type { Model, Step } from './model.js';
import { type SamplingParams, type TokenPicker, tokenPicker } from './sampling.js';
import type { HookContext, HookMap } from './types.js';

/**
 * A per-sequence switch for `hooks` (conditional intervention): the gate reads one hook point's block during an
 * unedited prefill of the prompt and decides once whether the sequence runs under its hooks. The decision then holds
 * for every decode step. A sequence it clears is prefilled again under its hooks (the unedited pass's token is
 * dropped), so a cleared sequence equals one submitted with the hooks alone, and a sequence it does not clear equals
 * one submitted without them.
 */
export interface SequenceGate {
  /** Hook name whose prefill block the gate reads, e.g. 'blocks.3.hook_resid_pre'. */
  point: string;
  /** The decision from that block ([1, seq, width], the whole unedited prompt); must not edit `act`. */
  decide(act: Float32Array, ctx: HookContext): GateDecision;
}

export interface GateDecision {
  /** Whether the sequence runs under its hooks. */
  apply: boolean;
  /** The gate's own number (e.g. a probe's harmfulness score), reported in the result. */
  score: number;
}

export interface SequenceRequest {
  /** Prompt token ids (at least one). */
  prompt: readonly number[];
  /** Stop after this many new tokens. */
  maxNewTokens: number;
  /** This sequence's intervention as engine hooks; other sequences in the batch are not affected. */
  hooks?: HookMap;
  /** Applies `hooks` only when this gate clears the sequence at the end of an unedited prefill. */
  gate?: SequenceGate;
  /** Greedy by default. */
  sampling?: SamplingParams;
  /** Generation stops at any of these; the stop token is not returned. */
  stopTokenIds?: readonly number[];
  /** Generation stops once the decoded new text contains one of these (needs the scheduler's `decode`). */
  stopStrings?: readonly string[];
  /** Aborting ends the sequence at once: it leaves the batch and its cache is released. */
  signal?: AbortSignal;
  /** Told each new token as it is chosen. */
  onToken?: (id: number) => void;
  /** Told the result as soon as the sequence ends (before the result promise settles). */
  onDone?: (result: SequenceResult) => void;
}

export type FinishReason = 'stop' | 'length' | 'abort';

export interface SequenceResult {
  /** New tokens (without the stop token). */
  tokens: number[];
  finishReason: FinishReason;
  /** The stop string that ended generation, if one did. */
  stopString?: string;
  promptTokens: number;
  /** The gate's decision, when the request had a gate. */
  gate?: GateDecision;
}

export interface SchedulerOptions {
  /** Sequences in the running batch at once (default 16). */
  maxSequences?: number;
  /** Sequences allowed to wait for room; a submit beyond it throws SchedulerFullError (default: unbounded). */
  maxWaiting?: number;
  /** Token ids → text, for stop strings. */
  decode?: (ids: readonly number[]) => string;
}

/** Thrown by submit when the waiting queue is full (a server answers 429). */
export class SchedulerFullError extends ScalpelError {}

/** One submitted sequence: its tokens as a stream (for await … of handle) and its result as a promise. */
export class SequenceHandle implements AsyncIterable<number> {
  readonly result: Promise<SequenceResult>;
  private resolve!: (r: SequenceResult) => void;
  private reject!: (e: unknown) => void;
  private error: unknown;
  private readonly queued: number[] = [];
  private wake: (() => void) | undefined;
  private ended = false;

  constructor(readonly id: number) {
    this.result = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    // A caller that only iterates the tokens still hears of a failure through the iterator.
    this.result.catch(() => {});
  }

  /** @internal */
  push(token: number): void {
    this.queued.push(token);
    this.wake?.();
  }

  /** @internal */
  finish(r: SequenceResult): void {
    this.ended = true;
    this.resolve(r);
    this.wake?.();
  }

  /** @internal */
  fail(e: unknown): void {
    this.ended = true;
    this.error = e;
    this.reject(e);
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<number> {
    for (;;) {
      while (this.queued.length > 0) yield this.queued.shift()!;
      if (this.ended) {
        if (this.error !== undefined) throw this.error;
        return;
      }
      await new Promise<void>((res) => {
        this.wake = res;
      });
      this.wake = undefined;
    }
  }
}

/** The scheduler's record of one sequence. */
interface Sequence {
  handle: SequenceHandle;
  request: SequenceRequest;
  /** Prompt followed by the new tokens. */
  tokens: number[];
  generated: number[];
  /** Set when the sequence has left the scheduler. */
  done: boolean;
  /** Positions already in the cache. */
  cached: number;
  cache: KVCache | null;
  pick: TokenPicker;
  stopIds: Set<number>;
  /** Longest stop string, in characters: how much decoded tail to search. */
  stopTail: number;
  onAbort?: () => void;
  /** The hooks the sequence runs under now (a gated sequence has none until its gate clears it). */
  hooks: HookMap | undefined;
  /** A gated sequence's decision, once its unedited prefill has run. */
  gate?: GateDecision;
}

export class Scheduler {
  readonly maxSequences: number;
  readonly maxWaiting: number;
  private readonly waitingQueue: Sequence[] = [];
  private readonly runningBatch: Sequence[] = [];
  private nextId = 0;
  private looping = false;
  private readonly longRopeMax: number;

  constructor(
    readonly model: Model,
    readonly options: SchedulerOptions = {},
  ) {
    this.maxSequences = options.maxSequences ?? 16;
    this.maxWaiting = options.maxWaiting ?? Number.POSITIVE_INFINITY;
    if (!Number.isInteger(this.maxSequences) || this.maxSequences < 1)
      throw new ScalpelError(`maxSequences must be a positive integer, got ${options.maxSequences}`);
    if (!(this.maxWaiting >= 0)) throw new ScalpelError(`maxWaiting must be ≥ 0, got ${options.maxWaiting}`);
    this.longRopeMax = model.args.layers.find((l) => l.rope.long)?.rope.long?.originalMax ?? -1;
  }

  /** Sequences in the running batch. */
  get running(): number {
    return this.runningBatch.length;
  }

  /** Sequences waiting for room in the batch. */
  get waiting(): number {
    return this.waitingQueue.length;
  }

  /** Bytes held by the KV caches of live sequences. */
  get cacheBytes(): number {
    return this.runningBatch.reduce((n, s) => n + (s.cache?.bytes ?? 0), 0);
  }

  /**
   * Queues a sequence. Bad requests throw a one-line ScalpelError here, before anything runs. The scheduler runs
   * its own loop on the event loop (one step per turn, so other work such as HTTP requests goes on between steps);
   * a caller may also drive it synchronously with step() / drain().
   */
  submit(request: SequenceRequest): SequenceHandle {
    this.check(request);
    if (this.runningBatch.length >= this.maxSequences && this.waitingQueue.length >= this.maxWaiting)
      throw new SchedulerFullError(`the scheduler's queue is full (${this.maxWaiting} waiting); try again later`);
    const handle = new SequenceHandle(this.nextId++);
    const strings = request.stopStrings ?? [];
    const seq: Sequence = {
      handle,
      request,
      tokens: [...request.prompt],
      generated: [],
      done: false,
      cached: 0,
      cache: null,
      pick: tokenPicker(request.sampling),
      stopIds: new Set(request.stopTokenIds ?? []),
      stopTail: Math.max(0, ...strings.map((s) => s.length)),
      hooks: request.gate ? undefined : request.hooks,
    };
    const signal = request.signal;
    if (request.maxNewTokens === 0 || signal?.aborted) {
      this.retire(seq, request.maxNewTokens === 0 ? 'length' : 'abort');
      return handle;
    }
    if (signal) {
      seq.onAbort = () => this.retire(seq, 'abort');
      signal.addEventListener('abort', seq.onAbort, { once: true });
    }
    if (this.runningBatch.length < this.maxSequences) this.runningBatch.push(seq);
    else this.waitingQueue.push(seq);
    this.schedule();
    return handle;
  }

  /** Runs steps until no sequence is left (synchronously). */
  drain(): void {
    while (this.step());
  }

  /**
   * One forward pass for every running sequence, after admitting waiting ones while there is room. Returns whether
   * any sequence is still live afterwards.
   */
  step(): boolean {
    while (this.runningBatch.length < this.maxSequences && this.waitingQueue.length > 0) {
      this.runningBatch.push(this.waitingQueue.shift()!);
    }
    const batch = this.runningBatch.slice();
    if (batch.length === 0) return false;
    const steps = batch.map((s) => this.nextStep(s));
    const V = this.model.vocabSize;
    const logits = logitsBuffer(this.model, batch.length * V);
    this.model.forwardMany(steps, logits);
    // Every token is picked before any callback runs: a callback may drive another scheduler of this model, which
    // writes the same logits buffer.
    const picked = batch.map((s, b) => s.pick(logits, b * V, (b + 1) * V));
    batch.forEach((s, b) => {
      if (s.done) return; // aborted by another sequence's callback during this step
      s.cached = s.tokens.length;
      if (s.request.gate && !s.gate) {
        const decision = steps[b]!.gateDecision;
        if (!decision) throw new ScalpelError(`gate: the hook point ${s.request.gate.point} never ran in the prefill`);
        s.gate = decision;
        if (decision.apply) {
          // Cleared: the prompt is prefilled again under the hooks; the unedited pass's cache and token are dropped.
          s.hooks = s.request.hooks;
          s.cached = 0;
          s.cache = null;
          return;
        }
      }
      this.advance(s, picked[b]!);
    });
    return this.runningBatch.length + this.waitingQueue.length > 0;
  }

  /** The forward step that brings a sequence's cache up to date with its tokens. */
  private nextStep(s: Sequence): Step & { gateDecision?: GateDecision } {
    // LongRoPE (Phi-3): a sequence that outgrows original_max_position_embeddings is recomputed whole with the long
    // frequencies, as transformers' generate does.
    const from = s.cached === this.longRopeMax ? 0 : s.cached;
    const tokens = Int32Array.from(s.tokens.slice(from));
    if (!s.cache) {
      const expected = s.tokens.length + Math.min(s.request.maxNewTokens, 64);
      s.cache = new KVCache(this.model.args, 1, expected);
    }
    s.cache.reserve(s.tokens.length);
    const step: Step & { gateDecision?: GateDecision } = {
      tokens,
      batch: 1,
      seq: tokens.length,
      start: from,
      firstReal: ZERO,
      slots: ZERO,
      cache: s.cache,
      hooks: s.hooks,
    };
    const gate = s.request.gate;
    if (gate && !s.gate) {
      // The unedited prefill: no hooks but the gate's reader, whose decision the step carries back.
      step.hooks = new Map([
        [
          gate.point,
          [
            (act, ctx) => {
              step.gateDecision = gate.decide(act, ctx);
            },
          ],
        ],
      ]);
    }
    return step;
  }

  /** Takes the chosen token: a stop token ends the sequence; otherwise it is kept, told, and checked for limits. */
  private advance(s: Sequence, token: number): void {
    if (s.stopIds.has(token)) {
      this.retire(s, 'stop');
      return;
    }
    s.tokens.push(token);
    s.generated.push(token);
    s.handle.push(token);
    s.request.onToken?.(token);
    if (s.stopTail > 0) {
      // Every token decodes to at least one character, so the last stopTail tokens hold any stop string that the
      // newest token completed.
      const tail = this.options.decode!(s.generated.slice(-s.stopTail - 1));
      const hit = s.request.stopStrings!.find((t) => tail.includes(t));
      if (hit !== undefined) {
        this.retire(s, 'stop', hit);
        return;
      }
    }
    if (s.generated.length >= s.request.maxNewTokens) this.retire(s, 'length');
  }

  /** Ends a sequence: out of the queue or batch, cache released, result delivered. */
  private retire(s: Sequence, reason: FinishReason, stopString?: string): void {
    if (s.done) return;
    this.remove(s);
    const result: SequenceResult = {
      tokens: s.generated,
      finishReason: reason,
      promptTokens: s.request.prompt.length,
      ...(stopString !== undefined ? { stopString } : {}),
      ...(s.gate ? { gate: s.gate } : {}),
    };
    s.request.onDone?.(result);
    s.handle.finish(result);
  }

  /** Takes a sequence out of the queue or batch and releases its cache. */
  private remove(s: Sequence): void {
    s.done = true;
    const w = this.waitingQueue.indexOf(s);
    if (w >= 0) this.waitingQueue.splice(w, 1);
    const r = this.runningBatch.indexOf(s);
    if (r >= 0) this.runningBatch.splice(r, 1);
    s.cache = null;
    if (s.onAbort) s.request.signal?.removeEventListener('abort', s.onAbort);
  }

  /** Starts the event-loop driver if it is not running: one step per turn until nothing is left. */
  private schedule(): void {
    if (this.looping) return;
    this.looping = true;
    const turn = () => {
      let more: boolean;
      try {
        more = this.step();
      } catch (e) {
        // A failing pass (a hook that throws, memory) fails the sequences in it, not the process.
        for (const s of [...this.runningBatch]) {
          this.remove(s);
          s.handle.fail(e);
        }
        more = this.waitingQueue.length > 0;
      }
      if (more) setImmediate(turn);
      else this.looping = false;
    };
    setImmediate(turn);
  }

  private check(r: SequenceRequest): void {
    const V = this.model.vocabSize;
    if (r.prompt.length === 0) throw new ScalpelError('prompt is empty; a sequence needs at least one token');
    for (const t of r.prompt)
      if (!Number.isInteger(t) || t < 0 || t >= V)
        throw new ScalpelError(`prompt: token id ${t} is outside the vocabulary [0, ${V})`);
    if (!Number.isInteger(r.maxNewTokens) || r.maxNewTokens < 0)
      throw new ScalpelError(`maxNewTokens must be a non-negative integer, got ${r.maxNewTokens}`);
    const context = this.model.args.contextLength;
    if (context !== undefined && r.prompt.length + r.maxNewTokens > context)
      throw new ScalpelError(contextMessage(r.prompt.length, r.maxNewTokens, context, 'max new tokens'));
    if (r.stopStrings?.length) {
      if (!this.options.decode) throw new ScalpelError('stopStrings need a scheduler made with a decode function');
      if (r.stopStrings.some((s) => s === '')) throw new ScalpelError('stopStrings: expected non-empty strings');
    }
  }
}

const ZERO = Int32Array.of(0);

/**
 * The one-line error for a sequence that would outgrow the model: positions past max_position_embeddings were never
 * trained (RoPE extrapolates badly), so the request is refused rather than answered with noise. `newTokens` names
 * where the number of new tokens came from (a flag, a request field).
 */
export function contextMessage(promptTokens: number, maxNew: number, context: number, newTokens: string): string {
  return `the prompt's ${promptTokens} tokens plus ${newTokens} ${maxNew} need ${promptTokens + maxNew} positions, more than the model's context of ${context} (max_position_embeddings)`;
}

/** The logits of one step, one buffer per model shared by its schedulers (steps never overlap: JS runs one). */
const logitsBuffers = new WeakMap<Model, Float32Array>();
function logitsBuffer(model: Model, size: number): Float32Array {
  let buf = logitsBuffers.get(model);
  if (!buf || buf.length < size) {
    buf = new Float32Array(size);
    logitsBuffers.set(model, buf);
  }
  return buf;
}
