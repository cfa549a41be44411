// Text ↔ token ids with tokenizer.json, through @huggingface/tokenizers, matching transformers' `tokenizer(text)`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ScalpelError, quoteUntrusted } from '../errors.js';
import { readJsonFile } from '../io/json.js';

/** The names transformers gives the special tokens of a tokenizer, as passed to chat templates. */
export interface SpecialTokens {
  bos_token: string | null;
  eos_token: string | null;
  unk_token: string | null;
  pad_token: string | null;
  additional_special_tokens: string[];
}

export interface EncodeOptions {
  /** Add the tokenizer's own special tokens (e.g. BOS), as transformers' `tokenizer(text)` does. Default true. */
  addSpecialTokens?: boolean;
}
export interface DecodeOptions {
  /** Leave out special tokens (EOS, chat markers, …). Default false. */
  skipSpecialTokens?: boolean;
}

/** A special-token value in tokenizer_config.json: a string, or an AddedToken object { content, ... }. */
export function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string')
    return (v as { content: string }).content;
  return null;
}

/**
 * Tokenizer classes whose transformers implementation rebuilds the post-processor from `add_bos_token` /
 * `add_eos_token` (defaults true / false) instead of trusting tokenizer.json's (e.g. Phi-3 turns BOS off this way).
 */
const BOS_EOS_CLASSES = new Set(['LlamaTokenizer', 'LlamaTokenizerFast', 'GemmaTokenizer', 'GemmaTokenizerFast']);

function templateProcessor(bos: string | null, eos: string | null, ids: Map<string, number>): Record<string, unknown> {
  const special = (t: string, typeId: number) => ({ SpecialToken: { id: t, type_id: typeId } });
  const seq = (id: 'A' | 'B', typeId: number) => ({ Sequence: { id, type_id: typeId } });
  const around = (id: 'A' | 'B', typeId: number) => [
    ...(bos ? [special(bos, typeId)] : []),
    seq(id, typeId),
    ...(eos ? [special(eos, typeId)] : []),
  ];
  const specialTokens: Record<string, unknown> = {};
  for (const t of [bos, eos]) if (t) specialTokens[t] = { id: t, ids: [ids.get(t)], tokens: [t] };
  return {
    type: 'TemplateProcessing',
    single: around('A', 0),
    pair: [...around('A', 0), ...around('B', 1)],
    special_tokens: specialTokens,
  };
}

/**
 * The Rust tokenizers library ignores the ids written for added tokens that are not in model.vocab and numbers them
 * from the vocabulary size up; tokenizers.js trusts the written ids. Files saved by the library are always
 * consistent, so a difference means a hand-made file that would tokenize differently in transformers: refuse it.
 */
function checkAddedTokenIds(tokJson: Record<string, unknown>, file: string): void {
  const model = tokJson['model'] as { vocab?: unknown };
  const added = tokJson['added_tokens'];
  if (!Array.isArray(added) || model.vocab === null || typeof model.vocab !== 'object') return;
  const vocab = new Map<string, number>();
  if (Array.isArray(model.vocab))
    for (const [i, e] of model.vocab.entries()) vocab.set(Array.isArray(e) ? String(e[0]) : String(e), i);
  else for (const [k, v] of Object.entries(model.vocab as Record<string, number>)) vocab.set(k, v);
  const vocabSize = vocab.size;
  const assigned = new Map<string, number>();
  let maxAdded = -1;
  for (const t of added as { content?: unknown; id?: unknown }[]) {
    if (typeof t.content !== 'string' || typeof t.id !== 'number')
      throw new ScalpelError(`${file}: added_tokens entries need a string content and a numeric id`);
    if (t.content === '' || assigned.has(t.content)) continue;
    let id = vocab.get(t.content);
    if (id === undefined)
      id = maxAdded < 0 ? vocabSize : maxAdded >= vocabSize || vocabSize === 0 ? maxAdded + 1 : vocabSize;
    assigned.set(t.content, id);
    maxAdded = Math.max(maxAdded, id);
    if (id !== t.id) {
      throw new ScalpelError(
        `${file}: added token ${quoteUntrusted(t.content, 80)} has id ${t.id}, but Hugging Face tokenizers gives it id ${id} (added tokens missing from model.vocab are numbered from the vocabulary size ${vocabSize} up)`,
      );
    }
  }
}

export class TextTokenizer {
  /** The special tokens by name (strings), as transformers' special_tokens_map. */
  readonly special: SpecialTokens;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  readonly unkTokenId: number | null;
  /** Ids of all added tokens marked special (skipped by decode with skipSpecialTokens). */
  readonly specialTokenIds: ReadonlySet<number>;
  /** Number of ids (vocabulary plus added tokens); the model's embedding may be larger. */
  readonly vocabSize: number;

