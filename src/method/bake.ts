// Baking a directional ablation into the weights (the paper's "weight orthogonalization"): every matrix that writes
// into the residual stream (the token embedding, each attention output projection and each MLP down projection,
// with their biases) gets the direction d projected out of its output, W ← (I − d dᵀ) W. The residual stream then
// never holds a component along d, which is exactly what ablating d at every layer, position and step does at run
// time, so the new model directory runs with no hooks and costs nothing extra at inference. It is a standard
// Hugging Face directory that transformers, llama.cpp's converter and Scalpel itself load unchanged.
//
// Exact only when each block's output joins the residual stream as it leaves the projection. Gemma 2/3 normalise
// it first (sandwich norms), and the norm's per-channel gain brings d back, so they are refused with a pointer to
// run-time ablation. Affine ablation and activation addition need a bias on the residual stream that these
// architectures do not have, so they are refused too; bakeableDirection says which interventions can be baked.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseConfig } from '../arch/index.js';
import type { Tensor } from '../tensor.js';
import { ScalpelError } from '../errors.js';
import { removeOrphans, writeFileAtomic } from '../io/atomic.js';
import { fromFloat32, toFloat32 } from '../io/dtype.js';
import { readJsonFile } from '../io/json.js';
import {
  openSafetensors,
  readSafetensorsHeader,
  writeSafetensorsStreaming,
  type SafetensorsEntry,
  type TensorSpec,
} from '../io/safetensors.js';
import { findWeightFiles, WEIGHT_FILE } from '../model/files.js';
import { asFlag, validateIntervention, type Intervention, type SettingLabel } from './intervention.js';
import { norm, unit } from './math.js';

export interface BakeOptions {
  modelDir: string;
  /** A new directory (or an empty one); written under a temporary name and renamed when complete. */
  outDir: string;
  /** The direction to remove, [width]; normalised here. */
  direction: ArrayLike<number>;
  /** Share of the projection removed, W ← (I − s d dᵀ) W (default 1, the ablation; the adapters' scale 0.5 = 0.5). */
  strength?: number;
  /** Provenance, written to scalpel_bake.json and into every weight file's safetensors metadata. */
  provenance: Record<string, string>;
  /** Told after each tensor how many weight bytes are done, and the total. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

export interface BakeResult {
  outDir: string;
  /** Names of the tensors changed (embedding, o_proj and down_proj weights and biases). */
  changed: string[];
  /** True when the input tied its output head to the embedding: the output keeps the original as lm_head.weight. */
  untied: boolean;
  weightFiles: string[];
  /** True when `outDir` already held this very bake (a rerun after a bake that finished, or was killed after its rename). */
  alreadyBaked?: boolean;
}

export const EMBED = 'model.embed_tokens.weight';
export const HEAD = 'lm_head.weight';
const WRITER = /^model\.layers\.(\d+)\.(self_attn\.o_proj|mlp\.down_proj)\.(weight|bias)$/;
const INDEX = 'model.safetensors.index.json';

export function unitDirection(direction: ArrayLike<number>, width: number, where: string): Float64Array {
  if (direction.length !== width)
    throw new ScalpelError(`${where}: direction has ${direction.length} values, the model's hidden size is ${width}`);
  const n = norm(direction);
  if (!(n > 0) || !Number.isFinite(n))
    throw new ScalpelError(`${where}: direction is zero or not finite, nothing to ablate`);
  return unit(direction);
}

/** W ← (I − s d dᵀ) W for W [rows = width, cols]: every column loses (share s of) its component along d. */
function projectColumns(t: Tensor, d: Float64Array, s: number): Tensor {
  const [rows, cols] = t.shape as [number, number];
  const w = toFloat32(t);
  const u = new Float64Array(cols); // u = dᵀ W
  for (let r = 0; r < rows; r++) {
    const dr = d[r]!;
    const o = r * cols;
    for (let c = 0; c < cols; c++) u[c]! += dr * w[o + c]!;
  }
  for (let c = 0; c < cols; c++) u[c]! *= s;
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) {
    const dr = d[r]!;
    const o = r * cols;
    for (let c = 0; c < cols; c++) out[o + c] = w[o + c]! - dr * u[c]!;
  }
  return { ...t, data: fromFloat32(out, t.dtype) };
}

