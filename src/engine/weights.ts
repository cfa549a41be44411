// Checkpoint tensors (standard Llama names after the architecture's sanitize step) → the engine's Weights.
// Matrices stay views into the checkpoint's buffers in their stored dtype; only the small vectors (norms, biases)
// are widened to f32. Every tensor's presence and shape is checked against the ModelArgs from config.json
// (requireTensor and friends, also used by the tests on model directories).
import { ScalpelError } from '../errors.js';
import type { ModelArgs, TensorMap } from './args.js';
import type { Tensor } from '../tensor.js';
import type { Matrix } from './types.js';
import type { LayerWeights, Weights } from './model.js';
import { toFloat32 } from '../io/dtype.js';

export interface WeightSource {
  dir: string;
  tensors: TensorMap;
  tensorFiles: Map<string, string>;
}

const fmtShape = (shape: readonly number[]): string => `[${shape.join(', ')}]`;

/** Whether the checkpoint has a tensor of that name. */
export function hasTensor(m: Pick<WeightSource, 'tensors'>, name: string): boolean {
  return m.tensors.has(name);
}

/**
 * A tensor the architecture requires, checked against the shape it expects (from config.json). Errors:
 * "missing tensor X in DIR (...)" and "FILE: tensor X has shape [a, b], expected [c, d] ...".
 */
export function requireTensor(m: WeightSource, name: string, shape?: readonly number[]): Tensor {
  const t = m.tensors.get(name);
  if (!t) throw new ScalpelError(`missing tensor ${name} in ${m.dir} (the architecture needs it)`);
  if (shape && (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))) {
    const where = m.tensorFiles.get(name) ?? m.dir;
    throw new ScalpelError(
      `${where}: tensor ${name} has shape ${fmtShape(t.shape)}, expected ${fmtShape(shape)} from config.json`,
    );
  }
  return t;
}

/** Like requireTensor, but returns null when the tensor is absent (the shape is still checked when present). */
export function optionalTensor(m: WeightSource, name: string, shape?: readonly number[]): Tensor | null {
  return m.tensors.has(name) ? requireTensor(m, name, shape) : null;
}

const matrix = (t: Tensor): Matrix => ({ dtype: t.dtype, rows: t.shape[0]!, cols: t.shape[1]!, data: t.data });

/** f32 copy of a vector, plus the norm offset (Gemma stores w and uses 1 + w). */
function vector(t: Tensor, offset = 0): Float32Array {
  const v = Float32Array.from(toFloat32(t));
  if (offset !== 0) for (let i = 0; i < v.length; i++) v[i] = offset + v[i]!;
  return v;
}

export function buildWeights(src: WeightSource, a: ModelArgs): Weights {
  const mat = (name: string, rows: number, cols: number): Matrix => matrix(requireTensor(src, name, [rows, cols]));
  const norm = (name: string, dim: number): Float32Array => vector(requireTensor(src, name, [dim]), a.normOffset);
  // Biases exist when config.json says so (transformers ignores checkpoint tensors the config does not use).
  const bias = (name: string, dim: number, used: boolean): Float32Array | undefined =>
    used ? vector(requireTensor(src, name, [dim])) : undefined;
  const D = a.width;
  const qw = a.numHeads * a.headDim;
  const kvw = a.numKvHeads * a.headDim;
  const I = a.intermediate;

  const layers: LayerWeights[] = [];
  for (let l = 0; l < a.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const L: LayerWeights = {
      attnNorm: norm(`${p}input_layernorm.weight`, D),
      q: mat(`${p}self_attn.q_proj.weight`, qw, D),
      k: mat(`${p}self_attn.k_proj.weight`, kvw, D),
      v: mat(`${p}self_attn.v_proj.weight`, kvw, D),
      o: mat(`${p}self_attn.o_proj.weight`, D, qw),
      qBias: bias(`${p}self_attn.q_proj.bias`, qw, a.qkvBias),
      kBias: bias(`${p}self_attn.k_proj.bias`, kvw, a.qkvBias),
      vBias: bias(`${p}self_attn.v_proj.bias`, kvw, a.qkvBias),
      oBias: bias(`${p}self_attn.o_proj.bias`, D, a.oBias),
      mlpNorm: norm(`${p}${a.sandwichNorms ? 'pre_feedforward_layernorm' : 'post_attention_layernorm'}.weight`, D),
      gate: mat(`${p}mlp.gate_proj.weight`, I, D),
      up: mat(`${p}mlp.up_proj.weight`, I, D),
      down: mat(`${p}mlp.down_proj.weight`, D, I),
      gateBias: bias(`${p}mlp.gate_proj.bias`, I, a.mlpBias),
      upBias: bias(`${p}mlp.up_proj.bias`, I, a.mlpBias),
      downBias: bias(`${p}mlp.down_proj.bias`, D, a.mlpBias),
    };
    if (a.qkNorm) {
      L.qNorm = norm(`${p}self_attn.q_norm.weight`, a.headDim);
      L.kNorm = norm(`${p}self_attn.k_norm.weight`, a.headDim);
    }
    if (a.sandwichNorms) {
      L.attnOutNorm = norm(`${p}post_attention_layernorm.weight`, D);
      L.mlpOutNorm = norm(`${p}post_feedforward_layernorm.weight`, D);
    }
    layers.push(L);
  }
  const embed = mat('model.embed_tokens.weight', a.vocabSize, D);
  const lmHead = a.tieEmbeddings ? embed : mat('lm_head.weight', a.vocabSize, D);
  return { embed, layers, finalNorm: norm('model.norm.weight', D), lmHead };
}
