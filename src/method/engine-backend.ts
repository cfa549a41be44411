// The Backend over Scalpel's own engine (src/model/load.ts, src/engine/generate.ts).
import { loadModel, type LoadedModel } from '../model/load.js';
import { DEFAULT_BATCH_SIZE, greedyGenerate, lastLogits } from '../engine/generate.js';
import { chatMessages, encodeChat, postInstructionSuffix } from '../tokenizer/chat.js';
import { ScalpelError } from '../errors.js';
import type { Backend } from './backend.js';

export interface EngineBackendOptions {
  batchSize?: number;
  system?: string;
}

export function engineBackend(m: LoadedModel, opts: EngineBackendOptions = {}): Backend {
  const chat = m.chat;
  if (!chat)
    throw new ScalpelError(
      `${m.dir}: the model has no chat template (chat_template.jinja or tokenizer_config.json chat_template)`,
    );
  let suffix: number[] | undefined;
  const encodePrompt = (s: string): number[] =>
    encodeChat(m.tokenizer, chat, chatMessages(s, opts.system), { addGenerationPrompt: true });
  const probeBase = 'Hello';
  return {
    numLayers: m.model.numLayers,
    width: m.model.width,
    vocabSize: m.model.vocabSize,
    contextLength: m.model.args.contextLength,
    batchSize: opts.batchSize ?? DEFAULT_BATCH_SIZE,
    encodePrompt,
    postInstructionTokens() {
      suffix ??= postInstructionSuffix(m.tokenizer, chat, { system: opts.system });
      return suffix;
    },
    responseFirstToken(text: string): number {
      const prompt = chat.render(chatMessages(probeBase, opts.system), { addGenerationPrompt: true });
      const base = m.tokenizer.encode(prompt, { addSpecialTokens: false });
      const full = m.tokenizer.encode(prompt + text, { addSpecialTokens: false });
      for (let i = 0; i < base.length; i++) {
        if (full[i] !== base[i]) return full[i]!; // the response merged with the prompt's last token: take the merge
      }
      const id = full[base.length];
      if (id === undefined) throw new ScalpelError(`cannot tokenize the response start "${text}"`);
      return id;
    },
    decode: (ids) => m.tokenizer.decode(ids, { skipSpecialTokens: true }),
    tokenText: (id) => m.tokenizer.decode([id], { skipSpecialTokens: false }),
    async lastLogits(prompts, o = {}) {
      return await lastLogits(m.model, prompts, {
        hooks: o.hooks,
        batchSize: opts.batchSize,
        onProgress: o.onProgress,
      });
    },
    async generate(prompts, o) {
      return await greedyGenerate(m.model, prompts, {
        maxNewTokens: o.maxNewTokens,
        eosTokenIds: m.eosTokenIds,
        hooks: o.hooks,
        promptHooks: o.promptHooks,
        gate: o.gate,
        onGate: o.onGate,
        batchSize: o.batchSize ?? opts.batchSize,
        onProgress: o.onProgress,
        onResult: o.onResult,
        onForwardCalls: o.onForwardCalls,
      });
    },
  };
}

export async function loadEngineBackend(
  dir: string,
  opts: EngineBackendOptions = {},
): Promise<{ backend: Backend; loaded: LoadedModel }> {
  const loaded = await loadModel(dir);
  return { backend: engineBackend(loaded, opts), loaded };
}