/** Each row x of E [rows, width] (an embedding) or a single [width] bias: x ← x − s (x·d) d. */
function projectRows(t: Tensor, d: Float64Array, s: number): Tensor {
  const width = d.length;
  const x = toFloat32(t);
  const out = new Float32Array(x.length);
  for (let o = 0; o < x.length; o += width) {
    let p = 0;
    for (let j = 0; j < width; j++) p += x[o + j]! * d[j]!;
    p *= s;
    for (let j = 0; j < width; j++) out[o + j] = x[o + j]! - p * d[j]!;
  }
  return { ...t, data: fromFloat32(out, t.dtype) };
}

/**
 * One checkpoint tensor (by its Hugging Face name) as the bake leaves it: the token embedding and every residual
 * writer (o_proj, down_proj, their biases) with s times d's share removed (s = 1: projected out), anything else
 * unchanged (the same object). `d` is a unit vector (unitDirection). Exports to other formats call this so they stay
 * the same edit as the bake.
 */
export function bakeTensor(t: Tensor, d: Float64Array, s = 1): Tensor {
  if (t.name === EMBED) return projectRows(t, d, s);
  if (WRITER.test(t.name)) return t.shape.length === 2 ? projectColumns(t, d, s) : projectRows(t, d, s);
  return t;
}

export function checkOutDir(outDir: string): void {
  if (!fs.existsSync(outDir)) return;
  if (!fs.statSync(outDir).isDirectory())
    throw new ScalpelError(`${outDir}: exists and is a file; choose a new directory for the baked model`);
  if (fs.readdirSync(outDir).length > 0)
    throw new ScalpelError(`${outDir}: exists and is not empty; choose a new directory for the baked model`);
}

/** Whether `outDir` is a finished bake whose scalpel_bake.json has every field of `identity` with the same value. */
function holdsBake(outDir: string, identity: Record<string, unknown>): boolean {
  let record: unknown;
  try {
    record = JSON.parse(fs.readFileSync(path.join(outDir, 'scalpel_bake.json'), 'utf8'));
  } catch {
    return false; // no folder, no record, or not JSON: not this bake (checkOutDir then says why it cannot be written)
  }
  if (!record || typeof record !== 'object') return false;
  const r = record as Record<string, unknown>;
  return (
    Object.entries(identity).every(([k, v]) => JSON.stringify(r[k]) === JSON.stringify(v)) &&
    (identity['strength'] !== undefined || r['strength'] === undefined)
  );
}

/** The model's config.json, parsed; refused when its architecture would bring a removed direction back. */
export function readBakeableConfig(modelDir: string) {
  const configPath = path.join(modelDir, 'config.json');
  if (!fs.existsSync(configPath))
    throw new ScalpelError(`${configPath}: file is missing, expected a Hugging Face model directory with config.json`);
  const config = readJsonFile(configPath);
  const { arch, args } = parseConfig(config, configPath);
  if (args.sandwichNorms) {
    throw new ScalpelError(
      `${configPath}: ${arch.name} normalises each block's output before it joins the residual stream, so a weight edit cannot remove a direction exactly; use run-time ablation (scalpel eval / generate --run) instead`,
    );
  }
  return { config, args };
}

/**
 * The direction to project out of `modelDir`'s weights for this intervention, or a one-line error saying why it
 * cannot be baked: only zero ablation is a weight edit (any other mode and activation addition need a bias on the
 * residual stream), and not on architectures with sandwich norms. `label` names the settings in those errors (the
 * flags by default; run.json's config fields when they came from there).
 */
