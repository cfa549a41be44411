// safetensors: an 8-byte little-endian header length N, N bytes of JSON header, then the data area.
// Header: { "__metadata__"?: {str: str}, "<name>": { dtype, shape, data_offsets: [begin, end] } } with offsets
// relative to the data area. The data area must be covered exactly: no overlaps, no holes, nothing after the end.
// Every tensor is read with positioned reads into its own ArrayBuffer, so a 5 GB shard never exists as one buffer.
import * as fsp from 'node:fs/promises';
import { endianness } from 'node:os';
import type { Tensor, WeightDType } from '../tensor.js';
import { ScalpelError, quoteUntrusted } from '../errors.js';
import { DTYPE_BYTES } from './dtype.js';
import { withAtomicFile, writeAll } from './atomic.js';

/** Headers larger than this are refused (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000;
/** Largest single read handed to the OS (Node refuses more than 2 GiB per call). */
const MAX_IO = 1 << 30;

/** Bytes per element of every dtype the format defines; only F32, F16 and BF16 can be loaded. */
const ITEM_BYTES: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
};
const LOADABLE: Record<string, WeightDType> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };
const STORED: Record<WeightDType, string> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };

/** One tensor as the header describes it. `begin`/`end` are absolute byte positions in the file. */
export interface SafetensorsEntry {
  name: string;
  /** The dtype string as stored, e.g. 'BF16'. */
  storedDtype: string;
  /** The loadable dtype, or null for dtypes Scalpel cannot load (e.g. I64, F8_E4M3). */
  dtype: WeightDType | null;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  path: string;
  fileSize: number;
  /** Absolute position of the data area (8 + header length). */
  dataStart: number;
  metadata: Record<string, string> | null;
  /** Entries in the order of their data in the file. */
  entries: Map<string, SafetensorsEntry>;
}

export interface ReadSafetensorsOptions {
  /** Load only the tensors for which this returns true (default: all). */
  filter?: (name: string, entry: SafetensorsEntry) => boolean;
  /** Told after each tensor how many data bytes have been read so far from this file, and the total to read. */
  onProgress?: (bytesRead: number, bytesTotal: number) => void;
}

const fail = (file: string, what: string): never => {
  throw new ScalpelError(`${file}: ${what}`);
};
const fmtShape = (shape: readonly number[]): string => `[${shape.join(', ')}]`;
const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;

function checkHost(): void {
  if (endianness() !== 'LE')
    throw new ScalpelError('safetensors: Scalpel needs a little-endian machine to read weights');
}

/** Reads exactly `length` bytes at `position` into `target` (at `offset`), failing with a one-line error if the file ends. */
async function readExactly(
  h: fsp.FileHandle,
  file: string,
  target: Uint8Array,
  offset: number,
  length: number,
  position: number,
  what: string,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await h.read(target, offset + done, Math.min(MAX_IO, length - done), position + done);
    if (bytesRead === 0)
      fail(
        file,
        `file is truncated: ${what} needs bytes up to ${position + length}, the file ends at ${position + done}`,
      );
    done += bytesRead;
  }
}

