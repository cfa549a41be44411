// `bake --format gguf`: the baked model as one GGUF file for llama.cpp and Ollama, with an Ollama Modelfile beside
// it. The same edit as the Hugging Face bake (bakeTensor: W ← (I − d dᵀ) W on the embedding and every residual
// writer, in the checkpoint's dtype), applied while the checkpoint streams into the GGUF file
// (src/model/gguf-export.ts): no baked Hugging Face copy is written first.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ScalpelError } from '../errors.js';
import type { WeightDType } from '../tensor.js';
import { writeFileAtomic } from '../io/atomic.js';
import { gguf, type GgufValue } from '../io/gguf.js';
import { writeModelGguf, type GgufQuant } from '../model/gguf-export.js';
import { listModelTensors } from '../model/files.js';
import { ChatTemplate } from '../tokenizer/chat.js';
import { EMBED, bakeTensor, readBakeableConfig, unitDirection } from './bake.js';
import { ollamaModelfile } from './modelfile.js';

export { GGUF_DTYPES, GGUF_QUANTS, type GgufQuant } from '../model/gguf-export.js';

export interface GgufExportOptions {
  modelDir: string;
  /** The .gguf file to write (must not exist); the Modelfile goes beside it (and must not exist either). */
  outFile: string;
  /** The direction to remove, [width]; normalised here. */
  direction: ArrayLike<number>;
  /** Ablation strength s: W − s·ŵŵᵀW (default 1). */
  strength?: number;
  /** Storage of the matrices (default: the checkpoint's); norms and biases are always f32. */
  dtype?: WeightDType;
  quant?: GgufQuant;
  /** Provenance, written as scalpel.* string metadata. */
  provenance: Record<string, string>;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

export interface GgufExportResult {
  outFile: string;
  modelfile: string;
  arch: string;
  /** Checkpoint tensors the bake changed. */
  changed: string[];
  /** True when a tied output head was written as its own tensor (it keeps the original embedding). */
  untied: boolean;
  /** What llama.cpp will do differently from Scalpel, one sentence each. */
  notes: string[];
}

/** Writes the baked model of `modelDir` as a GGUF file plus an Ollama Modelfile. */
export async function exportGguf(o: GgufExportOptions): Promise<GgufExportResult> {
  const { args } = readBakeableConfig(o.modelDir); // refuses what a weight edit cannot bake (Gemma), with the reason
  const d = unitDirection(o.direction, args.width, 'bake');
  const outFile = path.resolve(o.outFile);
  const modelfile = path.join(path.dirname(outFile), 'Modelfile');
  if (fs.existsSync(outFile)) throw new ScalpelError(`${o.outFile}: exists; choose a new file name for the GGUF model`);
  if (fs.existsSync(modelfile))
    throw new ScalpelError(`${modelfile}: exists; write the GGUF file into a folder without a Modelfile`);
  // Every residual-stream writer must be found under its standard name, or the bake would be partial.
  const names = await listModelTensors(o.modelDir);
  for (let l = 0; l < args.numLayers; l++)
    for (const n of [EMBED, `model.layers.${l}.self_attn.o_proj.weight`, `model.layers.${l}.mlp.down_proj.weight`])
      if (!names.has(n))
        throw new ScalpelError(`${o.modelDir}: tensor ${n} not found; cannot bake this checkpoint's naming`);

  const provenance = Object.entries(o.provenance).map(([k, v]): [string, GgufValue] => [
    `scalpel.${k.replace(/^scalpel_/, '')}`,
    gguf.str(v),
  ]);
  const res = await writeModelGguf(o.modelDir, outFile, {
    dtype: o.dtype,
    quant: o.quant,
    edit: (t) => bakeTensor(t, d, o.strength ?? 1),
    untieHead: true,
    metadata: provenance,
    onProgress: o.onProgress,
  });
  const text = ollamaModelfile({
    ggufFile: path.basename(outFile),
    modelName: path.basename(path.resolve(o.modelDir)),
    chat: ChatTemplate.load(o.modelDir),
    stopTokens: res.eosTokenIds.map((id) => res.tokens[id]).filter((t): t is string => t !== undefined),
  });
  try {
    await writeFileAtomic(modelfile, text);
  } catch (e) {
    fs.rmSync(outFile, { force: true });
    throw new ScalpelError(`${modelfile}: could not write the Modelfile (${(e as Error).message})`);
  }
  return { outFile, modelfile, arch: res.arch, changed: res.changed, untied: res.untied, notes: res.notes };
}
