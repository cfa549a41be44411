// A Hugging Face model in llama.cpp's terms: which llama.cpp architecture it is, the metadata keys that
// architecture's loader reads (from config.json through the parsed ModelArgs), the llama.cpp name of each
// checkpoint tensor, the row order llama.cpp's RoPE wants, and the few tensors llama.cpp needs that a checkpoint
// does not have (per-frequency RoPE factors). Follows llama.cpp's own converter (convert_hf_to_gguf.py) where it
// has one answer; what llama.cpp cannot represent is refused, or reported in `notes` when it only matters past a
// length (sliding windows that llama.cpp ignores).
import { ScalpelError } from '../errors.js';
import { gguf, type GgufTensor, type GgufValue } from '../io/gguf.js';
import type { ModelArgs, RopeSpec } from '../arch/base.js';
import type { Tensor } from '../tensor.js';

export interface LlamaCppLayout {
  /** general.architecture: llama (also for Mistral), qwen2, qwen3, phi3. */
  arch: string;
  /** The architecture's hyperparameters as llama.cpp's keys (without general.* and tokenizer.*). */
  metadata: Array<[string, GgufValue]>;
  /** Tensors llama.cpp needs that are not in the checkpoint (f32). */
  extraTensors: GgufTensor[];
  /** What llama.cpp will do differently from Scalpel and transformers, one sentence each. */
  notes: string[];
}

/** Hugging Face tensor names → llama.cpp's (capture groups: layer, then weight/bias). */
const NAMES: Array<[RegExp, string]> = [
  [/^model\.embed_tokens\.weight$/, 'token_embd.weight'],
  [/^model\.norm\.weight$/, 'output_norm.weight'],
  [/^lm_head\.weight$/, 'output.weight'],
  [/^model\.layers\.(\d+)\.input_layernorm\.weight$/, 'blk.$1.attn_norm.weight'],
  [/^model\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)$/, 'blk.$1.attn_q.$2'],
  [/^model\.layers\.(\d+)\.self_attn\.k_proj\.(weight|bias)$/, 'blk.$1.attn_k.$2'],
  [/^model\.layers\.(\d+)\.self_attn\.v_proj\.(weight|bias)$/, 'blk.$1.attn_v.$2'],
  [/^model\.layers\.(\d+)\.self_attn\.qkv_proj\.(weight|bias)$/, 'blk.$1.attn_qkv.$2'],
  [/^model\.layers\.(\d+)\.self_attn\.o_proj\.(weight|bias)$/, 'blk.$1.attn_output.$2'],
  [/^model\.layers\.(\d+)\.self_attn\.q_norm\.weight$/, 'blk.$1.attn_q_norm.weight'],
  [/^model\.layers\.(\d+)\.self_attn\.k_norm\.weight$/, 'blk.$1.attn_k_norm.weight'],
  [/^model\.layers\.(\d+)\.post_attention_layernorm\.weight$/, 'blk.$1.ffn_norm.weight'],
  [/^model\.layers\.(\d+)\.mlp\.gate_proj\.(weight|bias)$/, 'blk.$1.ffn_gate.$2'],
  [/^model\.layers\.(\d+)\.mlp\.up_proj\.(weight|bias)$/, 'blk.$1.ffn_up.$2'],
  [/^model\.layers\.(\d+)\.mlp\.gate_up_proj\.weight$/, 'blk.$1.ffn_up.weight'],
  [/^model\.layers\.(\d+)\.mlp\.down_proj\.(weight|bias)$/, 'blk.$1.ffn_down.$2'],
];

/** Checkpoint tensors llama.cpp recomputes itself (RoPE caches some checkpoints carry). */
const DROPPED = /\.rotary_emb\.inv_freq$/;

/**
 * llama.cpp's name for a Hugging Face tensor name; undefined for tensors llama.cpp has no use for (RoPE caches).
 * Anything else unknown is an error: leaving it out would give a file that fails to load or computes another model.
 */
export function llamaCppTensorName(hfName: string): string | undefined {
  for (const [re, to] of NAMES) if (re.test(hfName)) return hfName.replace(re, to);
  if (DROPPED.test(hfName)) return undefined;
  throw new ScalpelError(`tensor '${hfName}': no llama.cpp counterpart known, cannot export this checkpoint to GGUF`);
}

