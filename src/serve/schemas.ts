// The request bodies of the OpenAI-compatible routes as JSON schemas, one per route: Fastify validates every body
// against its route's schema before the handler runs, so a handler sees only well-typed requests and every 4xx for
// a malformed body comes from here. Fields OpenAI defines but Scalpel ignores (user, logprobs, penalties, …) are let
// through untouched; the types below list only what the server reads.

/** Longest generation one request may ask for. */
export const MAX_TOKENS_LIMIT = 4096;

/** The per-request edit: `"scalpel": {"lambda": 0.5, "alpha": 0, "intervention": "ablate"}`. */
export interface ScalpelField {
  lambda?: number;
  alpha?: number;
  intervention?: 'none' | 'ablate';
}

interface CommonBody {
  model: string;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stop?: string | string[] | null;
  n?: number;
  stream?: boolean;
  stream_options?: { include_usage?: boolean } | null;
  /** vLLM's extra field: keep generating past the end-of-sequence token (benchmarks, tests). */
  ignore_eos?: boolean;
  scalpel?: ScalpelField;
}

export type ContentPart = { type: 'text'; text: string };

export interface ChatBody extends CommonBody {
  messages: { role: 'system' | 'user' | 'assistant'; content: string | ContentPart[] }[];
  max_completion_tokens?: number;
}

export interface CompletionBody extends CommonBody {
  prompt: string | [string];
}

const common = {
  model: { type: 'string', minLength: 1, maxLength: 256 },
  max_tokens: { type: ['integer', 'null'], minimum: 1, maximum: MAX_TOKENS_LIMIT },
  temperature: { type: ['number', 'null'], minimum: 0, maximum: 2 },
  top_p: { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 1 },
  seed: { type: ['integer', 'null'], minimum: -(2 ** 53 - 1), maximum: 2 ** 53 - 1 },
  stop: {
    anyOf: [
      { type: 'string', minLength: 1 },
      { type: 'array', items: { type: 'string', minLength: 1 }, maxItems: 4 },
      { type: 'null' },
    ],
  },
  n: { type: ['integer', 'null'], minimum: 1, maximum: 1 },
  stream: { type: ['boolean', 'null'] },
  stream_options: {
    anyOf: [{ type: 'object', properties: { include_usage: { type: 'boolean' } } }, { type: 'null' }],
  },
  ignore_eos: { type: 'boolean' },
  scalpel: {
    type: 'object',
    additionalProperties: false,
    properties: {
      lambda: { type: 'number', minimum: 0, maximum: 1 },
      alpha: { type: 'number', minimum: -1000, maximum: 1000 },
      intervention: { type: 'string', enum: ['none', 'ablate'] },
    },
  },
} as const;

export const chatSchema = {
  type: 'object',
  required: ['model', 'messages'],
  properties: {
    ...common,
    max_completion_tokens: common.max_tokens,
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['role', 'content'],
        properties: {
          role: { type: 'string', enum: ['system', 'user', 'assistant'] },
          content: {
            anyOf: [
              { type: 'string' },
              {
                type: 'array',
                items: {
                  type: 'object',
                  required: ['type', 'text'],
                  properties: { type: { const: 'text' }, text: { type: 'string' } },
                },
              },
            ],
          },
        },
      },
    },
  },
} as const;

export const completionSchema = {
  type: 'object',
  required: ['model', 'prompt'],
  properties: {
    ...common,
    prompt: {
      anyOf: [
        { type: 'string', minLength: 1 },
        { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1, maxItems: 1 },
      ],
    },
  },
} as const;
