// GGUF v3, the single-file model format of llama.cpp: a streaming writer and a bounds-checked reader of the header
// (metadata and tensor directory) and of tensor data. The file format only: what a Hugging Face model becomes in
// llama.cpp's terms (tensor names, metadata keys, tokenizer) is src/model/llamacpp.ts.
//
// Layout (all little-endian): "GGUF", u32 version, u64 tensor count, u64 metadata count; the metadata as
// (string key, u32 value type, value); the tensor directory as (string name, u32 n_dims, u64 dims innermost first,
// u32 ggml type, u64 offset into the data section); zero padding to the alignment; the tensor data, each tensor
// starting on a multiple of the alignment. Strings are u64 byte length + UTF-8 bytes.
import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { ScalpelError, check } from '../errors.js';
import { withAtomicFile, writeAll } from './atomic.js';
import { Q8_0_BLOCK, q8_0Bytes } from './ggml-quant.js';

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

/** ggml tensor types this writer emits, with their codes in the file. */
export const GGML_TYPES = { f32: 0, f16: 1, q8_0: 8, bf16: 30 } as const;
export type GgmlType = keyof typeof GGML_TYPES;
const GGML_TYPE_NAMES = new Map<number, GgmlType>(Object.entries(GGML_TYPES).map(([k, v]) => [v, k as GgmlType]));
/** llama.cpp's general.file_type for "mostly" this type (LLAMA_FTYPE_ALL_F32, MOSTLY_F16, MOSTLY_Q8_0, MOSTLY_BF16). */
export const LLAMA_FILE_TYPES = { f32: 0, f16: 1, q8_0: 7, bf16: 32 } as const;

/** A tensor to write, before its data exists. `shape` is in PyTorch order (outermost first); the file stores it innermost first. */
export interface GgufTensorSpec {
  name: string;
  dtype: GgmlType;
  shape: number[];
}

/** A tensor with its data: f32 → Float32Array; f16 / bf16 → Uint16Array of raw bits; q8_0 → Uint8Array of blocks. */
export interface GgufTensor extends GgufTensorSpec {
  data: Float32Array | Uint16Array | Uint8Array;
}

/** Bytes of a tensor of this type and shape (q8_0 needs the innermost dimension to be a multiple of 32). */
export function ggmlBytes(dtype: GgmlType, shape: readonly number[]): number {
  const count = shape.reduce((a, b) => a * b, 1);
  switch (dtype) {
    case 'f32':
      return count * 4;
    case 'f16':
    case 'bf16':
      return count * 2;
    case 'q8_0':
      return q8_0Bytes(count);
  }
}

