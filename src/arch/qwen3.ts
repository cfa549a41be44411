// Qwen3: Llama with an explicit head_dim (default 128) and an RMSNorm on every query and key head before RoPE;
// optional biases and sliding window as in Qwen2.
import { baseArgs, layerTypes, makeRope, ropeParams, type Architecture } from './base.js';

export const qwen3: Architecture = {
  name: 'qwen3',
  modelTypes: ['qwen3'],
  classes: ['Qwen3ForCausalLM'],
  args(cfg) {
    const a = baseArgs('qwen3', cfg, { headDim: 128 });
    a.qkNorm = true;
    a.qkvBias = a.oBias = cfg.bool('attention_bias', false);
    const window = cfg.bool('use_sliding_window', false) ? cfg.optNum('sliding_window', 4096) : null;
    const maxWindowLayers = cfg.num('max_window_layers', 28);
    const types = layerTypes(cfg, a.numLayers, (i) =>
      window !== null && i >= maxWindowLayers ? 'sliding_attention' : 'full_attention',
    );
    const rope = makeRope(cfg, ropeParams(cfg, 10000), a.headDim);
    a.layers = types.map((t) => ({ window: t === 'sliding_attention' ? window : null, rope }));
    return a;
  },
};
