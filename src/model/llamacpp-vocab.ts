// A Hugging Face tokenizer as llama.cpp's tokenizer.* metadata, so that llama.cpp and Ollama tokenize prompts and
// render the chat template themselves. Two kinds of tokenizer.json BPE models occur in the architectures Scalpel
// exports: byte-level BPE (GPT-2 style, llama.cpp "gpt2", with a named pre-tokenizer regex) and SentencePiece-style
// BPE with byte fallback (▁ for spaces, <0xNN> byte tokens; llama.cpp "llama", which merges by token score).
import * as path from 'node:path';
import { ScalpelError } from '../errors.js';
import { gguf, type GgufValue } from '../io/gguf.js';
import { readJsonFile } from '../io/json.js';
import { ChatTemplate } from '../tokenizer/chat.js';
import { TextTokenizer } from '../tokenizer/tokenizer.js';

/** llama.cpp's token types (llama_token_type). */
const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

interface TokenizerJson {
  model?: {
    type?: string;
    vocab?: Record<string, number>;
    merges?: Array<string | [string, string]>;
    byte_fallback?: boolean;
  };
  added_tokens?: Array<{ id: number; content: string; special?: boolean }>;
  pre_tokenizer?: Record<string, unknown> | null;
  decoder?: Record<string, unknown> | null;
}

/** Every component of a tokenizers pipeline element (Sequence elements flattened). */
function components(v: unknown): Array<Record<string, unknown>> {
  if (!v || typeof v !== 'object') return [];
  const o = v as Record<string, unknown>;
  const inner = o['pretokenizers'] ?? o['decoders'] ?? o['processors'] ?? o['normalizers'];
  return Array.isArray(inner) ? inner.flatMap(components) : [o];
}

// The split regexes of the byte-level tokenizers llama.cpp knows by name (its llama-vocab.cpp pre-tokenizer types).
const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** llama.cpp's pre-tokenizer name for a byte-level tokenizer.json, or null when it is none of the known ones. */
function bytePreTokenizer(tok: TokenizerJson): string | null {
  const parts = components(tok.pre_tokenizer);
  const split = parts.find((p) => p['type'] === 'Split');
  const byteLevel = parts.find((p) => p['type'] === 'ByteLevel');
  if (!split && byteLevel && byteLevel['use_regex'] !== false) return 'gpt-2';
  const regex = (split?.['pattern'] as { Regex?: string } | undefined)?.Regex;
  if (regex === LLAMA3_SPLIT) return 'llama-bpe';
  if (regex === QWEN2_SPLIT) return 'qwen2';
  return null;
}

export interface LlamaCppVocab {
  metadata: Array<[string, GgufValue]>;
  /** What llama.cpp's own tokenization may do differently, one sentence each. */
  notes: string[];
  /** Token strings by id (padded to the embedding rows), for the Modelfile's stop tokens. */
  tokens: string[];
}

/**
 * tokenizer.* metadata for the tokenizer of `dir`, its vocabulary padded to `vocabSize` (the embedding's rows) with
 * unused [PADi] tokens, as llama.cpp wants one token per row; eos is the tokenizer's eos_token, else the first of
 * `eosTokenIds` (generation_config.json's).
 */
