// Phi-3 / Phi-3.5 / Phi-4-mini: Llama with fused projections (qkv_proj = [q; k; v], gate_up_proj = [gate; up]),
// split here into row views (no copy); optional sliding window on every layer, partial rotary dims and LongRoPE.
import { ScalpelError } from '../errors.js';
import { baseArgs, makeRope, ropeParams, uniformLayers, type Architecture, type TensorMap } from './base.js';
import type { Tensor } from '../tensor.js';

/** Rows [from, to) of a 2-D tensor (or elements of a 1-D one), sharing its buffer. */
function rows(t: Tensor, from: number, to: number, name: string): Tensor {
  const cols = t.shape.length === 2 ? t.shape[1]! : 1;
  const shape = t.shape.length === 2 ? [to - from, cols] : [to - from];
  return { name, dtype: t.dtype, shape, data: t.data.subarray(from * cols, to * cols) };
}

export const phi3: Architecture = {
  name: 'phi3',
  modelTypes: ['phi3'],
  classes: ['Phi3ForCausalLM'],
  args(cfg) {
    const a = baseArgs('phi3', cfg, { normEps: 1e-5 });
    const window = cfg.optNum('sliding_window', null);
    a.layers = uniformLayers(a.numLayers, window, makeRope(cfg, ropeParams(cfg, 10000), a.headDim));
    return a;
  },
  sanitize(tensors, a) {
    const out: TensorMap = new Map(tensors);
    const qn = a.numHeads * a.headDim;
    const kvn = a.numKvHeads * a.headDim;
    for (const [name, t] of tensors) {
      let m = /^(model\.layers\.\d+\.self_attn\.)qkv_proj\.(weight|bias)$/.exec(name);
      if (m) {
        if (t.shape[0] !== qn + 2 * kvn)
          throw new ScalpelError(`model weights: tensor '${name}' has ${t.shape[0]} rows, expected ${qn + 2 * kvn}`);
        out.delete(name);
        out.set(`${m[1]}q_proj.${m[2]}`, rows(t, 0, qn, `${m[1]}q_proj.${m[2]}`));
        out.set(`${m[1]}k_proj.${m[2]}`, rows(t, qn, qn + kvn, `${m[1]}k_proj.${m[2]}`));
        out.set(`${m[1]}v_proj.${m[2]}`, rows(t, qn + kvn, qn + 2 * kvn, `${m[1]}v_proj.${m[2]}`));
        continue;
      }
      m = /^(model\.layers\.\d+\.mlp\.)gate_up_proj\.weight$/.exec(name);
      if (m) {
        if (t.shape[0] !== 2 * a.intermediate)
          throw new ScalpelError(
            `model weights: tensor '${name}' has ${t.shape[0]} rows, expected ${2 * a.intermediate}`,
          );
        out.delete(name);
        out.set(`${m[1]}gate_proj.weight`, rows(t, 0, a.intermediate, `${m[1]}gate_proj.weight`));
        out.set(`${m[1]}up_proj.weight`, rows(t, a.intermediate, 2 * a.intermediate, `${m[1]}up_proj.weight`));
      }
    }
    return out;
  },
};
