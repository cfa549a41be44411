// Kill-and-resume: runs a `scalpel` command once uninterrupted (the reference), then again and again from the same
// starting state, each time killed with SIGKILL after a seeded random delay in [0, T) (T: the reference's wall time),
// and rerun to completion. While a killed attempt runs, its output folders are polled, and after the kill they are
// checked again: every file under a final name must be whole (JSON parses, JSONL lines parse, a safetensors header
// matches the file's size, and anything else equals the reference's bytes). After the rerun, every output file must
// equal the reference byte for byte (run.json after dropping its wall-clock fields), and no temp file may be left.
// The CLI runs as a child process while the test's servers live in this one, so children are awaited, never
// spawnSync'ed.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mulberry32 } from '../../src/rng.js';
import { BIN, ROOT } from './cli.js';

export interface KillCase {
  name: string;
  args: string[];
  /** Added to a copy of this process's environment (HF_ and SCALPEL_DATA settings of the caller are removed). */
  env?: Record<string, string>;
  /** Folders the command writes into, compared with the reference (made empty before every attempt). */
  outputs: string[];
  /** Compare what the command prints on stdout too (e.g. `generate --json`). */
  compareStdout?: boolean;
  /** Called before every attempt's first start, after the outputs are removed (e.g. to reset a server's faults). */
  reset?: () => void;
}

export interface KillReport {
  name: string;
  /** Uninterrupted wall time, ms (where the kill delays are drawn from). */
  referenceMs: number;
  points: number;
  /** Attempts killed before they finished (the others finished before their delay came). */
  killed: number;
  /** Attempts whose rerun gave outputs byte-identical to the reference. */
  identical: number;
  /** Problems found: partial files under final names, different outputs, leftover temp files. Empty when all is well. */
  problems: string[];
}

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
  ms: number;
}

function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/^(HF_|HUGGING)/.test(k) || k === 'SCALPEL_DATA') delete env[k];
  return { ...env, ...extra };
}

/** Runs the command; with `killAfterMs`, SIGKILLs it then (if it is still running). `onTick` runs every 20 ms. */
function start(c: KillCase, killAfterMs?: number, onTick?: () => void): Promise<Outcome> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [BIN, ...c.args], { cwd: ROOT, env: childEnv(c.env) });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const killer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  const ticker = onTick ? setInterval(onTick, 20) : undefined;
  return new Promise((resolve) =>
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      clearInterval(ticker);
      resolve({ code, signal, out, err, ms: performance.now() - t0 });
    }),
  );
}

/** A name that only ever holds bytes in progress: atomic writes' temp files, Hub partial downloads, bake's folder. */
export function isTempName(name: string): boolean {
  return name.startsWith('.') || name.endsWith('.incomplete') || /\.baking-\d+$/.test(name);
}

/** Every file under `root` (following symlinks to files), by path relative to it; temp names listed apart. */
function walk(root: string): { files: string[]; temps: string[] } {
  const files: string[] = [];
  const temps: string[] = [];
  const visit = (dir: string, rel: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return; // not there yet, or removed while we looked
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (isTempName(e.name)) temps.push(r);
      else if (e.isDirectory()) visit(path.join(dir, e.name), r);
      else files.push(r);
    }
  };
  visit(root, '');
  return { files, temps };
}

/** Why `bytes` cannot be a whole file of its kind, or null when it can. */
function incompleteReason(name: string, bytes: Buffer, reference: Buffer | undefined): string | null {
  if (name.endsWith('.json')) {
    try {
      JSON.parse(bytes.toString('utf8'));
      return null;
    } catch {
      return 'JSON does not parse';
    }
  }
  if (name.endsWith('.jsonl')) {
    const text = bytes.toString('utf8');
    if (!text.endsWith('\n')) return 'JSONL does not end with a newline';
    try {
      for (const line of text.split('\n')) if (line !== '') JSON.parse(line);
      return null;
    } catch {
      return 'a JSONL line does not parse';
    }
  }
  if (name.endsWith('.safetensors')) {
    if (bytes.length < 8) return 'safetensors shorter than its header length';
    const n = Number(bytes.readBigUInt64LE(0));
    if (8 + n > bytes.length) return 'safetensors header runs past the end';
    try {
      const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<
        string,
        { data_offsets?: number[] }
      >;
      let end = 0;
      for (const [k, v] of Object.entries(header)) if (k !== '__metadata__') end = Math.max(end, v.data_offsets![1]!);
      return 8 + n + end === bytes.length
        ? null
        : `safetensors is ${bytes.length} bytes, its header says ${8 + n + end}`;
    } catch {
      return 'safetensors header does not parse';
    }
  }
  if (reference && !reference.equals(bytes)) return 'differs from the reference';
  return null;
}

/**
 * The bookkeeping no two runs share: wall-clock fields (run.json's stage times, sweep.json's point times), and in
 * sweep.json what the work cost (forward passes per point and per generation pass), which depends on how a killed
 * sweep's settings were split between its attempts. Every figure and response stays in the comparison.
 */
function normalise(rel: string, bytes: Buffer): Buffer {
  const name = path.basename(rel);
  if (name !== 'run.json' && name !== 'sweep.json') return bytes;
  type Obj = Record<string, unknown>;
  const j = JSON.parse(bytes.toString('utf8')) as Obj;
  delete j['model_load_seconds'];
  delete j['cost'];
  for (const s of Object.values((j['stages'] ?? {}) as Record<string, Obj>)) {
    delete s['seconds'];
    delete s['finished_at'];
  }
  for (const p of (j['points'] ?? []) as Obj[])
    for (const k of ['seconds', 'finished_at', 'forward_passes']) delete p[k];
  return Buffer.from(JSON.stringify(j));
}