async function parseHeader(h: fsp.FileHandle, file: string): Promise<SafetensorsHeader> {
  const fileSize = (await h.stat()).size;
  if (fileSize < 8)
    fail(file, `file is truncated: ${fileSize} bytes, a safetensors file starts with an 8-byte header length`);
  const lenBytes = new Uint8Array(8);
  await readExactly(h, file, lenBytes, 0, 8, 0, 'the header length');
  const n = new DataView(lenBytes.buffer).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES))
    fail(file, `header length ${n} is larger than the limit of ${MAX_HEADER_BYTES} bytes (not a safetensors file?)`);
  const headerLen = Number(n);
  if (headerLen < 2) fail(file, `header length ${headerLen} is too small for a JSON object`);
  if (8 + headerLen > fileSize)
    fail(file, `file is truncated: header length ${headerLen} needs ${8 + headerLen} bytes, the file has ${fileSize}`);
  const raw = new Uint8Array(headerLen);
  await readExactly(h, file, raw, 0, headerLen, 8, 'the header');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    return fail(file, 'header is not valid UTF-8 (not a safetensors file?)');
  }
  if (!text.startsWith('{')) fail(file, 'header does not start with "{" (not a safetensors file?)');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return fail(file, `header is not valid JSON (${(err as Error).message.split('\n')[0]})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fail(file, 'header is not a JSON object');

  const dataStart = 8 + headerLen;
  const dataSize = fileSize - dataStart;
  let metadata: Record<string, string> | null = null;
  const list: SafetensorsEntry[] = [];
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (value === null || typeof value !== 'object' || Array.isArray(value))
        fail(file, 'header field __metadata__ is not an object of strings');
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(file, `header field __metadata__.${quoteUntrusted(k, 80)} is not a string`);
      }
      metadata = value as Record<string, string>;
      continue;
    }
    const where = `tensor ${quoteUntrusted(name, 120, "'")}`;
    if (value === null || typeof value !== 'object' || Array.isArray(value))
      fail(file, `${where}: header entry is not an object`);
    const e = value as Record<string, unknown>;
    const storedDtype = e['dtype'];
    if (typeof storedDtype !== 'string') fail(file, `${where}: field dtype is missing or not a string`);
    const item = ITEM_BYTES[storedDtype as string];
    if (item === undefined)
      fail(
        file,
        `${where}: unknown dtype ${quoteUntrusted(storedDtype, 40)}, expected one of ${Object.keys(ITEM_BYTES).join(', ')}`,
      );
    const shape = e['shape'];
    if (!Array.isArray(shape) || !shape.every(isCount))
      fail(file, `${where}: field shape is not a list of non-negative integers`);
    const offsets = e['data_offsets'];
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      fail(file, `${where}: field data_offsets is not a pair of non-negative integers`);
    }
    const [b, en] = offsets as [number, number];
    if (en < b) fail(file, `${where}: data_offsets [${b}, ${en}] end before they begin`);
    const numel = (shape as number[]).reduce((a, d) => a * d, 1);
    const want = numel * item!;
    if (en - b !== want) {
      fail(
        file,
        `${where}: data_offsets [${b}, ${en}] hold ${en - b} bytes, expected ${want} for shape ${fmtShape(shape as number[])} of ${storedDtype}`,
      );
    }
    if (en > dataSize) {
      fail(
        file,
        `file is truncated or the header lies: ${where} data_offsets [${b}, ${en}] run past the end of the data area (${dataSize} bytes)`,
      );
    }
    list.push({
      name,
      storedDtype: storedDtype as string,
      dtype: LOADABLE[storedDtype as string] ?? null,
      shape: shape as number[],
      begin: dataStart + b,
      end: dataStart + en,
    });
  }
  list.sort((x, y) => x.begin - y.begin || x.end - y.end);
  let covered = dataStart;
  for (const e of list) {
    if (e.begin < covered) {
      const prev = list[list.indexOf(e) - 1]!;
      fail(file, `tensor '${e.name}' data_offsets overlap those of tensor '${prev.name}'`);
    }
    if (e.begin > covered)
      fail(
        file,
        `data area has a hole of ${e.begin - covered} bytes before tensor '${e.name}' (header offsets are inconsistent)`,
      );
    covered = e.end;
  }
  if (covered !== fileSize)
    fail(
      file,
      `file has ${fileSize - covered} bytes after the last tensor's data (header sizes are inconsistent with the file size ${fileSize})`,
    );
  return { path: file, fileSize, dataStart, metadata, entries: new Map(list.map((e) => [e.name, e])) };
}

async function openFile(file: string): Promise<fsp.FileHandle> {
  try {
    return await fsp.open(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ScalpelError(`${file}: file does not exist`);
    if (code === 'EISDIR') throw new ScalpelError(`${file}: is a directory, expected a .safetensors file`);
    throw new ScalpelError(`${file}: cannot open (${code ?? (err as Error).message})`);
  }
}

/** Reads and validates only the header: tensor names, dtypes, shapes and offsets, without touching the data. */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  const h = await openFile(file);
  try {
    return await parseHeader(h, file);
  } finally {
    await h.close();
  }
}

function viewFor(dtype: WeightDType, buf: ArrayBuffer): Float32Array | Uint16Array {
  return dtype === 'f32' ? new Float32Array(buf) : new Uint16Array(buf);
}

/** The entry's dtype, or a one-line error naming the tensor when Scalpel cannot load it. */
function loadableDtype(file: string, e: SafetensorsEntry): WeightDType {
  if (e.dtype === null) fail(file, `tensor '${e.name}' has dtype ${e.storedDtype}, Scalpel can load F32, F16 and BF16`);
  return e.dtype!;
}

/** An open safetensors file: its validated header, and tensors read one at a time with positioned reads. */
export interface SafetensorsFile {
  header: SafetensorsHeader;
  /** One tensor in its own ArrayBuffer (f32 as Float32Array, f16/bf16 as raw bits in a Uint16Array). */
  read(name: string): Promise<Tensor>;
  close(): Promise<void>;
}

/** Opens a safetensors file and validates its header; the caller closes it. */
export async function openSafetensors(file: string): Promise<SafetensorsFile> {
  checkHost();
  const h = await openFile(file);
  let header: SafetensorsHeader;
  try {
    header = await parseHeader(h, file);
  } catch (err) {
    await h.close();
    throw err;
  }
  return {
    header,
    async read(name) {
      const e = header.entries.get(name);
      if (!e) return fail(file, `has no tensor '${name}'`);
      const dtype = loadableDtype(file, e);
      const size = e.end - e.begin;
      const buf = new ArrayBuffer(size);
      await readExactly(h, file, new Uint8Array(buf), 0, size, e.begin, `tensor '${e.name}'`);
      return { name: e.name, dtype, shape: e.shape.slice(), data: viewFor(dtype, buf) };
    },
    close: () => h.close(),
  };
}

