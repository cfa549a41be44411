// Qwen3: Llama with an explicit head_dim (default 128) and an RMSNorm on every query and key head before RoPE;
// optional biases and sliding window as in Qwen2.
import { baseArgs, type Architecture } from './base.js';
import { qwenLayers } from './qwen2.js';

export const qwen3: Architecture = {
  name: 'qwen3',
  modelTypes: ['qwen3'],
  classes: ['Qwen3ForCausalLM'],
  args(cfg) {
    const a = baseArgs('qwen3', cfg, { headDim: 128 });
    a.qkNorm = true;
    a.qkvBias = a.oBias = cfg.bool('attention_bias', false);
    a.layers = qwenLayers(cfg, a);
    return a;
  },
};