  private constructor(
    readonly dir: string,
    private readonly tok: Tokenizer,
    /** tokenizer_config.json as parsed ({} when the directory has none). */
    readonly config: Record<string, unknown>,
    special: SpecialTokens,
  ) {
    this.special = special;
    const id = (t: string | null) => (t === null ? null : (tok.token_to_id(t) ?? null));
    this.bosTokenId = id(special.bos_token);
    this.eosTokenId = id(special.eos_token);
    this.padTokenId = id(special.pad_token);
    this.unkTokenId = id(special.unk_token);
    const ids = new Set<number>();
    for (const [i, t] of tok.get_added_tokens_decoder()) if (t.special) ids.add(i);
    this.specialTokenIds = ids;
    this.vocabSize = tok.get_vocab(true).size;
  }

  /** Loads tokenizer.json (required) and tokenizer_config.json / special_tokens_map.json (optional) from `dir`. */
  static load(dir: string): TextTokenizer {
    const tokPath = path.join(dir, 'tokenizer.json');
    if (!fs.existsSync(tokPath)) {
      const alt = ['tokenizer.model', 'vocab.json'].filter((f) => fs.existsSync(path.join(dir, f)));
      const hint = alt.length ? ` (found ${alt.join(', ')}; Scalpel needs the fast-tokenizer file tokenizer.json)` : '';
      throw new ScalpelError(`${tokPath}: file is missing, expected the Hugging Face tokenizer.json${hint}`);
    }
    const tokJson = readJsonFile(tokPath);
    if (tokJson['model'] === null || typeof tokJson['model'] !== 'object')
      throw new ScalpelError(`${tokPath}: field model is missing, expected a tokenizers model object`);
    checkAddedTokenIds(tokJson, tokPath);
    const config = readJsonFile(path.join(dir, 'tokenizer_config.json'), true) ?? {};
    const map = readJsonFile(path.join(dir, 'special_tokens_map.json'), true) ?? {};
    const pick = (key: string): string | null => tokenContent(config[key]) ?? tokenContent(map[key]);
    const extra = config['additional_special_tokens'] ?? map['additional_special_tokens'];
    const special: SpecialTokens = {
      bos_token: pick('bos_token'),
      eos_token: pick('eos_token'),
      unk_token: pick('unk_token'),
      pad_token: pick('pad_token'),
      additional_special_tokens: Array.isArray(extra)
        ? extra.map(tokenContent).filter((t): t is string => t !== null)
        : [],
    };

    // Follow transformers where it overrides tokenizer.json: the BOS/EOS post-processor of the Llama/Gemma classes.
    const cls = typeof config['tokenizer_class'] === 'string' ? config['tokenizer_class'] : '';
    let json = tokJson;
    if (BOS_EOS_CLASSES.has(cls)) {
      const addBos = config['add_bos_token'] === undefined ? true : config['add_bos_token'] === true;
      const addEos = config['add_eos_token'] === true;
      const ids = new Map<string, number>();
      for (const t of (tokJson['added_tokens'] as { content: string; id: number }[] | undefined) ?? [])
        ids.set(t.content, t.id);
      const vocab = (tokJson['model'] as { vocab?: unknown }).vocab;
      const lookup = (t: string | null) =>
        t === null
          ? undefined
          : (ids.get(t) ?? (vocab && !Array.isArray(vocab) ? (vocab as Record<string, number>)[t] : undefined));
      const bos = addBos ? special.bos_token : null;
      const eos = addEos ? special.eos_token : null;
      if (bos !== null && lookup(bos) === undefined)
        throw new ScalpelError(
          `${path.join(dir, 'tokenizer_config.json')}: bos_token ${quoteUntrusted(bos, 80)} is not in tokenizer.json`,
        );
      if (eos !== null && lookup(eos) === undefined)
        throw new ScalpelError(
          `${path.join(dir, 'tokenizer_config.json')}: eos_token ${quoteUntrusted(eos, 80)} is not in tokenizer.json`,
        );
      for (const t of [bos, eos]) if (t !== null) ids.set(t, lookup(t)!);
      json = { ...tokJson, post_processor: templateProcessor(bos, eos, ids) };
    }

    // transformers ≥ 4.45 leaves spaces alone on decode unless the config asks; tokenizers.js defaults to cleaning.
    // The library wants special tokens as plain strings (configs may hold AddedToken objects).
    const libConfig = {
      ...config,
      ...special,
      clean_up_tokenization_spaces: config['clean_up_tokenization_spaces'] === true,
    };
    let tok: Tokenizer;
    try {
      tok = new Tokenizer(json, libConfig);
    } catch (err) {
      throw new ScalpelError(`${tokPath}: cannot build the tokenizer (${(err as Error).message.split('\n')[0]})`);
    }
    return new TextTokenizer(dir, tok, config, special);
  }

  /** Token ids of `text`; with addSpecialTokens (default) equal to transformers' `tokenizer(text).input_ids`. */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    return this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  /** Text of `ids`. Ids beyond the tokenizer (a model's embedding is often padded past it) decode to nothing, as in transformers. */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const known = ids.filter((id) => this.tok.id_to_token(id) !== undefined);
    if (known.length === 0) return '';
    return this.tok.decode(known, { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  /** The id of a token string (vocabulary or added token), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  /** The token string of an id, or undefined. */
  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }
}