export function bakeableDirection(iv: Intervention, modelDir: string, label: SettingLabel = asFlag): Float32Array {
  if (iv.kind === 'ablate' && iv.mode.kind !== 'zero')
    throw new ScalpelError(
      `${label('ablation', iv.mode.kind)}, which needs a bias on the residual stream that the weights do not have; bake a run made with --ablation zero`,
    );
  const add = iv.kind === 'none' ? undefined : iv.add;
  if (add && add.alpha !== 0)
    throw new ScalpelError(
      `${label('alpha', add.alpha)}; activation addition cannot be written into weights without a bias; rerun select with --alpha 0 to bake the ablation alone`,
    );
  if (iv.kind !== 'ablate') throw new ScalpelError('bake: the intervention ablates no direction; nothing to bake');
  validateIntervention(iv, readBakeableConfig(modelDir).args.numLayers);
  return iv.direction;
}

/** Writes a copy of the model with `direction` projected out of every residual-stream writer. */
export async function bakeAblation(o: BakeOptions): Promise<BakeResult> {
  const { config, args } = readBakeableConfig(o.modelDir);
  const d = unitDirection(o.direction, args.width, 'bake');
  const s = o.strength ?? 1;
  if (!(s >= 0 && s <= 1)) throw new ScalpelError(`bake: strength ${s}: expected a number in [0, 1]`);
  // What identifies this bake in scalpel_bake.json: the same source, run, site, λ, strength and direction.
  const identity = {
    format: 'scalpel-bake/1',
    ...o.provenance,
    ...(s !== 1 ? { strength: s } : {}),
    direction: Array.from(d, (v) => Math.fround(v)),
  };
  // A rerun of a bake that completed (the folder is renamed into place only when whole) has nothing left to do: the
  // same command must succeed again, as run and sweep do when rerun, rather than refuse its own output.
  if (holdsBake(o.outDir, identity))
    return { outDir: o.outDir, changed: [], untied: false, weightFiles: [], alreadyBaked: true };
  checkOutDir(o.outDir);
  const { files, weightMap } = findWeightFiles(o.modelDir);
  const names = new Map<string, SafetensorsEntry>(); // every tensor, from the headers (validated before any data is read)
  let total = 0;
  for (const file of files) {
    for (const e of (await readSafetensorsHeader(file)).entries.values()) {
      names.set(e.name, e);
      total += e.end - e.begin;
    }
  }
  // Every writer the architecture has must be found under its standard name, or the bake would be partial.
  const expected = [EMBED];
  for (let l = 0; l < args.numLayers; l++)
    expected.push(`model.layers.${l}.self_attn.o_proj.weight`, `model.layers.${l}.mlp.down_proj.weight`);
  const missing = expected.filter((n) => !names.has(n));
  if (missing.length > 0)
    throw new ScalpelError(
      `${o.modelDir}: tensor ${missing[0]} not found (${missing.length} residual-stream writers missing); cannot bake this checkpoint's naming`,
    );
  const untied = args.tieEmbeddings && !names.has(HEAD);

  const outPath = o.outDir.replace(/[\\/]+$/, '');
  const tmp = `${outPath}.baking-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  // A bake killed before its rename left a whole model's worth of bytes beside the output: remove it.
  const prefix = `${path.basename(outPath)}.baking-`;
  removeOrphans(path.dirname(outPath), (name) =>
    name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length)) ? Number(name.slice(prefix.length)) : null,
  );
  fs.mkdirSync(tmp, { recursive: true });
  const changed: string[] = [];
  const weightFiles: string[] = [];
  try {
    let done = 0;
    for (const file of files) {
      // One tensor in memory at a time: read, edit, write, next (a 15 GB single-file checkpoint streams through).
      const src = await openSafetensors(file);
      try {
        const specs: TensorSpec[] = [...src.header.entries.values()].map((e) => {
          if (e.dtype === null)
            throw new ScalpelError(
              `${file}: tensor '${e.name}' has dtype ${e.storedDtype}, Scalpel can bake F32, F16 and BF16 checkpoints`,
            );
          return { name: e.name, dtype: e.dtype, shape: e.shape };
        });
        const embed = specs.find((t) => t.name === EMBED);
        if (untied && embed) specs.push({ ...embed, name: HEAD }); // the output head keeps reading the original embedding
        const metadata = { ...(src.header.metadata ?? { format: 'pt' }), ...o.provenance };
        await writeSafetensorsStreaming(
          path.join(tmp, path.basename(file)),
          specs,
          async (spec) => {
            const t = await src.read(spec.name === HEAD && untied ? EMBED : spec.name);
            const data = spec.name === HEAD ? t.data : bakeTensor(t, d, s).data;
            if (data !== t.data) changed.push(spec.name);
            done += t.data.byteLength;
            o.onProgress?.(Math.min(done, total), total);
            return data;
          },
          metadata,
        );
      } finally {
        await src.close();
      }
      weightFiles.push(path.basename(file));
    }

    // Everything else in the directory is copied as is, except what the bake changes: the index (a new lm_head
    // entry) and config.json (the head is no longer tied).
    for (const entry of fs.readdirSync(o.modelDir, { withFileTypes: true })) {
      if (!entry.isFile() || weightFiles.includes(entry.name)) continue;
      const src = path.join(o.modelDir, entry.name);
      if (entry.name === INDEX && weightMap) {
        const index = readJsonFile(src);
        if (untied) {
          const wm = index['weight_map'] as Record<string, string>;
          wm[HEAD] = wm[EMBED]!;
          const meta = (index['metadata'] ?? {}) as Record<string, unknown>;
          const embedEntry = names.get(EMBED)!;
          if (typeof meta['total_size'] === 'number') meta['total_size'] += embedEntry.end - embedEntry.begin;
        }
        await writeFileAtomic(path.join(tmp, entry.name), `${JSON.stringify(index, null, 2)}\n`);
      } else if (entry.name === 'config.json' && untied) {
        await writeFileAtomic(
          path.join(tmp, entry.name),
          `${JSON.stringify({ ...config, tie_word_embeddings: false }, null, 2)}\n`,
        );
      } else if (WEIGHT_FILE.test(entry.name)) {
      } else if (entry.name === 'README.md') {
        // The card describes the original model: say at the top what this folder is, so a copy shared onward does
        // not pass for the original.
        const note =
          `> Written by \`scalpel bake\`: the weights of ${path.basename(path.resolve(o.modelDir))} with one direction projected out of ` +
          'every residual-stream writer (see scalpel_bake.json). The card below describes the original model.\n\n';
        const card = fs.readFileSync(src, 'utf8');
        // Keep YAML front matter (Hub metadata) first, where the Hub looks for it.
        const fm = /^---\n[\s\S]*?\n---\n/.exec(card);
        const text = fm ? `${fm[0]}\n${note}${card.slice(fm[0].length)}` : note + card;
        await writeFileAtomic(path.join(tmp, entry.name), text);
      } else {
        fs.copyFileSync(src, path.join(tmp, entry.name));
      }
    }
    await writeFileAtomic(
      path.join(tmp, 'scalpel_bake.json'),
      `${JSON.stringify({
        format: identity.format,
        ...o.provenance,
        edit: 'W <- (I - d d^T) W for the token embedding, every self_attn.o_proj and mlp.down_proj (weights and biases)',
        untied_lm_head: untied,
        ...(s !== 1 ? { strength: s } : {}),
        changed_tensors: changed.length,
        direction: identity.direction,
      })}\n`,
    );
    if (fs.existsSync(o.outDir)) fs.rmdirSync(o.outDir); // checked empty above
    fs.renameSync(tmp, o.outDir);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    // The temp folder is gone: name the file by where it was going (a full disk, a file size limit).
    if (e instanceof ScalpelError) throw new ScalpelError(e.message.split(tmp).join(outPath));
    throw new ScalpelError(`${o.outDir}: could not write the baked model (${(e as Error).message})`);
  }
  return { outDir: o.outDir, changed, untied, weightFiles };
}
