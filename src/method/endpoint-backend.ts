// The Backend over an OpenAI-compatible server (`scalpel eval --endpoint URL`): generation only, for models too big
// for this machine or served elsewhere. The server owns the tokenizer and the chat template, so this backend sends
// messages, never token ids: its "tokens" are the Unicode code points of the text (encodePrompt turns the instruction
// into them, generate turns them back into the user's message, and the response comes back the same way), which lets
// evaluateSets run unchanged. Greedy is temperature 0, max_tokens is --max-new-tokens, and the server stops at its
// model's end-of-sequence tokens, as the local engine does. Extraction and selection need activations and logits, which
// a chat API does not give: those calls fail with one line.
import { ScalpelError } from '../errors.js';
import { chatMessages } from '../tokenizer/chat.js';
import type { Backend } from './backend.js';
import { type EndpointUsage, OpenAIEndpoint, type EndpointOptions } from './openai-endpoint.js';

export interface EndpointBackendOptions extends EndpointOptions {
  /** The model id on the server; default: the first one it lists. */
  model?: string;
  /** System prompt of every conversation, as the engine backend's. */
  system?: string;
}

/** An endpoint backend, with the usage the server reported (requests, prompt and completion tokens). */
export interface EndpointBackend extends Backend {
  readonly model: string;
  readonly endpointUsage: EndpointUsage;
}

const toPoints = (s: string): number[] => Array.from(s, (c) => c.codePointAt(0)!);

function fromPoints(ids: readonly number[]): string {
  let s = '';
  // In slices: String.fromCodePoint(...ids) would overflow the stack on a very long text.
  for (let i = 0; i < ids.length; i += 8192) s += String.fromCodePoint(...ids.slice(i, i + 8192));
  return s;
}

/** Connects (GET /models checks the server and the model) and returns the backend. */
export async function openEndpointBackend(o: EndpointBackendOptions): Promise<EndpointBackend> {
  const endpoint = new OpenAIEndpoint(o);
  const model = await endpoint.resolveModel(o.model, '--endpoint-model');
  const unsupported = (what: string) => (): never => {
    throw new ScalpelError(
      `${o.label}: ${what} needs the model's activations, which an OpenAI-compatible endpoint does not give; only evaluation (generation) runs through an endpoint`,
    );
  };
  return {
    model,
    endpointUsage: endpoint.usage,
    usage: () => {
      const u = endpoint.usage;
      return `${u.requests} requests to ${endpoint.baseUrl} (${u.retries} retried), ${u.prompt_tokens} prompt and ${u.completion_tokens} completion tokens as the server counts them`;
    },
    numLayers: 0,
    width: 0,
    vocabSize: 0,
    encodePrompt: toPoints,
    postInstructionTokens: unsupported('finding the post-instruction tokens'),
    responseFirstToken: unsupported('finding refusal tokens'),
    decode: fromPoints,
    tokenText: (id) => String.fromCodePoint(id),
    lastLogits: unsupported('scoring prompts by their last logits'),
    async generate(prompts, opts) {
      if (opts.hooks && opts.hooks.size > 0)
        throw new ScalpelError(`${o.label}: a run's intervention cannot be applied through an endpoint`);
      let done = 0;
      return await Promise.all(
        prompts.map(async (p) => {
          const answer = await endpoint.chat({
            model,
            messages: chatMessages(fromPoints(p), o.system),
            temperature: 0,
            max_tokens: opts.maxNewTokens,
          });
          opts.onProgress?.(++done, prompts.length);
          return toPoints(answer.content);
        }),
      );
    },
  };
}