type Snapshot = Map<string, Buffer>;

function snapshot(c: KillCase): Snapshot {
  const m: Snapshot = new Map();
  c.outputs.forEach((root, i) => {
    for (const rel of walk(root).files) {
      let bytes: Buffer;
      try {
        bytes = fs.readFileSync(path.join(root, rel));
      } catch (e) {
        bytes = Buffer.from(`unreadable: ${(e as NodeJS.ErrnoException).code}`); // e.g. a dangling snapshot link
      }
      m.set(`${i}:${rel}`, bytes);
    }
  });
  return m;
}

/** Temp files left in the outputs or beside them (bake's temp folder is a sibling of its output). */
function leftovers(c: KillCase): string[] {
  const found: string[] = [];
  for (const root of c.outputs) {
    found.push(...walk(root).temps.map((t) => path.join(root, t)));
    const parent = path.dirname(root);
    const base = path.basename(root);
    if (fs.existsSync(parent))
      for (const n of fs.readdirSync(parent)) if (n.startsWith(base) && isTempName(n)) found.push(path.join(parent, n));
  }
  return found;
}

function clear(c: KillCase): void {
  for (const root of c.outputs) {
    fs.rmSync(root, { recursive: true, force: true });
    const parent = path.dirname(root);
    if (fs.existsSync(parent))
      for (const n of fs.readdirSync(parent))
        if (n.startsWith(path.basename(root)) && isTempName(n))
          fs.rmSync(path.join(parent, n), { recursive: true, force: true });
  }
  c.reset?.();
}

/** Checks every final-named file under the outputs; a file seen before with the same size and mtime is skipped. */
function partialChecker(c: KillCase, reference: Snapshot, problems: Set<string>): () => void {
  const seen = new Map<string, string>();
  return () => {
    c.outputs.forEach((root, i) => {
      for (const rel of walk(root).files) {
        const p = path.join(root, rel);
        let bytes: Buffer;
        let stamp: string;
        try {
          const st = fs.statSync(p);
          stamp = `${st.size}:${st.mtimeMs}`;
          if (seen.get(p) === stamp) continue;
          bytes = fs.readFileSync(p);
        } catch {
          continue; // replaced or removed between the listing and the read
        }
        seen.set(p, stamp);
        const why = incompleteReason(rel, bytes, reference.get(`${i}:${rel}`));
        if (why) problems.add(`${rel} under its final name: ${why}`);
      }
    });
  };
}

/** Where two texts part, for the report: a few characters of each around the first differing byte. */
function firstDifference(a: Buffer, b: Buffer): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  const around = (x: Buffer) => JSON.stringify(x.subarray(Math.max(0, i - 40), i + 40).toString('utf8'));
  return ` at byte ${i}: ${around(a)} vs ${around(b)}`;
}

function compare(reference: Snapshot, got: Snapshot): string[] {
  const out: string[] = [];
  for (const [k, ref] of reference) {
    const g = got.get(k);
    if (!g) out.push(`${k.slice(2)} missing after the rerun`);
    else {
      const [a, b] = [normalise(k.slice(2), ref), normalise(k.slice(2), g)];
      if (!a.equals(b)) out.push(`${k.slice(2)} differs from the reference${firstDifference(a, b)}`);
    }
  }
  for (const k of got.keys()) if (!reference.has(k)) out.push(`${k.slice(2)} is not in the reference`);
  return out;
}

/** The reference run, then `points` kill-and-resume attempts with delays from mulberry32(`seed`). */
export async function killAndResume(c: KillCase, points: number, seed: number): Promise<KillReport> {
  clear(c);
  const ref = await start(c);
  if (ref.code !== 0) throw new Error(`${c.name}: reference run failed (${ref.code}): ${ref.err}`);
  const reference = snapshot(c);
  const report: KillReport = { name: c.name, referenceMs: ref.ms, points, killed: 0, identical: 0, problems: [] };
  const rand = mulberry32(seed);
  for (let i = 0; i < points; i++) {
    const delay = Math.floor(rand() * ref.ms);
    clear(c);
    const problems = new Set<string>();
    const check = partialChecker(c, reference, problems);
    const first = await start(c, delay, check);
    check();
    if (first.signal === 'SIGKILL') report.killed++;
    else if (first.code !== 0) problems.add(`attempt ended with ${first.code} before its kill: ${first.err.trim()}`);
    const again = await start(c, undefined, check);
    if (again.code !== 0) problems.add(`rerun failed (${again.code}): ${again.err.trim()}`);
    const diffs = compare(reference, snapshot(c));
    if (c.compareStdout && again.out !== ref.out) diffs.push('stdout differs from the reference');
    for (const t of leftovers(c)) problems.add(`temp file left after the rerun: ${t}`);
    if (diffs.length === 0 && again.code === 0) report.identical++;
    for (const p of [...problems, ...diffs]) report.problems.push(`kill ${i + 1} at ${delay} ms: ${p}`);
  }
  clear(c);
  return report;
}

/** One line per case: the figures the issue asks for. */
export function formatReport(r: KillReport): string {
  return `${r.name}: ${r.points} kill points over ${Math.round(r.referenceMs)} ms, ${r.killed} killed mid-run, ${r.identical}/${r.points} reruns byte-identical, ${r.problems.length} problems`;
}
