// What the engine runs on: a model's shape and per-layer attention setup (ModelArgs), and the checkpoint tensors by
// name. The architectures in src/arch/ build these from config.json; the engine never needs to know which one did.
import type { Tensor } from '../tensor.js';

export type Activation = 'silu' | 'gelu_tanh';

/** Rotary embedding of one layer type: cos/sin(position · invFreq) · scaling on the first rotaryDim dims of a head. */
export interface RopeSpec {
  /** rope_type as in transformers: 'default', 'linear', 'llama3', 'longrope'. */
  type: string;
  rotaryDim: number;
  /** [rotaryDim / 2] inverse frequencies (f32, computed like transformers). */
  invFreq: Float32Array;
  /** attention_scaling: multiplies cos and sin (1 except longrope). */
  scaling: number;
  /** longrope: frequencies used once a sequence is longer than originalMax. */
  long?: { invFreq: Float32Array; originalMax: number };
}

export interface LayerArgs {
  /** Sliding attention window (a key j is seen from query i when i - window < j ≤ i), or null for full attention. */
  window: number | null;
  rope: RopeSpec;
}

/** Everything the engine needs to know about a model, independent of the checkpoint's naming. */
export interface ModelArgs {
  /** Registry name of the architecture, e.g. 'llama'. */
  arch: string;
  modelType: string;
  vocabSize: number;
  width: number;
  intermediate: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  normEps: number;
  /** RMSNorm multiplies by (offset + weight): 0 for Llama-style, 1 for Gemma. */
  normOffset: number;
  act: Activation;
  /** The embedding is multiplied by this (Gemma: sqrt(width)). */
  embedScale: number;
  /** Attention scores are multiplied by this (1/sqrt(head_dim), Gemma: 1/sqrt(query_pre_attn_scalar)). */
  attnScale: number;
  /** Soft-capping cap·tanh(s/cap) of attention scores and of final logits, or null. */
  attnSoftcap: number | null;
  finalSoftcap: number | null;
  /** Bias on q/k/v projections, and on o_proj. */
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  /** RMSNorm on each query and key head before RoPE (Qwen3, Gemma 3). */
  qkNorm: boolean;
  /** Gemma 2/3: norms on the attention output and around the MLP ("sandwich" norms). */
  sandwichNorms: boolean;
  tieEmbeddings: boolean;
  /** max_position_embeddings: the most positions (prompt + new tokens) a sequence may use; absent when unknown. */
  contextLength?: number;
  layers: LayerArgs[];
}

/** Checkpoint tensors by name, as read from the safetensors files. */
export type TensorMap = Map<string, Tensor>;