/** Whether data comes in the array type of its ggml type. */
function dataMatches(dtype: GgmlType, data: ArrayBufferView): boolean {
  if (dtype === 'f32') return data instanceof Float32Array;
  if (dtype === 'q8_0') return data instanceof Uint8Array;
  return data instanceof Uint16Array;
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

/**
 * Writes a GGUF v3 file atomically (temp file + rename) from tensor specs, asking `produce` for each tensor's data in
 * order and writing it before asking for the next, so only one tensor need exist in memory. Metadata keys are
 * written in the given order; `general.alignment` is added when the alignment is not the default 32.
 */
export async function writeGgufStreaming(
  target: string,
  metadata: Iterable<[string, GgufValue]>,
  specs: readonly GgufTensorSpec[],
  produce: (spec: GgufTensorSpec, index: number) => Promise<GgufTensor['data']> | GgufTensor['data'],
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
  const sizes: number[] = [];
  for (const t of specs) {
    check(!names.has(t.name), `GGUF tensors: ${t.name} given twice`);
    names.add(t.name);
    check(GGML_TYPES[t.dtype] !== undefined, `GGUF tensor ${t.name}: unknown type ${String(t.dtype)}`);
    check(
      t.shape.every((n) => Number.isInteger(n) && n >= 0),
      `GGUF tensor ${t.name}: shape [${t.shape}] must be whole numbers`,
    );
    check(
      t.dtype !== 'q8_0' || (t.shape.at(-1) ?? 0) % Q8_0_BLOCK === 0,
      `GGUF tensor ${t.name}: q8_0 needs rows of a multiple of ${Q8_0_BLOCK} values, shape is [${t.shape}]`,
    );
    sizes.push(ggmlBytes(t.dtype, t.shape));
  }

  const out = new ByteSink();
  out.u32(GGUF_MAGIC);
  out.u32(GGUF_VERSION);
  out.u64(specs.length);
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
  for (const [i, t] of specs.entries()) {
    out.str(t.name);
    out.u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) out.u64(t.shape[d]!);
    out.u32(GGML_TYPES[t.dtype]);
    out.u64(offset);
    offsets.push(offset);
    offset = alignUp(offset + sizes[i]!, alignment);
  }
  out.zeros(alignUp(out.length, alignment) - out.length);

  await withAtomicFile(target, async (h: FileHandle) => {
    await writeAll(h, out.bytes());
    let pos = 0;
    const pad = new Uint8Array(alignment);
    for (const [i, spec] of specs.entries()) {
      const data = await produce(spec, i);
      if (!dataMatches(spec.dtype, data) || data.byteLength !== sizes[i])
        throw new ScalpelError(
          `GGUF tensor ${spec.name}: got ${data.byteLength} bytes of ${data.constructor.name}, expected ${sizes[i]} bytes of ${spec.dtype} for shape [${spec.shape}]`,
        );
      if (offsets[i]! > pos) await writeAll(h, pad.subarray(0, offsets[i]! - pos));
      await writeAll(h, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      pos = offsets[i]! + data.byteLength;
    }
  });
}

/** Writes in-memory tensors as a GGUF file (see writeGgufStreaming); bad data fails before anything is written. */
export async function writeGguf(
  target: string,
  metadata: Iterable<[string, GgufValue]>,
  tensors: GgufTensor[],
  opts: { alignment?: number } = {},
): Promise<void> {
  for (const t of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    check(
      dataMatches(t.dtype, t.data),
      `GGUF tensor ${t.name}: ${t.dtype} data must be ${t.dtype === 'f32' ? 'a Float32Array' : t.dtype === 'q8_0' ? 'a Uint8Array' : 'a Uint16Array'}`,
    );
    check(
      t.dtype === 'q8_0' || count === t.data.length,
      `GGUF tensor ${t.name}: shape [${t.shape}] has ${count} elements, data has ${t.data.length}`,
    );
  }
  await writeGgufStreaming(target, metadata, tensors, (_, i) => tensors[i]!.data, opts);
}

// ---------------------------------------------------------------------------------------------------------------
// Reading (header and directory; tensor data is located, not loaded)

export interface GgufTensorInfo {
  name: string;
  /** PyTorch order (outermost first), as given to writeGguf. */
  shape: number[];
  /** ggml type code (0 f32, 1 f16, 8 q8_0, 30 bf16, …) and its name when it is one of those. */
  ggmlType: number;
  dtype: GgmlType | undefined;
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
        if (dtype === 'q8_0' && (shape.at(-1) ?? 0) % Q8_0_BLOCK !== 0)
          throw new ScalpelError(`${file}: GGUF tensor ${name} is q8_0 with rows of ${shape.at(-1)} values`);
        if (offset + ggmlBytes(dtype, shape) > size)
          throw new ScalpelError(`${file}: GGUF tensor ${name} runs past the end of the file`);
      }
      return { name, shape, ggmlType, dtype, offset };
    });
    return { version, alignment, metadata, types, tensors, dataOffset };
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads one tensor's data as it is stored (f32, f16 / bf16 raw bits, q8_0 blocks). */
export function readGgufTensor(file: string, info: GgufTensorInfo): GgufTensor['data'] {
  if (!info.dtype)
    throw new ScalpelError(
      `${file}: GGUF tensor ${info.name} has ggml type ${info.ggmlType}, only f32/f16/bf16/q8_0 can be read`,
    );
  const bytes = Buffer.alloc(ggmlBytes(info.dtype, info.shape));
  const fd = fs.openSync(file, 'r');
  try {
    if (fs.readSync(fd, bytes, 0, bytes.length, info.offset) !== bytes.length)
      throw new ScalpelError(`${file}: GGUF tensor ${info.name} runs past the end of the file`);
  } finally {
    fs.closeSync(fd);
  }
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  if (info.dtype === 'f32') return new Float32Array(buf);
  if (info.dtype === 'q8_0') return new Uint8Array(buf);
  return new Uint16Array(buf);
}
