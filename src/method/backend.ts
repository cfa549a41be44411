// What the method needs from a model, behind one small interface: chat prompts as token ids, last-position
// logits and greedy generation with hooks, and a count of the forward passes spent. The engine (src/engine) is
// the real implementation; tests may substitute a tiny fake.
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
  generate(
    prompts: number[][],
    opts: { maxNewTokens: number; hooks?: HookMap; onProgress?: OnProgress },
  ): Promise<number[][]>;
}

/** Forward-pass bookkeeping: prompts prefilled and tokens decoded. */
export class PassCounter {
  prefills = 0;
  decodeSteps = 0;
  get total(): number {
    return this.prefills + this.decodeSteps;
  }
  reset(): void {
    this.prefills = 0;
    this.decodeSteps = 0;
  }
  snapshot(): { forward_passes: number; prompt_prefills: number; decode_steps: number } {
    return { forward_passes: this.total, prompt_prefills: this.prefills, decode_steps: this.decodeSteps };
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
      return out;
    },
    async generate(prompts, opts) {
      const out = await inner.generate(prompts, opts);
      counter.prefills += prompts.length;
      // Each generated token after the first comes from one decode step; the first comes from the prefill. A
      // response that ended at EOS also spent the step that produced EOS.
      for (const r of out) counter.decodeSteps += Math.max(0, Math.min(r.length + 1, opts.maxNewTokens) - 1);
      return out;
    },
  };
}