export function llamaCppVocab(dir: string, vocabSize: number, eosTokenIds: readonly number[]): LlamaCppVocab {
  const file = path.join(dir, 'tokenizer.json');
  const tok = readJsonFile(file) as TokenizerJson;
  const text = TextTokenizer.load(dir);
  const vocab = tok.model?.vocab;
  const merges = tok.model?.merges;
  if (tok.model?.type !== 'BPE' || !vocab || !merges)
    throw new ScalpelError(
      `${file}: model: expected a BPE model with vocab and merges for GGUF export, got ${String(tok.model?.type)}`,
    );
  const byteLevel = [...components(tok.pre_tokenizer), ...components(tok.decoder)].some(
    (p) => p['type'] === 'ByteLevel',
  );
  const metaspace = components(tok.pre_tokenizer).find((p) => p['type'] === 'Metaspace');
  const spm = !byteLevel && (tok.model.byte_fallback === true || metaspace !== undefined);
  if (!byteLevel && !spm)
    throw new ScalpelError(
      `${file}: neither a byte-level nor a SentencePiece-style BPE tokenizer; llama.cpp has no match`,
    );

  const tokens: string[] = new Array(vocabSize);
  const types: number[] = new Array(vocabSize).fill(TOKEN_TYPE.normal);
  for (const [t, id] of Object.entries(vocab)) {
    if (id >= vocabSize) continue;
    tokens[id] = t;
    if (spm && /^<0x[0-9A-F]{2}>$/.test(t)) types[id] = TOKEN_TYPE.byte;
  }
  for (const a of tok.added_tokens ?? []) {
    if (a.id >= vocabSize) continue;
    tokens[a.id] = a.content;
    types[a.id] = a.special ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined;
  }
  if (spm && text.unkTokenId !== null && text.unkTokenId < vocabSize) types[text.unkTokenId] = TOKEN_TYPE.unknown;
  for (let i = 0; i < vocabSize; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = TOKEN_TYPE.unused;
    }
  }
  const mergeList = merges.map((m) => (typeof m === 'string' ? m : `${m[0]} ${m[1]}`));
  const notes: string[] = [];
  const kv: Array<[string, GgufValue]> = [];
  if (byteLevel) {
    const pre = bytePreTokenizer(tok);
    if (pre === null)
      notes.push(
        `${file}: the pre-tokenizer is not one llama.cpp knows by name; it will split text with its default rules (token ids fed directly are unaffected)`,
      );
    kv.push(
      ['tokenizer.ggml.model', gguf.str('gpt2')],
      ['tokenizer.ggml.pre', gguf.str(pre ?? 'default')],
      ['tokenizer.ggml.tokens', gguf.array('string', tokens)],
      ['tokenizer.ggml.token_type', gguf.array('i32', types)],
      ['tokenizer.ggml.merges', gguf.array('string', mergeList)],
    );
  } else {
    // llama.cpp's SentencePiece tokenizer merges the adjacent pair whose joined text has the highest score: the
    // score of a merge's result is minus its rank, so that order is the BPE merge order.
    const scores = new Float32Array(vocabSize);
    for (const [rank, m] of mergeList.entries()) {
      const id = vocab[m.replace(' ', '')];
      if (id !== undefined && id < vocabSize && scores[id] === 0) scores[id] = -(rank + 1);
    }
    const prepend = metaspace?.['prepend_scheme'] ?? (metaspace?.['add_prefix_space'] === false ? 'never' : 'first');
    kv.push(
      ['tokenizer.ggml.model', gguf.str('llama')],
      ['tokenizer.ggml.pre', gguf.str('default')],
      ['tokenizer.ggml.tokens', gguf.array('string', tokens)],
      ['tokenizer.ggml.scores', gguf.array('f32', scores)],
      ['tokenizer.ggml.token_type', gguf.array('i32', types)],
      ['tokenizer.ggml.add_space_prefix', gguf.bool(prepend !== 'never')],
    );
    if (text.unkTokenId !== null) kv.push(['tokenizer.ggml.unknown_token_id', gguf.u32(text.unkTokenId)]);
  }
  // BOS/EOS as the Hugging Face tokenizer adds them to plain text (the chat template adds its own).
  const plain = text.encode('a', { addSpecialTokens: false });
  const withSpecial = text.encode('a', { addSpecialTokens: true });
  const addBos = withSpecial.length > plain.length && withSpecial[0] !== plain[0];
  const addEos = withSpecial.length > plain.length && withSpecial.at(-1) !== plain.at(-1);
  const bos = addBos ? withSpecial[0]! : text.bosTokenId;
  const eos = text.eosTokenId ?? eosTokenIds[0] ?? null;
  if (bos !== null) kv.push(['tokenizer.ggml.bos_token_id', gguf.u32(bos)]);
  if (eos !== null) kv.push(['tokenizer.ggml.eos_token_id', gguf.u32(eos)]);
  if (text.padTokenId !== null) kv.push(['tokenizer.ggml.padding_token_id', gguf.u32(text.padTokenId)]);
  kv.push(['tokenizer.ggml.add_bos_token', gguf.bool(addBos)]);
  kv.push(['tokenizer.ggml.add_eos_token', gguf.bool(addEos)]);
  const chat = ChatTemplate.load(dir);
  if (chat) kv.push(['tokenizer.chat_template', gguf.str(chat.source)]);
  return { metadata: kv, notes, tokens };
}
