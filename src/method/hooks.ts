// The small hook factories interventions are made of (src/engine/types.ts): ablation, activation addition and
// activation capture. Each hook edits a [batch, seq, width] f32 block in place. Which hooks go where for an
// intervention is decided in intervention.ts.
import { hookName, type Hook, type HookContext, type HookMap } from '../engine/types.js';
import type { MeanAccumulator } from './math.js';

function toF32(v: ArrayLike<number>): Float32Array {
  return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
}

/**
 * x ← x + s(target − x·d)d on the row of `width` values at `offset` (d is a unit vector): the projection on d moves
 * share s of the way to `target` (s = 1 sets it; 1·c is c exactly, so s = 1 is bit-identical to setting it).
 */
function setProjection(
  act: Float32Array,
  offset: number,
  width: number,
  d: Float32Array,
  target: number,
  strength: number,
): void {
  let p = 0;
  for (let j = 0; j < width; j++) p += act[offset + j]! * d[j]!;
  const c = strength * (target - p);
  for (let j = 0; j < width; j++) act[offset + j]! += c * d[j]!;
}

/**
 * Directional ablation x ← x − s((x·d) − c)d for every real token row (d is a unit vector).
 * c = 0 is the paper's zero ablation; c = the harmless mean projection gives affine ablation; s < 1 a partial one.
 */
export function ablationHook(direction: ArrayLike<number>, target = 0, strength = 1): Hook {
  const d = toF32(direction);
  return (act: Float32Array, ctx: HookContext) => {
    const w = ctx.width;
    const rows = ctx.batch * ctx.seq;
    for (let row = 0; row < rows; row++) {
      if (!ctx.valid[row]) continue;
      setProjection(act, row * w, w, d, target, strength);
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

/** Appends `hook` to the hooks at `name`, after any already there. */
export function pushHook(map: HookMap, name: string, hook: Hook): void {
  const list = map.get(name);
  if (list) list.push(hook);
  else map.set(name, [hook]);
}

/**
 * Affine ablation at the last `targets.length` columns of a prompt pass (ctx.start = 0; batches are left-padded,
 * so every prompt's post-instruction tokens are those columns): their projection on d becomes targets[i].
 */
export function postInstructionAblationHook(
  direction: ArrayLike<number>,
  targets: readonly number[],
  strength = 1,
): Hook {
  const d = toF32(direction);
  const k = targets.length;
  return (act: Float32Array, ctx: HookContext) => {
    if (ctx.start !== 0 || ctx.seq < k) return;
    const w = ctx.width;
    for (let b = 0; b < ctx.batch; b++)
      for (let i = 0; i < k; i++) {
        const row = b * ctx.seq + ctx.seq - k + i;
        if (!ctx.valid[row]) continue;
        setProjection(act, row * w, w, d, targets[i]!, strength);
      }
  };
}

/** Hooks that feed every layer's block input (prefill only) into a mean accumulator. */
export function captureHooks(numLayers: number, acc: MeanAccumulator): HookMap {
  const map: HookMap = new Map();
  for (let l = 0; l < numLayers; l++) {
    pushHook(map, hookName(l, 'hook_resid_pre'), (act, ctx) => {
      if (ctx.start === 0) acc.addBlock(l, act, ctx.batch, ctx.seq, ctx.valid);
    });
  }
  return map;
}
