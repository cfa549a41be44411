// Generators of hostile inputs for the fuzz targets: byte-level mutations of real seed files (bit flips,
// truncation, splices, inserted junk, overwritten "interesting" integers) and JSON-level ones (a value anywhere in
// the document swapped for a huge number, a wrong type, a control-character string, deep nesting, or dropped).
import fc from 'fast-check';

/** Strings a terminal would act on, and others that trip parsers. */
export const HOSTILE_STRINGS = [
  '\x1b[31mred\x1b[0m',
  '\x1b]0;pwned\x07',
  '\u009b31m',
  '\x1b[2J\x1b[H',
  'a\rb',
  'tab\there',
  'nul\x00byte',
  '\u202eevil',
  '',
  ' ',
  '..',
  '../../etc/passwd',
  '{{ 7*7 }}',
  '%s%n',
  '\ud800',
  '😀',
  'x'.repeat(5000),
];

/** Integers and floats at the edges of every width a file format uses. */
export const HOSTILE_NUMBERS = [
  0,
  -1,
  1,
  2,
  255,
  65535,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32,
  2 ** 53 - 1,
  2 ** 53,
  2 ** 63,
  2 ** 64,
  1e308,
  -1e308,
  0.5,
  -0.0,
  1e-320,
];

/** Nested arrays / objects `depth` deep. */
function nested(depth: number, kind: 'array' | 'object'): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = kind === 'array' ? [v] : { a: v };
  return v;
}

/** Any JSON value a hostile file might hold. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(...HOSTILE_STRINGS),
  fc.constantFrom(...HOSTILE_NUMBERS),
  fc.constantFrom(null, true, false, [], {}),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.jsonValue({ maxDepth: 3 }),
  fc
    .tuple(fc.integer({ min: 1, max: 3000 }), fc.constantFrom('array' as const, 'object' as const))
    .map(([d, k]) => nested(d, k)),
);

type ByteOp =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; value: number }
  | { op: 'truncate'; at: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; length: number }
  | { op: 'splice'; at: number; from: number; length: number }
  | { op: 'number'; at: number; value: number; width: 4 | 8 };

const position = fc.double({ min: 0, max: 1, noNaN: true });
const byteOp: fc.Arbitrary<ByteOp> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: position, bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('set' as const), at: position, value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: position }),
  fc.record({ op: fc.constant('insert' as const), at: position, bytes: fc.uint8Array({ maxLength: 64 }) }),
  fc.record({ op: fc.constant('delete' as const), at: position, length: fc.integer({ min: 1, max: 256 }) }),
  fc.record({
    op: fc.constant('splice' as const),
    at: position,
    from: position,
    length: fc.integer({ min: 1, max: 512 }),
  }),
  fc.record({
    op: fc.constant('number' as const),
    at: position,
    value: fc.constantFrom(...HOSTILE_NUMBERS),
    width: fc.constantFrom(4 as const, 8 as const),
  }),
);

function applyByteOp(data: Uint8Array, op: ByteOp, bias: number): Uint8Array {
  // `bias` pulls positions toward the start, where headers live, as often as not.
  const at = (p: number, n: number) => Math.min(n, Math.floor((bias > 0 ? p ** 3 : p) * n));
  const n = data.length;
  switch (op.op) {
    case 'flip': {
      if (n === 0) return data;
      const out = data.slice();
      const i = Math.min(n - 1, at(op.at, n));
      out[i] = out[i]! ^ (1 << op.bit);
      return out;
    }
    case 'set': {
      if (n === 0) return data;
      const out = data.slice();
      out[Math.min(n - 1, at(op.at, n))] = op.value;
      return out;
    }
    case 'truncate':
      return data.slice(0, at(op.at, n));
    case 'insert': {
      const i = at(op.at, n);
      return concat(data.subarray(0, i), op.bytes, data.subarray(i));
    }
    case 'delete': {
      const i = at(op.at, n);
      return concat(data.subarray(0, i), data.subarray(i + op.length));
    }
    case 'splice': {
      const i = at(op.at, n);
      const j = at(op.from, n);
      return concat(data.subarray(0, i), data.subarray(j, j + op.length), data.subarray(i));
    }
    case 'number': {
      const out = data.slice();
      const i = at(op.at, n);
      if (i + op.width > n) return out;
      const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
      if (op.width === 4) view.setUint32(i, op.value >>> 0, true);
      else view.setBigUint64(i, BigInt.asUintN(64, BigInt(Math.trunc(Math.min(op.value, 2 ** 64)))), true);
      return out;
    }
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A seed file with 1–6 byte-level mutations. */
export function mutatedBytes(seeds: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  return fc
    .record({
      seed: fc.integer({ min: 0, max: seeds.length - 1 }),
      ops: fc.array(byteOp, { minLength: 1, maxLength: 6 }),
      bias: fc.integer({ min: 0, max: 1 }),
    })
    .map(({ seed, ops, bias }) => ops.reduce((d, op) => applyByteOp(d, op, bias), seeds[seed]!));
}

