// Interventions as engine hooks (src/engine/types.ts). Each hook edits a [batch, seq, width] f32 block in place.
import { hookName, type Hook, type HookContext, type HookMap } from '../engine/types.js';
import type { MeanAccumulator } from './math.js';

function toF32(v: ArrayLike<number>): Float32Array {
  return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
}

/** x ← x − (x·d)d + target·d on the row of `width` values at `offset` (d is a unit vector). */
function setProjection(act: Float32Array, offset: number, width: number, d: Float32Array, target: number): void {
  let p = 0;
  for (let j = 0; j < width; j++) p += act[offset + j]! * d[j]!;
  const c = target - p;
  for (let j = 0; j < width; j++) act[offset + j]! += c * d[j]!;
}

/**
 * Directional ablation x ← x − (x·d)d + c·d for every real token row (d is a unit vector).
 * c = 0 is the paper's zero ablation; c = the harmless mean projection gives affine ablation.
 */
export function ablationHook(direction: ArrayLike<number>, target = 0): Hook {
  const d = toF32(direction);
  return (act: Float32Array, ctx: HookContext) => {
    const w = ctx.width;
    const rows = ctx.batch * ctx.seq;
    for (let row = 0; row < rows; row++) {
      if (!ctx.valid[row]) continue;
      setProjection(act, row * w, w, d, target);
    }
  };
}

/** Activation addition x ← x + α v at every real token row. */
export function addHook(vector: ArrayLike<number>, alpha: number): Hook {
  const v = toF32(vector);
  return (act: Float32Array, ctx: HookContext) => {
    const w = ctx.width;
    const rows = ctx.batch * ctx.seq;
    for (let row = 0; row < rows; row++) {
      if (!ctx.valid[row]) continue;
      const o = row * w;
      for (let j = 0; j < w; j++) act[o + j]! += alpha * v[j]!;
    }
  };
}

function push(map: HookMap, name: string, hook: Hook): void {
  const list = map.get(name);
  if (list) list.push(hook);
  else map.set(name, [hook]);
}

export interface AblationSpec {
  direction: ArrayLike<number>;
  /**
   * Affine ablation: target projections [k][L] for the k post-instruction positions (−k … −1) at every layer, e.g.
   * the harmless means' projections on the direction. Applied to those positions of the prompt only, at prefill:
   * each layer input there gets its target projection and attention / MLP outputs there are zero-ablated. User
   * text and generated tokens are left alone, because one position's target pushed onto every token (generated
   * ones sit near zero) makes the model loop. Omit for zero ablation (every position, every step).
   */
  affineTargets?: readonly (readonly number[])[];
}

/**
 * Affine ablation at the last `targets.length` columns of a prompt pass (ctx.start = 0; batches are left-padded,
 * so every prompt's post-instruction tokens are those columns): their projection on d becomes targets[i].
 */
export function postInstructionAblationHook(direction: ArrayLike<number>, targets: readonly number[]): Hook {
  const d = toF32(direction);
  const k = targets.length;
  return (act: Float32Array, ctx: HookContext) => {
    if (ctx.start !== 0 || ctx.seq < k) return;
    const w = ctx.width;
    for (let b = 0; b < ctx.batch; b++)
      for (let i = 0; i < k; i++) {
        const row = b * ctx.seq + ctx.seq - k + i;
        if (!ctx.valid[row]) continue;
        setProjection(act, row * w, w, d, targets[i]!);
      }
  };
}

export interface ActAddSpec {
  layer: number;
  vector: ArrayLike<number>;
  alpha: number;
}

/**
 * The hook map of an intervention: ablation at every layer on hook_resid_pre, hook_attn_out and hook_mlp_out
 * (hooks run at prefill and at every decode step, so every position and every generated token is covered),
 * and/or activation addition at one layer's input.
 */
export function interventionHooks(numLayers: number, ablation?: AblationSpec, actadd?: ActAddSpec): HookMap {
  const map: HookMap = new Map();
  if (ablation) {
    const targets = ablation.affineTargets;
    const zero = targets
      ? postInstructionAblationHook(
          ablation.direction,
          targets.map(() => 0),
        )
      : ablationHook(ablation.direction, 0);
    for (let l = 0; l < numLayers; l++) {
      const pre = targets
        ? postInstructionAblationHook(
            ablation.direction,
            targets.map((t) => t[l]!),
          )
        : zero;
      push(map, hookName(l, 'hook_resid_pre'), pre);
      push(map, hookName(l, 'hook_attn_out'), zero);
      push(map, hookName(l, 'hook_mlp_out'), zero);
    }
  }
  // After the ablation at that layer's input, so the added vector arrives whole.
  if (actadd && actadd.alpha !== 0)
    push(map, hookName(actadd.layer, 'hook_resid_pre'), addHook(actadd.vector, actadd.alpha));
  return map;
}

/** Hooks that feed every layer's block input (prefill only) into a mean accumulator. */
export function captureHooks(numLayers: number, acc: MeanAccumulator): HookMap {
  const map: HookMap = new Map();
  for (let l = 0; l < numLayers; l++) {
    push(map, hookName(l, 'hook_resid_pre'), (act, ctx) => {
      if (ctx.start === 0) acc.addBlock(l, act, ctx.batch, ctx.seq, ctx.valid);
    });
  }
  return map;
}
