// The prompt formats of the general-ability checks, as text, and their token ids: the standard 5-shot MMLU prompt
// (Hendrycks et al.; lm-eval-harness `mmlu`), ARC-Challenge as lm-eval-harness `arc_challenge` asks it, and the
// fixed-length windows perplexity is measured on. Raw text throughout: no chat template.
import type { McItem } from './ability-data.js';

export const MMLU_LETTERS = ['A', 'B', 'C', 'D'] as const;

export const MMLU_FORMAT =
  'mmlu-5shot: "The following are multiple choice questions (with answers) about {subject}.\\n\\n", then each dev shot as "{question}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer: {X}\\n\\n", then the question the same way ending "Answer:"; scored by the log-likelihood of " A", " B", " C", " D" (lm-eval-harness mmlu, original MMLU)';
export const ARC_FORMAT =
  'arc-0shot: "Question: {question}\\nAnswer:", each choice\'s text after a space as the continuation, scored by its summed log-likelihood (acc) and by that over its length in characters (acc_norm) (lm-eval-harness arc_challenge)';

/** "high_school_geography" → "high school geography", as the MMLU prompt names the subject. */
export function subjectName(subject: string): string {
  return subject.replaceAll('_', ' ');
}

function mmluQuestion(item: McItem): string {
  const lines = item.choices.map((c, i) => `${MMLU_LETTERS[i]}. ${c}`);
  return `${item.question.trim()}\n${lines.join('\n')}\nAnswer:`;
}

/** The k-shot MMLU context of an item: header, the shots with their answers, the item's question. */
export function mmluContext(item: McItem, shots: readonly McItem[]): string {
  let text = `The following are multiple choice questions (with answers) about ${subjectName(item.subject ?? '')}.\n\n`;
  for (const s of shots) text += `${mmluQuestion(s)} ${MMLU_LETTERS[s.answer]}\n\n`;
  return text + mmluQuestion(item);
}

export const MMLU_CONTINUATIONS = MMLU_LETTERS.map((l) => ` ${l}`);

export function arcContext(item: McItem): string {
  return `Question: ${item.question}\nAnswer:`;
}

export function arcContinuations(item: McItem): string[] {
  return item.choices.map((c) => ` ${c}`);
}

/** What tokenizes text for the checks: raw text, no special tokens. */
export type Encode = (text: string) => number[];

/** One multiple-choice item as token ids: a shared context and one continuation per choice. */
export interface McRequest {
  id: string;
  answer: number;
  /** Prefix (BOS when the model has one) and context, truncated on the left of the context when too long. */
  context: number[];
  continuations: number[][];
  /** Each choice's length in characters (acc_norm's divisor). */
  choiceChars: number[];
  /** Context tokens dropped to fit the model's context length. */
  truncated: number;
}

/**
 * Context and continuation token ids as lm-eval-harness makes them: trailing spaces of the context move to the
 * continuation, the continuation is what encoding context + continuation adds after the context's own tokens. The
 * prefix (BOS, or nothing) goes first; when a choice would not fit in maxLen tokens, the context loses tokens from
 * its left (after the prefix), as lm-eval-harness keeps the last tokens.
 */
export function mcRequest(
  encode: Encode,
  prefix: readonly number[],
  maxLen: number,
  item: { id: string; answer: number; context: string; continuations: string[]; choices: string[] },
): McRequest {
  let ctx = item.context;
  const spaces = ctx.length - ctx.trimEnd().length;
  const conts = item.continuations.map((c) => (spaces > 0 ? ctx.slice(-spaces) + c : c));
  if (spaces > 0) ctx = ctx.slice(0, -spaces);
  const ctxIds = encode(ctx);
  const contIds = conts.map((c) => encode(ctx + c).slice(ctxIds.length));
  const longest = Math.max(...contIds.map((c) => c.length));
  const room = maxLen - prefix.length - longest;
  const truncated = Math.max(0, ctxIds.length - Math.max(1, room));
  return {
    id: item.id,
    answer: item.answer,
    context: [...prefix, ...ctxIds.slice(truncated)],
    continuations: contIds,
    choiceChars: item.choices.map((c) => [...c].length),
    truncated,
  };
}

/** A perplexity window: a prefix token and up to maxLen − 1 tokens of one document, all of them scored. */
export interface PplWindow {
  doc: number;
  ids: number[];
}

/**
 * Each document's tokens cut into non-overlapping windows of maxLen − 1 tokens (the last one shorter), each
 * preceded by the prefix token (BOS, or EOS for models without one), so every token of the document is scored
 * exactly once with only its own window as context.
 */
export function pplWindows(docs: readonly number[][], prefixToken: number, maxLen: number): PplWindow[] {
  const out: PplWindow[] = [];
  const step = maxLen - 1;
  docs.forEach((ids, doc) => {
    for (let i = 0; i < ids.length; i += step) out.push({ doc, ids: [prefixToken, ...ids.slice(i, i + step)] });
  });
  return out;
}