/** Every path to a value inside a JSON document (the root included), down to a depth of 64 (iterative: documents may nest deeply). */
function paths(value: unknown): (string | number)[][] {
  const out: (string | number)[][] = [];
  const todo: [unknown, (string | number)[]][] = [[value, []]];
  while (todo.length > 0 && out.length < 20000) {
    const [v, prefix] = todo.pop()!;
    out.push(prefix);
    if (prefix.length >= 64) continue;
    if (Array.isArray(v)) {
      for (const [i, x] of v.entries()) todo.push([x, [...prefix, i]]);
    } else if (v !== null && typeof v === 'object')
      for (const [k, x] of Object.entries(v)) todo.push([x, [...prefix, k]]);
  }
  return out;
}

type JsonOp = { at: number; kind: 'replace' | 'delete' | 'add'; value: unknown; key: string };

function applyJsonOp(doc: unknown, op: JsonOp): unknown {
  const all = paths(doc);
  const path = all[Math.floor(op.at * all.length)] ?? [];
  if (path.length === 0) return op.kind === 'replace' ? op.value : doc;
  const parentPath = path.slice(0, -1);
  let parent = doc as Record<string | number, unknown>;
  for (const k of parentPath) parent = parent[k] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (op.kind === 'replace') parent[last] = op.value;
  else if (op.kind === 'delete') {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  } else if (!Array.isArray(parent)) parent[op.key] = op.value;
  else parent.push(op.value);
  return doc;
}

const jsonOp: fc.Arbitrary<JsonOp> = fc.record({
  at: position,
  kind: fc.constantFrom('replace' as const, 'replace' as const, 'delete' as const, 'add' as const),
  value: hostileValue,
  key: fc.oneof(fc.constantFrom(...HOSTILE_STRINGS), fc.string({ maxLength: 12 })),
});

/** A seed JSON document with 1–4 value-level mutations, as text. */
export function mutatedJson(seeds: readonly string[]): fc.Arbitrary<string> {
  return fc
    .record({
      seed: fc.integer({ min: 0, max: seeds.length - 1 }),
      ops: fc.array(jsonOp, { minLength: 1, maxLength: 4 }),
    })
    .map(({ seed, ops }) => JSON.stringify(ops.reduce((d, op) => applyJsonOp(d, op), JSON.parse(seeds[seed]!))));
}

/** Text files: JSON-level mutations half the time, byte-level the other half (which may break UTF-8 too). */
export function mutatedText(seeds: readonly string[], json = true): fc.Arbitrary<Uint8Array> {
  const enc = new TextEncoder();
  const bytes = mutatedBytes(seeds.map((s) => enc.encode(s)));
  return json
    ? fc.oneof(
        mutatedJson(seeds).map((s) => enc.encode(s)),
        bytes,
      )
    : bytes;
}
