// Qwen2 / Qwen2.5: Llama with biases on the q, k and v projections; optional sliding window on the layers from
// max_window_layers on (only when use_sliding_window).
import { baseArgs, layerTypes, makeRope, ropeParams, type Architecture, type Config, type ModelArgs } from './base.js';

export const qwen2: Architecture = {
  name: 'qwen2',
  modelTypes: ['qwen2'],
  classes: ['Qwen2ForCausalLM'],
  args(cfg) {
    const a = baseArgs('qwen2', cfg);
    a.qkvBias = true;
    a.layers = qwenLayers(cfg, a);
    return a;
  },
};

/** Qwen's layers: one RoPE; a sliding window from max_window_layers on, only when use_sliding_window is set. */
export function qwenLayers(cfg: Config, a: ModelArgs): ModelArgs['layers'] {
  const window = cfg.bool('use_sliding_window', false) ? cfg.optNum('sliding_window', 4096) : null;
  const maxWindowLayers = cfg.num('max_window_layers', 28);
  const types = layerTypes(cfg, a.numLayers, (i) =>
    window !== null && i >= maxWindowLayers ? 'sliding_attention' : 'full_attention',
  );
  const rope = makeRope(cfg, ropeParams(cfg, 10000), a.headDim);
  return types.map((t) => ({ window: t === 'sliding_attention' ? window : null, rope }));
}
