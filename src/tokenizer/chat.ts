// Chat templates (Jinja, as transformers' apply_chat_template renders them) through @huggingface/jinja.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Template } from '@huggingface/jinja';
import { ScalpelError } from '../errors.js';
import { readJsonFile } from '../io/json.js';
import { RenderBudgetError, renderWithinBudget } from './render-budget.js';
import { tokenContent, type TextTokenizer } from './tokenizer.js';

export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

export interface RenderOptions {
  /** Append the header that starts the assistant's turn (transformers' add_generation_prompt). Default true. */
  addGenerationPrompt?: boolean;
  /** More template variables, e.g. { enable_thinking: false } or { tools: [...] }. */
  extra?: Record<string, unknown>;
}

const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, ' ').trim();

/**
 * Why parsing or rendering failed, in words. @huggingface/jinja parses and evaluates by recursion, so blocks or
 * brackets nested a few thousand deep run it out of stack: a RangeError that says nothing about the template.
 */
const failure = (err: unknown): string =>
  err instanceof RangeError && /call stack/i.test(err.message)
    ? 'it nests blocks or brackets too deeply'
    : oneLine(String((err as Error)?.message ?? err));

export class ChatTemplate {
  private readonly template: Template;

  private constructor(
    /** The template text. */
    readonly source: string,
    /** Where it came from, for error messages: '<dir>/chat_template.jinja' or '<dir>/tokenizer_config.json'. */
    readonly file: string,
    /** Variables every render gets: the special tokens as strings (bos_token, eos_token, …). */
    private readonly specialTokens: Record<string, unknown>,
  ) {
    try {
      this.template = new Template(source);
    } catch (err) {
      throw new ScalpelError(`${file}: chat_template does not parse (${failure(err)})`);
    }
  }

  /**
   * The chat template of a model directory, or null if it has none: `chat_template.jinja` if present, else
   * tokenizer_config.json's `chat_template` (a string, or a list of { name, template } of which 'default' is used),
   * else chat_template.json's `chat_template`.
   */
  static load(dir: string): ChatTemplate | null {
    const configPath = path.join(dir, 'tokenizer_config.json');
    const config = readJsonFile(configPath, true) ?? {};
    const map = readJsonFile(path.join(dir, 'special_tokens_map.json'), true) ?? {};
    const special: Record<string, unknown> = {};
    for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token']) {
      const v = tokenContent(config[key]) ?? tokenContent(map[key]);
      if (v !== null) special[key] = v; // transformers passes only the tokens that are set
    }
    const extra = config['additional_special_tokens'] ?? map['additional_special_tokens'];
    if (Array.isArray(extra)) special['additional_special_tokens'] = extra.map(tokenContent).filter((t) => t !== null);

    const jinjaPath = path.join(dir, 'chat_template.jinja');
    if (fs.existsSync(jinjaPath)) return new ChatTemplate(fs.readFileSync(jinjaPath, 'utf8'), jinjaPath, special);

    const fromField = (value: unknown, file: string): string | null => {
      if (value === undefined || value === null) return null;
      if (typeof value === 'string') return value;
      if (Array.isArray(value)) {
        const named = value.find((t) => t && typeof t === 'object' && (t as { name?: unknown }).name === 'default');
        if (named && typeof (named as { template?: unknown }).template === 'string')
          return (named as { template: string }).template;
        throw new ScalpelError(`${file}: chat_template is a list without a template named 'default'`);
      }
      throw new ScalpelError(`${file}: chat_template is neither a string nor a list of { name, template }`);
    };
    const fromConfig = fromField(config['chat_template'], configPath);
    if (fromConfig !== null) return new ChatTemplate(fromConfig, configPath, special);
    const ctPath = path.join(dir, 'chat_template.json');
    const ct = readJsonFile(ctPath, true);
    const fromCt = ct ? fromField(ct['chat_template'], ctPath) : null;
    if (fromCt !== null) return new ChatTemplate(fromCt, ctPath, special);
    return null;
  }

  /** Like load, but a model without a chat template is an error. */
  static require(dir: string): ChatTemplate {
    const t = ChatTemplate.load(dir);
    if (!t)
      throw new ScalpelError(
        `${dir}: no chat template, expected chat_template.jinja or the field chat_template in tokenizer_config.json`,
      );
    return t;
  }

  /** Builds a template from text directly (tests, or a user-supplied template file). */
  static fromString(source: string, file: string, specialTokens: Record<string, unknown> = {}): ChatTemplate {
    return new ChatTemplate(source, file, specialTokens);
  }

  /**
   * The prompt text for `messages`, exactly as transformers' apply_chat_template(tokenize=False) renders it. The
   * template is the model folder's code, so it runs within a budget of steps and sizes (render-budget.ts).
   */
  render(messages: readonly ChatMessage[], opts: RenderOptions = {}): string {
    const variables = {
      ...this.specialTokens,
      ...opts.extra,
      messages: messages.map((m) => ({ ...m })),
      add_generation_prompt: opts.addGenerationPrompt ?? true,
    };
    let text: unknown;
    try {
      text = renderWithinBudget(this.template, variables, {
        chars: JSON.stringify(variables).length,
        messages: messages.length,
      });
    } catch (err) {
      const why = err instanceof RenderBudgetError ? 'went over its budget: ' : '';
      throw new ScalpelError(`${this.file}: chat_template failed to render (${why}${failure(err)})`);
    }
    if (typeof text !== 'string') throw new ScalpelError(`${this.file}: chat_template did not render to text`);
    return text;
  }
}

