// GGUF v3, the single-file model format of llama.cpp: a writer, a reader of the header (metadata and tensor
// directory, for checks and tests), and the mapping from a Hugging Face llama-family checkpoint (llama, qwen2) to
// llama.cpp's tensor names and metadata keys.
//
// Layout (all little-endian): "GGUF", u32 version, u64 tensor count, u64 metadata count; the metadata as
// (string key, u32 value type, value); the tensor directory as (string name, u32 n_dims, u64 dims innermost first,
// u32 ggml type, u64 offset into the data section); zero padding to the alignment; the tensor data, each tensor
// starting on a multiple of the alignment. Strings are u64 byte length + UTF-8 bytes.
import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { WeightDType } from '../tensor.js';
import { ScalpelError, check } from '../errors.js';
import { withAtomicFile, writeAll } from '../io/atomic.js';
import { bf16ToF32, f16ToF32 } from '../io/dtype.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Metadata value types, with their codes in the file. */
export const GGUF_VALUE_TYPES = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;
export type GgufScalarType = Exclude<keyof typeof GGUF_VALUE_TYPES, 'array'>;
type Scalar = number | bigint | boolean | string;

/** A typed metadata value: GGUF needs the width, a JS number does not carry it. */
export type GgufValue =
  | { type: GgufScalarType; value: Scalar }
  | { type: 'array'; itemType: GgufScalarType; values: ArrayLike<Scalar> };