/** llama.cpp's general.architecture for a Hugging Face model_type (its converter's choices). */
const LLAMA_CPP_ARCH: Record<string, string> = {
  llama: 'llama',
  mistral: 'llama',
  qwen2: 'qwen2',
  qwen3: 'qwen3',
  phi3: 'phi3',
  gemma2: 'gemma2',
  gemma3_text: 'gemma3',
  gemma3: 'gemma3',
};

/** llama.cpp's architecture name for a model_type, or a one-line error naming `where`. */
export function llamaCppArch(modelType: string, where: string): string {
  const arch = LLAMA_CPP_ARCH[modelType];
  if (!arch)
    throw new ScalpelError(
      `${where}: model_type ${modelType} has no llama.cpp architecture Scalpel knows (${Object.keys(LLAMA_CPP_ARCH).join(', ')})`,
    );
  return arch;
}

/** Architectures whose whole model the GGUF writer knows how to lay out (Gemma's norms and scaling are not done). */
const WHOLE_MODEL_EXPORT = new Set(['llama', 'qwen2', 'qwen3', 'phi3']);

/** The default RoPE inverse frequencies, 1 / θ^(2i/d), as Scalpel's own RoPE computes them. */
function defaultInvFreq(theta: number, dim: number): Float32Array {
  const fr = Math.fround;
  return Float32Array.from({ length: dim / 2 }, (_, i) => fr(1 / fr(theta ** fr((2 * i) / dim))));
}

function ropeTheta(config: Record<string, unknown>): number {
  const rp = config['rope_parameters'] as Record<string, unknown> | undefined;
  const theta = rp?.['rope_theta'] ?? config['rope_theta'] ?? 10000;
  if (typeof theta !== 'number') throw new ScalpelError(`config.json: rope_theta must be a number`);
  return theta;
}

/** Whether a RoPE is the plain one (every inverse frequency equal to the default's). */
function isDefaultRope(rope: RopeSpec, theta: number): boolean {
  const base = defaultInvFreq(theta, rope.rotaryDim);
  return rope.scaling === 1 && !rope.long && rope.invFreq.every((f, i) => f === base[i]);
}

/**
 * The llama.cpp layout of a model: architecture, metadata and extra tensors. `config` is config.json (for the few
 * fields ModelArgs does not keep), `args` what Scalpel parsed from it.
 */
