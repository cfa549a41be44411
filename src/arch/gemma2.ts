// Gemma 2: Llama with
//  - RMSNorm weights used as (1 + w), embeddings scaled by sqrt(hidden_size), GELU (tanh) gating;
//  - "sandwich" norms: the attention and MLP outputs are normed before they join the residual stream;
//  - attention scale 1/sqrt(query_pre_attn_scalar), soft-capped attention scores and final logits;
//  - sliding-window attention on every other layer (layer_types), tied embeddings.
import { activation, baseArgs, layerTypes, makeRope, ropeParams, type Architecture } from './base.js';

export const gemma2: Architecture = {
  name: 'gemma2',
  modelTypes: ['gemma2'],
  classes: ['Gemma2ForCausalLM'],
  args(cfg) {
    const a = baseArgs('gemma2', cfg, { headDim: 256, tieEmbeddings: true });
    a.act = activation(cfg, cfg.has('hidden_activation') ? 'hidden_activation' : 'hidden_act', 'gelu_pytorch_tanh');
    a.normOffset = 1;
    a.sandwichNorms = true;
    a.embedScale = Math.fround(Math.sqrt(a.width));
    a.attnScale = 1 / Math.sqrt(cfg.num('query_pre_attn_scalar', 256));
    a.attnSoftcap = cfg.optNum('attn_logit_softcapping', 50);
    a.finalSoftcap = cfg.optNum('final_logit_softcapping', 30);
    a.qkvBias = a.oBias = cfg.bool('attention_bias', false);
    const window = cfg.optNum('sliding_window', 4096);
    const types = layerTypes(cfg, a.numLayers, (i) => ((i + 1) % 2 ? 'sliding_attention' : 'full_attention'));
    const rope = makeRope(cfg, ropeParams(cfg, 10000), a.headDim);
    a.layers = types.map((t) => ({ window: t === 'sliding_attention' ? window : null, rope }));
    return a;
  },
};
