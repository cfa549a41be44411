// Mistral: Llama with a sliding attention window on every layer (config sliding_window; null = full attention).
import { baseArgs, makeRope, ropeParams, uniformLayers, type Architecture } from './base.js';

export const mistral: Architecture = {
  name: 'mistral',
  modelTypes: ['mistral'],
  classes: ['MistralForCausalLM'],
  args(cfg) {
    const a = baseArgs('mistral', cfg);
    const window = cfg.optNum('sliding_window', 4096);
    a.layers = uniformLayers(a.numLayers, window, makeRope(cfg, ropeParams(cfg, 10000), a.headDim));
    return a;
  },
};
