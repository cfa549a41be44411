// Gemma 3 (text): Gemma 2 without soft-capping (unless configured), plus
//  - RMSNorm (1 + w) on every query and key head before RoPE;
//  - its own RoPE per layer type: rope_local_base_freq (10k) on sliding layers, rope_theta (1M, maybe scaled) on
//    full layers; five sliding layers per full one by default;
//  - multimodal checkpoints (Gemma3ForConditionalGeneration): the text model's config and tensors are used.
import {
  activation,
  baseArgs,
  Config,
  layerTypes,
  makeRope,
  ropeParams,
  type Architecture,
  type TensorMap,
} from './base.js';

/** The standard name of a text-model tensor, or null for vision tensors. */
function textName(name: string): string | null {
  if (/(^|\.)(vision_tower|multi_modal_projector)\./.test(name)) return null;
  const n = name
    .replace(/^model\.language_model\./, 'model.')
    .replace(/^language_model\.model\./, 'model.')
    .replace(/^language_model\.lm_head\./, 'lm_head.');
  return n.startsWith('model.') || n.startsWith('lm_head.') ? n : null;
}

export const gemma3: Architecture = {
  name: 'gemma3',
  modelTypes: ['gemma3_text', 'gemma3'],
  classes: ['Gemma3ForCausalLM', 'Gemma3ForConditionalGeneration'],
  args(outer) {
    const text = outer.raw['text_config'];
    const cfg =
      text && typeof text === 'object'
        ? new Config(text as Record<string, unknown>, `${outer.file} text_config`)
        : outer;
    const a = baseArgs('gemma3', cfg, { headDim: 256, tieEmbeddings: outer.bool('tie_word_embeddings', true) });
    a.modelType = outer.str('model_type', 'gemma3_text');
    a.act = activation(cfg, cfg.has('hidden_activation') ? 'hidden_activation' : 'hidden_act', 'gelu_pytorch_tanh');
    a.normOffset = 1;
    a.sandwichNorms = true;
    a.qkNorm = true;
    a.embedScale = Math.fround(Math.sqrt(a.width));
    a.attnScale = 1 / Math.sqrt(cfg.num('query_pre_attn_scalar', 256));
    a.attnSoftcap = cfg.optNum('attn_logit_softcapping', null);
    a.finalSoftcap = cfg.optNum('final_logit_softcapping', null);
    a.qkvBias = a.oBias = cfg.bool('attention_bias', false);
    const window = cfg.optNum('sliding_window', 4096);
    const pattern = cfg.num('sliding_window_pattern', cfg.num('_sliding_window_pattern', 6));
    const types = layerTypes(cfg, a.numLayers, (i) => ((i + 1) % pattern ? 'sliding_attention' : 'full_attention'));
    const globalRope = makeRope(cfg, ropeParams(cfg, 1_000_000, 'full_attention'), a.headDim);
    const local = ropeParams(cfg, 10_000, 'sliding_attention', 'rope_local_base_freq');
    // Legacy configs scale only the global rope (rope_scaling applies to full attention layers).
    if (!cfg.has('rope_parameters')) for (const k of Object.keys(local)) if (k !== 'rope_theta') delete local[k];
    const localRope = makeRope(cfg, { rope_type: 'default', ...local }, a.headDim);
    a.layers = types.map((t) =>
      t === 'sliding_attention' ? { window, rope: localRope } : { window: null, rope: globalRope },
    );
    return a;
  },
  // Multimodal checkpoints nest the text model; the vision tower and projector are not read.
  keep: (name) => textName(name) !== null,
  sanitize(tensors) {
    const out: TensorMap = new Map();
    for (const [name, t] of tensors) {
      const n = textName(name);
      if (n !== null) out.set(n, t);
    }
    return out;
  },
};