/** Token ids of a chat prompt: the rendered template, tokenized without adding special tokens again. */
export function encodeChat(
  tokenizer: TextTokenizer,
  template: ChatTemplate,
  messages: readonly ChatMessage[],
  opts: RenderOptions = {},
): number[] {
  return tokenizer.encode(template.render(messages, opts), { addSpecialTokens: false });
}

/** The conversation the method uses: an optional system prompt, then one user message. */
export function chatMessages(instruction: string, system?: string): ChatMessage[] {
  return [
    ...(system !== undefined ? [{ role: 'system', content: system }] : []),
    { role: 'user', content: instruction },
  ];
}

const PLACEHOLDER = 'SCALPELxPLACEHOLDERxQ7Z';
/** Instructions with different endings, so that boundary merges between instruction and template show up. */
const PROBES = [
  'Hello',
  'How do I bake bread?',
  'Write a poem about the sea.',
  'Give me 42',
  'naïve café',
  'x',
  '你好',
  'end with space )',
];

function commonTail(seqs: number[][]): number[] {
  const first = seqs[0]!;
  let n = 0;
  while (n < first.length && seqs.every((s) => s.length > n && s[s.length - 1 - n] === first[first.length - 1 - n]))
    n++;
  return first.slice(first.length - n);
}

/**
 * The post-instruction tokens: the ids the template puts after the user's content, up to the end of the generation
 * prompt (e.g. `<|im_end|>\n<|im_start|>assistant\n`). Found by rendering around a placeholder and tokenizing what
 * follows it. That is checked against full prompts with several instructions: the result is always the tail of
 * their ids. If the suffix tokenized alone is not (a merge across the boundary, or a tokenizer that treats the
 * start of a text differently), the longest tail that all full prompts share is returned instead, i.e. only the
 * tokens that do not depend on the instruction.
 */
export function postInstructionSuffix(
  tokenizer: TextTokenizer,
  template: ChatTemplate,
  opts: { system?: string; extra?: Record<string, unknown>; probes?: string[] } = {},
): number[] {
  const text = template.render(chatMessages(PLACEHOLDER, opts.system), {
    addGenerationPrompt: true,
    extra: opts.extra,
  });
  const at = text.indexOf(PLACEHOLDER);
  if (at < 0 || text.indexOf(PLACEHOLDER, at + 1) >= 0) {
    throw new ScalpelError(
      `${template.file}: chat_template does not put the user's message into the prompt exactly once, cannot find the post-instruction tokens`,
    );
  }
  const suffix = text.slice(at + PLACEHOLDER.length);
  const alone = tokenizer.encode(suffix, { addSpecialTokens: false });
  const fulls = (opts.probes ?? PROBES).map((p) =>
    encodeChat(tokenizer, template, chatMessages(p, opts.system), { addGenerationPrompt: true, extra: opts.extra }),
  );
  const isTail = (s: number[]) =>
    alone.length <= s.length && alone.every((id, i) => s[s.length - alone.length + i] === id);
  if (alone.length > 0 && fulls.every(isTail)) return alone;
  const tail = commonTail(fulls);
  if (tail.length === 0)
    throw new ScalpelError(
      `${template.file}: chat_template adds no tokens after the user's message, cannot find the post-instruction tokens`,
    );
  return tail;
}
