// Llama (Llama 2/3/3.1, SmolLM2, TinyLlama): the reference decoder every other architecture is a diff of.
// pre-norm RMSNorm → attention with RoPE (default, linear or llama3 scaling) → residual → RMSNorm → SwiGLU → residual.
import { baseArgs, makeRope, ropeParams, uniformLayers, type Architecture } from './base.js';

export const llama: Architecture = {
  name: 'llama',
  modelTypes: ['llama'],
  classes: ['LlamaForCausalLM'],
  args(cfg) {
    const a = baseArgs('llama', cfg);
    a.qkvBias = a.oBias = cfg.bool('attention_bias', false);
    a.mlpBias = cfg.bool('mlp_bias', false);
    a.layers = uniformLayers(a.numLayers, null, makeRope(cfg, ropeParams(cfg, 10000), a.headDim));
    return a;
  },
};