/** Shorthands for metadata values. */
export const gguf = {
  u32: (value: number): GgufValue => ({ type: 'u32', value }),
  i32: (value: number): GgufValue => ({ type: 'i32', value }),
  u64: (value: number | bigint): GgufValue => ({ type: 'u64', value }),
  f32: (value: number): GgufValue => ({ type: 'f32', value }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  str: (value: string): GgufValue => ({ type: 'string', value }),
  array: (itemType: GgufScalarType, values: ArrayLike<Scalar>): GgufValue => ({ type: 'array', itemType, values }),
};

/** ggml tensor types this writer emits. */
export const GGML_TYPES = { f32: 0, f16: 1, bf16: 30 } as const;
const GGML_TYPE_NAMES = new Map<number, WeightDType>([
  [0, 'f32'],
  [1, 'f16'],
  [30, 'bf16'],
]);
/** llama.cpp's general.file_type for "mostly" this dtype (LLAMA_FTYPE_ALL_F32, MOSTLY_F16, MOSTLY_BF16). */
export const LLAMA_FILE_TYPES = { f32: 0, f16: 1, bf16: 32 } as const;

/** A tensor to write. `shape` is in PyTorch order (outermost first); the file stores it innermost first. */
export interface GgufTensor {
  name: string;
  dtype: WeightDType;
  shape: number[];
  /** f32 → Float32Array; f16 / bf16 → Uint16Array of raw bits. Written as is (no copy). */
  data: Float32Array | Uint16Array;
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

/** Appends little-endian values to a growing byte buffer (for the header, which is small next to the data). */
class ByteSink {
  private buf = Buffer.alloc(1 << 16);
  length = 0;
  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  u8(v: number): void {
    this.reserve(1);
    this.buf.writeUInt8(v, this.length);
    this.length += 1;
  }
  i8(v: number): void {
    this.reserve(1);
    this.buf.writeInt8(v, this.length);
    this.length += 1;
  }
  u16(v: number): void {
    this.reserve(2);
    this.buf.writeUInt16LE(v, this.length);
    this.length += 2;
  }
  i16(v: number): void {
    this.reserve(2);
    this.buf.writeInt16LE(v, this.length);
    this.length += 2;
  }
  u32(v: number): void {
    this.reserve(4);
    this.buf.writeUInt32LE(v, this.length);
    this.length += 4;
  }
  i32(v: number): void {
    this.reserve(4);
    this.buf.writeInt32LE(v, this.length);
    this.length += 4;
  }
  f32(v: number): void {
    this.reserve(4);
    this.buf.writeFloatLE(v, this.length);
    this.length += 4;
  }
  f64(v: number): void {
    this.reserve(8);
    this.buf.writeDoubleLE(v, this.length);
    this.length += 8;
  }
  u64(v: number | bigint): void {
    this.reserve(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  i64(v: number | bigint): void {
    this.reserve(8);
    this.buf.writeBigInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  str(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.reserve(bytes.length);
    bytes.copy(this.buf, this.length);
    this.length += bytes.length;
  }
  zeros(n: number): void {
    this.reserve(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function writeScalar(out: ByteSink, type: GgufScalarType, v: Scalar, key: string): void {
  const num = (): number => {
    check(
      typeof v === 'number' || typeof v === 'bigint',
      `GGUF metadata ${key}: expected a number for ${type}, got ${typeof v}`,
    );
    return Number(v);
  };
  switch (type) {
    case 'u8':
      out.u8(num());
      break;
    case 'i8':
      out.i8(num());
      break;
    case 'u16':
      out.u16(num());
      break;
    case 'i16':
      out.i16(num());
      break;
    case 'u32':
      out.u32(num());
      break;
    case 'i32':
      out.i32(num());
      break;
    case 'f32':
      out.f32(num());
      break;
    case 'f64':
      out.f64(num());
      break;
    case 'u64':
      out.u64(typeof v === 'bigint' ? v : num());
      break;
    case 'i64':
      out.i64(typeof v === 'bigint' ? v : num());
      break;
    case 'bool':
      out.u8(v ? 1 : 0);
      break;
    case 'string':
      check(typeof v === 'string', `GGUF metadata ${key}: expected a string, got ${typeof v}`);
      out.str(v);
      break;
  }
}

const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

function bytesOf(t: GgufTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/**
 * Writes a GGUF v3 file atomically (temp file + rename). Metadata keys are written in the given order;
 * `general.alignment` is added when the alignment is not the default 32. Tensor data is streamed from the given
 * arrays without copies.
 */
export async function writeGguf(
  target: string,
  metadata: Iterable<[string, GgufValue]>,
  tensors: GgufTensor[],
  opts: { alignment?: number } = {},
): Promise<void> {
  const alignment = opts.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  check(
    Number.isInteger(alignment) && alignment > 0 && alignment % 8 === 0,
    `GGUF alignment: expected a positive multiple of 8, got ${alignment}`,
  );
  const kv = [...metadata];
  if (alignment !== GGUF_DEFAULT_ALIGNMENT && !kv.some(([k]) => k === 'general.alignment'))
    kv.push(['general.alignment', gguf.u32(alignment)]);
  const keys = new Set<string>();
  for (const [k] of kv) {
    check(!keys.has(k), `GGUF metadata: key ${k} given twice`);
    keys.add(k);
  }
  const names = new Set<string>();
  for (const t of tensors) {
    check(!names.has(t.name), `GGUF tensors: ${t.name} given twice`);
    names.add(t.name);
    const count = t.shape.reduce((a, b) => a * b, 1);
    check(
      count === t.data.length,
      `GGUF tensor ${t.name}: shape [${t.shape}] has ${count} elements, data has ${t.data.length}`,
    );
    check(
      (t.dtype === 'f32') === t.data instanceof Float32Array,
      `GGUF tensor ${t.name}: ${t.dtype} data must be ${t.dtype === 'f32' ? 'a Float32Array' : 'a Uint16Array'}`,
    );
  }

  const out = new ByteSink();
  out.u32(GGUF_MAGIC);
  out.u32(GGUF_VERSION);
  out.u64(tensors.length);
  out.u64(kv.length);
  for (const [key, v] of kv) {
    out.str(key);
    out.u32(GGUF_VALUE_TYPES[v.type]);
    if (v.type === 'array') {
      out.u32(GGUF_VALUE_TYPES[v.itemType]);
      out.u64(v.values.length);
      for (let i = 0; i < v.values.length; i++) writeScalar(out, v.itemType, v.values[i]!, key);
    } else {
      writeScalar(out, v.type, v.value, key);
    }
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    out.str(t.name);
    out.u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) out.u64(t.shape[d]!);
    out.u32(GGML_TYPES[t.dtype]);
    out.u64(offset);
    offsets.push(offset);
    offset = alignUp(offset + t.data.byteLength, alignment);
  }
  out.zeros(alignUp(out.length, alignment) - out.length);

  await withAtomicFile(target, async (h: FileHandle) => {
    await writeAll(h, out.bytes());
    let pos = 0;
    const pad = new Uint8Array(alignment);
    for (let i = 0; i < tensors.length; i++) {
      if (offsets[i]! > pos) await writeAll(h, pad.subarray(0, offsets[i]! - pos));
      const bytes = bytesOf(tensors[i]!);
      await writeAll(h, bytes);
      pos = offsets[i]! + bytes.byteLength;
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Reading (header and directory; tensor data is located, not loaded)

export interface GgufTensorInfo {
  name: string;
  /** PyTorch order (outermost first), as given to writeGguf. */
  shape: number[];
  /** ggml type code (0 f32, 1 f16, 30 bf16, …) and its name when it is one of those. */
  ggmlType: number;
  dtype: WeightDType | undefined;
  /** Absolute byte offset of the data in the file. */
  offset: number;
}

export interface GgufFile {
  version: number;
  alignment: number;
  metadata: Map<string, Scalar | Scalar[]>;
  /** Value type of each key ('array' keys also record their item type as 'array:<type>'). */
  types: Map<string, string>;
  tensors: GgufTensorInfo[];
  dataOffset: number;
}

/** Reads through a file descriptor in chunks, so a large header (a 150k-token vocabulary) needs no whole-file read. */
class ByteSource {
  private buf = Buffer.alloc(0);
  private start = 0; // file position of buf[0]
  pos = 0;
  constructor(
    private readonly fd: number,
    private readonly file: string,
    private readonly size: number,
  ) {}
  private need(n: number): void {
    if (this.pos + n > this.size)
      throw new ScalpelError(`${this.file}: GGUF header runs past the end of the file (at byte ${this.pos})`);
    if (this.pos >= this.start && this.pos + n <= this.start + this.buf.length) return;
    const len = Math.min(Math.max(n, 1 << 20), this.size - this.pos);
    this.buf = Buffer.alloc(len);
    fs.readSync(this.fd, this.buf, 0, len, this.pos);
    this.start = this.pos;
  }
  private at(n: number): number {
    this.need(n);
    const o = this.pos - this.start;
    this.pos += n;
    return o;
  }
  // (the offset is taken first: at() may replace this.buf)
  u8(): number {
    const o = this.at(1);
    return this.buf.readUInt8(o);
  }
  i8(): number {
    const o = this.at(1);
    return this.buf.readInt8(o);
  }
  u16(): number {
    const o = this.at(2);
    return this.buf.readUInt16LE(o);
  }
  i16(): number {
    const o = this.at(2);
    return this.buf.readInt16LE(o);
  }
  u32(): number {
    const o = this.at(4);
    return this.buf.readUInt32LE(o);
  }
  i32(): number {
    const o = this.at(4);
    return this.buf.readInt32LE(o);
  }
  f32(): number {
    const o = this.at(4);
    return this.buf.readFloatLE(o);
  }
  f64(): number {
    const o = this.at(8);
    return this.buf.readDoubleLE(o);
  }
  u64(): bigint {
    const o = this.at(8);
    return this.buf.readBigUInt64LE(o);
  }
  i64(): bigint {
    const o = this.at(8);
    return this.buf.readBigInt64LE(o);
  }
  /** A u64 that must fit a JS number (counts, lengths, offsets). */
  count(what: string): number {
    const v = this.u64();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ScalpelError(`${this.file}: GGUF ${what} ${v} is too large`);
    return Number(v);
  }
  str(): string {
    const n = this.count('string length');
    const o = this.at(n);
    return this.buf.toString('utf8', o, o + n);
  }
}

const TYPE_BY_CODE = new Map<number, keyof typeof GGUF_VALUE_TYPES>(
  Object.entries(GGUF_VALUE_TYPES).map(([k, v]) => [v, k as keyof typeof GGUF_VALUE_TYPES]),
);

function readScalar(src: ByteSource, type: GgufScalarType): Scalar {
  switch (type) {
    case 'u8':
      return src.u8();
    case 'i8':
      return src.i8();
    case 'u16':
      return src.u16();
    case 'i16':
      return src.i16();
    case 'u32':
      return src.u32();
    case 'i32':
      return src.i32();
    case 'f32':
      return src.f32();
    case 'f64':
      return src.f64();
    case 'u64':
      return src.u64();
    case 'i64':
      return src.i64();
    case 'bool':
      return src.u8() !== 0;
    case 'string':
      return src.str();
  }
}

/** Reads a GGUF file's header: version, metadata, tensor directory (bounds-checked against the file size). */
export function readGgufHeader(file: string): GgufFile {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const src = new ByteSource(fd, file, size);
    if (src.u32() !== GGUF_MAGIC) throw new ScalpelError(`${file}: not a GGUF file (bad magic)`);
    const version = src.u32();
    if (version !== 2 && version !== 3)
      throw new ScalpelError(`${file}: GGUF version ${version} is not supported (expected 3)`);
    const nTensors = src.count('tensor count');
    const nKv = src.count('metadata count');
    const metadata = new Map<string, Scalar | Scalar[]>();
    const types = new Map<string, string>();
    const valueType = (code: number): keyof typeof GGUF_VALUE_TYPES => {
      const t = TYPE_BY_CODE.get(code);
      if (!t) throw new ScalpelError(`${file}: unknown GGUF metadata type ${code}`);
      return t;
    };
    for (let i = 0; i < nKv; i++) {
      const key = src.str();
      const type = valueType(src.u32());
      if (type === 'array') {
        const itemType = valueType(src.u32());
        if (itemType === 'array')
          throw new ScalpelError(`${file}: GGUF metadata ${key}: nested arrays are not supported`);
        const n = src.count(`${key} length`);
        const values: Scalar[] = new Array(n);
        for (let j = 0; j < n; j++) values[j] = readScalar(src, itemType);
        metadata.set(key, values);
        types.set(key, `array:${itemType}`);
      } else {
        metadata.set(key, readScalar(src, type));
        types.set(key, type);
      }
    }
    const alignment = Number(metadata.get('general.alignment') ?? GGUF_DEFAULT_ALIGNMENT);
    const raw: Array<{ name: string; shape: number[]; ggmlType: number; rel: number }> = [];
    for (let i = 0; i < nTensors; i++) {
      const name = src.str();
      const nDims = src.u32();
      if (nDims > 8) throw new ScalpelError(`${file}: GGUF tensor ${name} has ${nDims} dimensions`);
      const dims: number[] = [];
      for (let d = 0; d < nDims; d++) dims.push(src.count(`${name} dimension`));
      const ggmlType = src.u32();
      const rel = src.count(`${name} offset`);
      if (rel % alignment !== 0)
        throw new ScalpelError(`${file}: GGUF tensor ${name} offset ${rel} is not aligned to ${alignment}`);
      raw.push({ name, shape: dims.reverse(), ggmlType, rel });
    }
    const dataOffset = alignUp(src.pos, alignment);
    const tensors = raw.map(({ name, shape, ggmlType, rel }) => {
      const dtype = GGML_TYPE_NAMES.get(ggmlType);
      const offset = dataOffset + rel;
      if (dtype) {
        const bytes = shape.reduce((a, b) => a * b, 1) * (dtype === 'f32' ? 4 : 2);
        if (offset + bytes > size) throw new ScalpelError(`${file}: GGUF tensor ${name} runs past the end of the file`);
      }
      return { name, shape, ggmlType, dtype, offset };
    });
    return { version, alignment, metadata, types, tensors, dataOffset };
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads one tensor's data (f32 / f16 / bf16 only) as it is stored. */
export function readGgufTensor(file: string, info: GgufTensorInfo): Float32Array | Uint16Array {
  if (!info.dtype)
    throw new ScalpelError(
      `${file}: GGUF tensor ${info.name} has ggml type ${info.ggmlType}, only f32/f16/bf16 can be read`,
    );
  const count = info.shape.reduce((a, b) => a * b, 1);
  const bytes = Buffer.alloc(count * (info.dtype === 'f32' ? 4 : 2));
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, bytes, 0, bytes.length, info.offset);
  } finally {
    fs.closeSync(fd);
  }
  return info.dtype === 'f32'
    ? new Float32Array(bytes.buffer, bytes.byteOffset, count)
    : new Uint16Array(bytes.buffer, bytes.byteOffset, count);
}

// ---------------------------------------------------------------------------------------------------------------
// Hugging Face llama-family checkpoints → llama.cpp (architectures 'llama' and 'qwen2')

const LAYER_NAMES: Array<[RegExp, string]> = [
  [/^model\.layers\.(\d+)\.input_layernorm\.weight$/, 'blk.$1.attn_norm.weight'],
  [/^model\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)$/, 'blk.$1.attn_q.$2'],
  [/^model\.layers\.(\d+)\.self_attn\.k_proj\.(weight|bias)$/, 'blk.$1.attn_k.$2'],
  [/^model\.layers\.(\d+)\.self_attn\.v_proj\.(weight|bias)$/, 'blk.$1.attn_v.$2'],
  [/^model\.layers\.(\d+)\.self_attn\.o_proj\.(weight|bias)$/, 'blk.$1.attn_output.$2'],
  [/^model\.layers\.(\d+)\.post_attention_layernorm\.weight$/, 'blk.$1.ffn_norm.weight'],
  [/^model\.layers\.(\d+)\.mlp\.gate_proj\.weight$/, 'blk.$1.ffn_gate.weight'],
  [/^model\.layers\.(\d+)\.mlp\.up_proj\.weight$/, 'blk.$1.ffn_up.weight'],
  [/^model\.layers\.(\d+)\.mlp\.down_proj\.weight$/, 'blk.$1.ffn_down.weight'],
  [/^model\.embed_tokens\.weight$/, 'token_embd.weight'],
  [/^model\.norm\.weight$/, 'output_norm.weight'],
  [/^lm_head\.weight$/, 'output.weight'],
];

/** llama.cpp's name for a Hugging Face llama/qwen2 tensor name, or undefined if it has none (e.g. rotary caches). */
export function llamaCppTensorName(hfName: string): string | undefined {
  for (const [re, to] of LAYER_NAMES) if (re.test(hfName)) return hfName.replace(re, to);
  return undefined;
}

/**
 * The tensors as llama.cpp wants them: its names; matrices in their stored dtype; vectors (norms, biases) in f32,
 * as llama.cpp's own converter writes them. A tied lm_head is left out (llama.cpp reuses token_embd).
 */
export function llamaCppTensors(tensors: Iterable<GgufTensor>): GgufTensor[] {
  const out: GgufTensor[] = [];
  for (const t of tensors) {
    const name = llamaCppTensorName(t.name);
    if (!name) continue;
    if (t.shape.length === 1 && t.dtype !== 'f32') {
      const widen = t.dtype === 'bf16' ? bf16ToF32 : f16ToF32;
      out.push({ name, dtype: 'f32', shape: t.shape, data: Float32Array.from(t.data as Uint16Array, widen) });
    } else {
      out.push({ ...t, name });
    }
  }
  return out;
}

/** The hyperparameters llama.cpp reads for the llama family, from a Hugging Face config.json. */
export interface LlamaFamilyConfig {
  architecture: 'llama' | 'qwen2';
  name: string;
  hidden_size: number;
  num_hidden_layers: number;
  intermediate_size: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  /** dtype of most tensors (general.file_type). */
  dtype: WeightDType;
}

export function llamaFamilyMetadata(c: LlamaFamilyConfig): Array<[string, GgufValue]> {
  const a = c.architecture;
  return [
    ['general.architecture', gguf.str(a)],
    ['general.name', gguf.str(c.name)],
    ['general.file_type', gguf.u32(LLAMA_FILE_TYPES[c.dtype])],
    [`${a}.context_length`, gguf.u32(c.max_position_embeddings)],
    [`${a}.embedding_length`, gguf.u32(c.hidden_size)],
    [`${a}.block_count`, gguf.u32(c.num_hidden_layers)],
    [`${a}.feed_forward_length`, gguf.u32(c.intermediate_size)],
    [`${a}.attention.head_count`, gguf.u32(c.num_attention_heads)],
    [`${a}.attention.head_count_kv`, gguf.u32(c.num_key_value_heads)],
    [`${a}.rope.freq_base`, gguf.f32(c.rope_theta)],
    [`${a}.attention.layer_norm_rms_epsilon`, gguf.f32(c.rms_norm_eps)],
  ];
}

/** The parts of a Hugging Face tokenizer.json that a byte-level BPE tokenizer needs. */
interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number>; merges?: Array<string | [string, string]> };
  added_tokens?: Array<{ id: number; content: string; special?: boolean }>;
}

const TOKEN_TYPE = { normal: 1, control: 3, userDefined: 4, unused: 5 } as const;

/**
 * tokenizer.ggml.* for a byte-level BPE tokenizer.json ("gpt2" in llama.cpp's terms). The vocabulary is padded
 * to `vocabSize` (the embedding's rows) with unused [PADi] tokens, as llama.cpp requires one token per row.
 */
export function gpt2TokenizerMetadata(
  tok: TokenizerJson,
  opts: {
    vocabSize: number;
    pre: string;
    eosTokenId?: number;
    bosTokenId?: number;
    padTokenId?: number;
    addBos?: boolean;
    chatTemplate?: string;
  },
): Array<[string, GgufValue]> {
  const vocab = tok.model?.vocab;
  const merges = tok.model?.merges;
  if (tok.model?.type !== 'BPE' || !vocab || !merges)
    throw new ScalpelError('tokenizer.json: model: expected a BPE model with vocab and merges');
  const tokens: string[] = new Array(opts.vocabSize);
  const types: number[] = new Array(opts.vocabSize).fill(TOKEN_TYPE.normal);
  for (const [text, id] of Object.entries(vocab)) if (id < opts.vocabSize) tokens[id] = text;
  for (const a of tok.added_tokens ?? []) {
    if (a.id >= opts.vocabSize) continue;
    tokens[a.id] = a.content;
    types[a.id] = a.special ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined;
  }
  for (let i = 0; i < opts.vocabSize; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = TOKEN_TYPE.unused;
    }
  }
  const kv: Array<[string, GgufValue]> = [
    ['tokenizer.ggml.model', gguf.str('gpt2')],
    ['tokenizer.ggml.pre', gguf.str(opts.pre)],
    ['tokenizer.ggml.tokens', gguf.array('string', tokens)],
    ['tokenizer.ggml.token_type', gguf.array('i32', types)],
    [
      'tokenizer.ggml.merges',
      gguf.array(
        'string',
        merges.map((m) => (typeof m === 'string' ? m : `${m[0]} ${m[1]}`)),
      ),
    ],
  ];
  if (opts.eosTokenId !== undefined) kv.push(['tokenizer.ggml.eos_token_id', gguf.u32(opts.eosTokenId)]);
  if (opts.bosTokenId !== undefined) kv.push(['tokenizer.ggml.bos_token_id', gguf.u32(opts.bosTokenId)]);
  if (opts.padTokenId !== undefined) kv.push(['tokenizer.ggml.padding_token_id', gguf.u32(opts.padTokenId)]);
  kv.push(['tokenizer.ggml.add_bos_token', gguf.bool(opts.addBos ?? false)]);
  if (opts.chatTemplate !== undefined) kv.push(['tokenizer.chat_template', gguf.str(opts.chatTemplate)]);
  return kv;
}
