// What the method needs from a model, behind one small interface: chat prompts as token ids, last-position
// logits and greedy generation with hooks, and a count of the forward passes spent. The engine (src/engine) is
// the real implementation; tests may substitute a tiny fake.
import type { GateDecision, SequenceGate } from '../engine/scheduler.js';
import type { HookMap } from '../engine/types.js';

export type OnProgress = (done: number, total: number) => void;

export interface Backend {
  readonly numLayers: number;
  readonly width: number;
  readonly vocabSize: number;
  /** The most positions (prompt + new tokens) a sequence may use, when the model says (max_position_embeddings). */
  readonly contextLength?: number;
  /** Prompts per forward pass, if the backend has a preference (the engine's default is 16). */
  readonly batchSize?: number;
  /** The chat prompt for one user instruction, as token ids (ending with the post-instruction tokens). */
  encodePrompt(instruction: string): number[];
  /** The tokens the chat template puts after the user's message (post-instruction tokens). */
  postInstructionTokens(): number[];
  /** The first token the model would produce when its response starts with `text` after `instruction`'s prompt. */
  responseFirstToken(text: string): number;
  decode(ids: readonly number[]): string;
  tokenText(id: number): string;
  lastLogits(prompts: number[][], opts?: { hooks?: HookMap; onProgress?: OnProgress }): Promise<Float32Array[]>;
  generate(prompts: number[][], opts: GenerateRequest): Promise<number[][]>;
  /** A remote backend's cost so far in its own terms (requests, tokens the server reported), for the log. */
  usage?(): string;
}

export interface GenerateRequest {
  maxNewTokens: number;
  hooks?: HookMap;
  /** Each prompt's own hooks, replacing `hooks` (a sweep runs several settings in one pass). */
  promptHooks?: readonly (HookMap | undefined)[];
  /** The hooks apply only to the prompts this gate clears (conditional ablation, gate.ts). */
  gate?: SequenceGate;
  /** Told each gated prompt's decision. */
  onGate?: (index: number, decision: GateDecision) => void;
  /** Sequences generated together (default: the backend's batch size). */
  batchSize?: number;
  onProgress?: OnProgress;
  /** Told each prompt's new tokens as soon as it is done. */
  onResult?: (index: number, tokens: number[]) => void;
  /** Told how many batched forward calls the generation took, when the backend knows. */
  onForwardCalls?: (calls: number) => void;
}

/**
 * Forward passes one greedy sequence costs, as run.json counts them: its prompt's prefill, then one decode step per
 * generated token after the first (the first comes from the prefill); a response that ended at EOS also spent the
 * step that produced EOS.
 */
export function sequencePasses(generated: number, maxNewTokens: number): number {
  return 1 + Math.max(0, Math.min(generated + 1, maxNewTokens) - 1);
}

/** Forward-pass bookkeeping: prompts prefilled and tokens decoded. */
export class PassCounter {
  prefills = 0;
  decodeSteps = 0;
  /** Batched forward calls of the model (each reads the weights once for all its rows); not part of `total`. */
  modelCalls = 0;
  get total(): number {
    return this.prefills + this.decodeSteps;
  }
  reset(): void {
    this.prefills = 0;
    this.decodeSteps = 0;
    this.modelCalls = 0;
  }
  snapshot(): { forward_passes: number; prompt_prefills: number; decode_steps: number; model_forward_calls: number } {
    return {
      forward_passes: this.total,
      prompt_prefills: this.prefills,
      decode_steps: this.decodeSteps,
      model_forward_calls: this.modelCalls,
    };
  }
}

/** Wraps a backend so every call is counted. */
export function counted(inner: Backend, counter: PassCounter): Backend {
  return {
    get numLayers() {
      return inner.numLayers;
    },
    get width() {
      return inner.width;
    },
    get vocabSize() {
      return inner.vocabSize;
    },
    get batchSize() {
      return inner.batchSize;
    },
    get contextLength() {
      return inner.contextLength;
    },
    encodePrompt: (s) => inner.encodePrompt(s),
    postInstructionTokens: () => inner.postInstructionTokens(),
    responseFirstToken: (t) => inner.responseFirstToken(t),
    decode: (ids) => inner.decode(ids),
    tokenText: (id) => inner.tokenText(id),
    async lastLogits(prompts, opts) {
      const out = await inner.lastLogits(prompts, opts);
      counter.prefills += prompts.length;
      // lastLogits packs the prompts into batches of batchSize, one forward call each.
      counter.modelCalls += Math.ceil(prompts.length / (inner.batchSize ?? 16));
      return out;
    },
    async generate(prompts, opts) {
      const out = await inner.generate(prompts, {
        ...opts,
        onForwardCalls: (n) => {
          counter.modelCalls += n;
          opts.onForwardCalls?.(n);
        },
        // A prompt the gate clears is prefilled twice: once unedited for the gate, once under the edit.
        ...(opts.gate
          ? {
              onGate: (i, d) => {
                if (d.apply) counter.prefills++;
                opts.onGate?.(i, d);
              },
            }
          : {}),
      });
      counter.prefills += prompts.length;
      for (const r of out) counter.decodeSteps += sequencePasses(r.length, opts.maxNewTokens) - 1;
      return out;
    },
  };
}