export function llamaCppLayout(config: Record<string, unknown>, args: ModelArgs): LlamaCppLayout {
  const arch = LLAMA_CPP_ARCH[args.arch];
  if (!arch || !WHOLE_MODEL_EXPORT.has(arch))
    throw new ScalpelError(`config.json: architecture ${args.arch} has no GGUF export`);
  const rope = args.layers[0]!.rope;
  if (args.layers.some((l) => l.rope !== rope))
    throw new ScalpelError(`config.json: layers with different RoPE settings cannot be written for llama.cpp`);
  const theta = ropeTheta(config);
  const ctx = typeof config['max_position_embeddings'] === 'number' ? config['max_position_embeddings'] : 4096;
  const u32 = gguf.u32;
  const metadata: Array<[string, GgufValue]> = [
    [`${arch}.vocab_size`, u32(args.vocabSize)],
    [`${arch}.context_length`, u32(ctx)],
    [`${arch}.embedding_length`, u32(args.width)],
    [`${arch}.block_count`, u32(args.numLayers)],
    [`${arch}.feed_forward_length`, u32(args.intermediate)],
    [`${arch}.attention.head_count`, u32(args.numHeads)],
    [`${arch}.attention.head_count_kv`, u32(args.numKvHeads)],
    [`${arch}.attention.key_length`, u32(args.headDim)],
    [`${arch}.attention.value_length`, u32(args.headDim)],
    [`${arch}.attention.layer_norm_rms_epsilon`, gguf.f32(args.normEps)],
    [`${arch}.rope.freq_base`, gguf.f32(theta)],
    [`${arch}.rope.dimension_count`, u32(rope.rotaryDim)],
  ];
  const extraTensors: GgufTensor[] = [];
  const notes: string[] = [];
  const window = args.layers.find((l) => l.window !== null)?.window ?? null;

  if (arch === 'phi3') {
    // llama.cpp's phi3: fused qkv and gate_up as in the checkpoint, NeoX RoPE, optional LongRoPE factor tensors.
    const original = config['original_max_position_embeddings'];
    metadata.push([`phi3.rope.scaling.original_context_length`, u32(typeof original === 'number' ? original : ctx)]);
    metadata.push([`phi3.attention.sliding_window`, u32(window ?? 0)]);
    if (rope.long) {
      const base = defaultInvFreq(theta, rope.rotaryDim);
      const factors = (inv: Float32Array) => Float32Array.from(inv, (f, i) => base[i]! / f);
      extraTensors.push(
        { name: 'rope_factors_long.weight', dtype: 'f32', shape: [base.length], data: factors(rope.long.invFreq) },
        { name: 'rope_factors_short.weight', dtype: 'f32', shape: [base.length], data: factors(rope.invFreq) },
      );
      metadata.push([`phi3.rope.scaling.attn_factor`, gguf.f32(rope.scaling)]);
    } else if (!isDefaultRope(rope, theta)) {
      throw new ScalpelError(`config.json: Phi-3 with rope_type ${rope.type} has no llama.cpp equivalent`);
    }
    if (window !== null)
      notes.push(
        `llama.cpp ignores Phi-3's sliding window (${window} tokens): output matches only while a sequence fits in it`,
      );
  } else if (arch === 'llama') {
    // llama.cpp's llama RoPE rotates interleaved pairs: q and k rows are permuted (llamaCppRows); any frequency
    // scaling (linear, llama3) is one per-frequency divisor tensor, rope_freqs.
    if (rope.rotaryDim !== args.headDim)
      throw new ScalpelError(`config.json: partial rotary dimensions are not supported by llama.cpp's llama`);
    if (rope.scaling !== 1 || rope.long)
      throw new ScalpelError(`config.json: rope_type ${rope.type} has no llama.cpp llama equivalent`);
    if (!isDefaultRope(rope, theta)) {
      const base = defaultInvFreq(theta, rope.rotaryDim);
      extraTensors.push({
        name: 'rope_freqs.weight',
        dtype: 'f32',
        shape: [base.length],
        data: Float32Array.from(rope.invFreq, (f, i) => base[i]! / f),
      });
    }
    if (window !== null)
      notes.push(
        `llama.cpp's llama architecture has no sliding window (${window} tokens here): output matches only while a sequence fits in it`,
      );
  } else {
    // qwen2 / qwen3: NeoX RoPE as in the checkpoint; linear scaling is a key.
    if (rope.type === 'linear') {
      const params = (config['rope_parameters'] ?? config['rope_scaling']) as Record<string, unknown> | undefined;
      const factor = params?.['factor'];
      if (typeof factor !== 'number') throw new ScalpelError(`config.json: linear rope scaling needs a numeric factor`);
      metadata.push([`${arch}.rope.scaling.type`, gguf.str('linear')]);
      metadata.push([`${arch}.rope.scaling.factor`, gguf.f32(factor)]);
    } else if (!isDefaultRope(rope, theta)) {
      throw new ScalpelError(`config.json: rope_type ${rope.type} has no llama.cpp ${arch} equivalent`);
    }
    if (window !== null)
      notes.push(
        `llama.cpp ignores ${args.arch}'s sliding window (${window} tokens on ${args.layers.filter((l) => l.window !== null).length} layers): output matches only while a sequence fits in it`,
      );
  }
  return { arch, metadata, extraTensors, notes };
}

/**
 * A checkpoint tensor's rows in the order llama.cpp wants. llama.cpp's llama architecture applies RoPE to
 * interleaved pairs (x0, x1), (x2, x3), … where Hugging Face rotates halves (x_i, x_{i+d/2}); its converter
 * permutes the rows of q_proj and k_proj (weights and biases) within each head to match, and so does this.
 * Other architectures use the NeoX (halves) RoPE in llama.cpp too and keep their rows.
 */
export function llamaCppRows(t: Tensor, arch: string, args: ModelArgs): Tensor {
  if (arch !== 'llama') return t;
  const m = /\.self_attn\.(q|k)_proj\.(weight|bias)$/.exec(t.name);
  if (!m) return t;
  const heads = m[1] === 'q' ? args.numHeads : args.numKvHeads;
  const hd = args.headDim;
  const cols = t.shape.length === 2 ? t.shape[1]! : 1;
  if (t.shape[0] !== heads * hd)
    throw new ScalpelError(`tensor '${t.name}': ${t.shape[0]} rows, expected ${heads} heads of ${hd}`);
  const out = new (t.data.constructor as { new (n: number): Float32Array | Uint16Array })(t.data.length);
  const half = hd / 2;
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < half; i++)
      for (let j = 0; j < 2; j++) {
        const from = (h * hd + j * half + i) * cols;
        const to = (h * hd + 2 * i + j) * cols;
        out.set(t.data.subarray(from, from + cols), to);
      }
  return { ...t, data: out };
}
