// A run's activation addition (α·r at one layer's block input) as a llama.cpp control vector: a GGUF with
// general.architecture = controlvector and one F32 tensor `direction.N` of length n_embd per layer it touches.
//
// Where llama.cpp adds it (llama-adapter.cpp, llama_adapter_cvec; each model graph calls build_cvec(cur, il) after
// block il's residual additions): direction.N is added to the OUTPUT of block N (0-based), for N in 1..n_layer−1;
// its loader refuses direction.0 and ignores N ≥ n_layer. Scalpel adds at blocks.L.hook_resid_pre, the input of
// block L, which is the output of block L − 1. So Scalpel's layer L is direction.(L − 1), and runs that add at
// layer 0 (the embedding) or 1 (the output of block 0) have no control vector.
import { ScalpelError } from '../errors.js';
import { gguf, writeGguf, type GgufValue } from '../io/gguf.js';
import type { ActAdd } from './intervention.js';

/** llama.cpp's direction index for an addition at Scalpel's blocks.L.hook_resid_pre. */
export const controlVectorLayer = (scalpelLayer: number): number => scalpelLayer - 1;

/** The control vector's tensors: α·v under direction.(L − 1), or a one-line error when llama.cpp has no such slot. */
export function controlVectorTensors(add: ActAdd, numLayers: number, where: string) {
  const n = controlVectorLayer(add.layer);
  if (n < 1 || add.layer > numLayers - 1)
    throw new ScalpelError(
      `${where}: the run adds α·r at layer ${add.layer}'s input; llama.cpp control vectors act on the outputs of blocks 1..${numLayers - 1}, which are Scalpel's layers 2..${numLayers - 1}, so this addition has no control vector`,
    );
  const data = Float32Array.from(add.vector, (v) => add.alpha * v);
  return [{ name: `direction.${n}`, dtype: 'f32' as const, shape: [data.length], data }];
}

/** Writes the addition as a llama.cpp control vector GGUF (`modelHint`: the llama.cpp architecture name). */
export async function writeControlVector(
  file: string,
  add: ActAdd,
  o: { numLayers: number; modelHint: string; where: string; provenance: Record<string, string> },
): Promise<{ tensor: string }> {
  const tensors = controlVectorTensors(add, o.numLayers, o.where);
  const metadata: Array<[string, GgufValue]> = [
    ['general.architecture', gguf.str('controlvector')],
    ['controlvector.model_hint', gguf.str(o.modelHint)],
    ['controlvector.layer_count', gguf.u32(tensors.length)],
    ...Object.entries(o.provenance).map(([k, v]): [string, GgufValue] => [
      `scalpel.${k.replace(/^scalpel_/, '')}`,
      gguf.str(v),
    ]),
  ];
  await writeGguf(file, metadata, tensors);
  return { tensor: tensors[0]!.name };
}