/**
 * Reads a safetensors file into name → Tensor (f32 as Float32Array, f16/bf16 as raw bits in a Uint16Array), each
 * tensor in its own ArrayBuffer. Bounds and consistency are checked before any data is read; a dtype that Scalpel
 * cannot load is an error naming the tensor (unless `filter` leaves it out).
 */
export async function readSafetensors(file: string, opts: ReadSafetensorsOptions = {}): Promise<Map<string, Tensor>> {
  const f = await openSafetensors(file);
  try {
    const wanted = [...f.header.entries.values()].filter((e) => !opts.filter || opts.filter(e.name, e));
    for (const e of wanted) loadableDtype(file, e); // every dtype checked before any data is read
    const total = wanted.reduce((a, e) => a + (e.end - e.begin), 0);
    let done = 0;
    const out = new Map<string, Tensor>();
    for (const e of wanted) {
      out.set(e.name, await f.read(e.name));
      done += e.end - e.begin;
      opts.onProgress?.(done, total);
    }
    return out;
  } finally {
    await f.close();
  }
}

/** A tensor to write, before its data exists. */
export interface TensorSpec {
  name: string;
  dtype: WeightDType;
  shape: number[];
}

const numelOf = (shape: readonly number[]) => shape.reduce((a, d) => a * d, 1);

/** The one-line complaint about data that does not fit its spec, or null. */
function dataMismatch(file: string, spec: TensorSpec, data: Float32Array | Uint16Array): string | null {
  const numel = numelOf(spec.shape);
  const okArray = spec.dtype === 'f32' ? data instanceof Float32Array : data instanceof Uint16Array;
  return okArray && data.length === numel
    ? null
    : `${file}: tensor '${spec.name}' has ${data.length} ${data.constructor.name} values, expected ${numel} (shape ${fmtShape(spec.shape)} of ${spec.dtype})`;
}

/**
 * Writes a safetensors file atomically (temp file + rename) from tensor specs, asking `produce` for each tensor's
 * data in file order and writing it before asking for the next, so only one tensor need exist in memory. The
 * header is padded with spaces to a multiple of 8 bytes and tensors are laid out widest dtype first, then by
 * name, so every tensor is aligned to its element size.
 */
export async function writeSafetensorsStreaming(
  file: string,
  specs: readonly TensorSpec[],
  produce: (spec: TensorSpec) => Promise<Float32Array | Uint16Array> | Float32Array | Uint16Array,
  metadata?: Record<string, string>,
): Promise<void> {
  checkHost();
  const seen = new Set<string>();
  for (const t of specs) {
    if (t.name === '__metadata__') throw new ScalpelError(`${file}: tensor name __metadata__ is reserved`);
    if (seen.has(t.name)) throw new ScalpelError(`${file}: tensor '${t.name}' is given twice`);
    seen.add(t.name);
    if (DTYPE_BYTES[t.dtype] === undefined)
      throw new ScalpelError(`${file}: tensor '${t.name}' has dtype ${String(t.dtype)}, expected f32, f16 or bf16`);
  }
  const list = [...specs].sort(
    (a, b) => DTYPE_BYTES[b.dtype] - DTYPE_BYTES[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header['__metadata__'] = metadata;
  let offset = 0;
  for (const t of list) {
    const size = numelOf(t.shape) * DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: STORED[t.dtype], shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  const jsonBytes = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - ((8 + jsonBytes) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.byteLength));
  await withAtomicFile(file, async (h) => {
    await writeAll(h, len);
    await writeAll(h, headerBytes);
    for (const t of list) {
      const data = await produce(t);
      const bad = dataMismatch(file, t, data);
      if (bad) throw new ScalpelError(bad);
      await writeAll(h, data);
    }
  });
}

/** Writes in-memory tensors as a safetensors file, atomically (see writeSafetensorsStreaming for the layout). */
export async function writeSafetensors(
  file: string,
  tensors: Map<string, Tensor> | Iterable<Tensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  const list = [...(tensors instanceof Map ? tensors.values() : tensors)];
  // Bad data fails before the temp file is created.
  for (const t of list) {
    if (t.name === '__metadata__' || DTYPE_BYTES[t.dtype] === undefined) continue; // reported by the writer
    const bad = dataMismatch(file, t, t.data);
    if (bad) throw new ScalpelError(bad);
  }
  const byName = new Map(list.map((t) => [t.name, t]));
  await writeSafetensorsStreaming(
    file,
    list.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })),
    (spec) => byName.get(spec.name)!.data,
    metadata,
  );
}
