// candidates.safetensors, the hand-over from extract to select and eval: for every post-instruction position and
// layer, the candidate r (harmful − harmless), w (pseudo-harmful − harmless) and the three means, each
// [positions, layers, width]. Also what one candidate means as an ablation, which select and eval must agree on.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ScalpelError } from '../errors.js';
import { readSafetensorsHeader } from '../io/safetensors.js';
import type { MethodConfig } from './config.js';
import type { AblationSpec, ActAddSpec } from './hooks.js';
import { ablationDirection, dot, unit } from './math.js';
import { FILES, f32Tensor, readJson, readTensors, writeTensors } from './rundir.js';
import type { SelectionJson } from './select.js';

export interface Candidates {
  k: number;
  L: number;
  d: number;
  r: Float32Array;
  w: Float32Array;
  meanHarmless: Float32Array;
}

export async function writeCandidates(
  runDir: string,
  t: {
    k: number;
    L: number;
    d: number;
    r: ArrayLike<number>;
    w: ArrayLike<number>;
    meanHarmful: ArrayLike<number>;
    meanHarmless: ArrayLike<number>;
    meanPseudo: ArrayLike<number>;
  },
  postInstructionTokens: number[],
  fingerprint: string,
): Promise<void> {
  mkdirSync(runDir, { recursive: true });
  const shape = [t.k, t.L, t.d];
  await writeTensors(
    runDir,
    FILES.candidates,
    [
      f32Tensor('r', shape, t.r),
      f32Tensor('w', shape, t.w),
      f32Tensor('mean_harmful', shape, t.meanHarmful),
      f32Tensor('mean_harmless', shape, t.meanHarmless),
      f32Tensor('mean_pseudo', shape, t.meanPseudo),
    ],
    {
      format: 'scalpel-candidates/1',
      layout:
        '[position, layer, width]; position i is post-instruction token i, i.e. offset i - positions from the end',
      positions: String(t.k),
      layers: String(t.L),
      width: String(t.d),
      post_instruction_tokens: JSON.stringify(postInstructionTokens),
      hook: 'blocks.{layer}.hook_resid_pre',
      model_fingerprint: fingerprint,
    },
  );
}

export async function loadCandidates(runDir: string): Promise<Candidates> {
  const t = await readTensors(runDir, FILES.candidates);
  const r = t.get('r');
  const w = t.get('w');
  const mh = t.get('mean_harmless');
  const file = join(runDir, FILES.candidates);
  if (!r || !w || !mh) throw new ScalpelError(`${file}: expected tensors r, w and mean_harmless`);
  // The shape comes from the same bounds-checked header reader as every other safetensors file.
  const shape = (await readSafetensorsHeader(file)).entries.get('r')?.shape;
  if (shape?.length !== 3) throw new ScalpelError(`${file}: tensor r should be [positions, layers, width]`);
  const [k, L, d] = shape as [number, number, number];
  return { k, L, d, r, w, meanHarmless: mh };
}

/** The [width] vector at (position i, layer l) of a [k, L, d] tensor. */
export function slice(t: Float32Array, i: number, l: number, L: number, d: number): Float32Array {
  const o = (i * L + l) * d;
  return t.subarray(o, o + d);
}

/**
 * The ablation of candidate (i, l): ŵ from w and r with λ (target false) or r̂ (target true); for affine ablation
 * the targets are the harmless means' projections on the direction at every post-instruction position and layer.
 */
export function vectorFor(
  cand: Candidates,
  c: Pick<MethodConfig, 'target' | 'ablation'>,
  i: number,
  l: number,
  lambda: number,
): { ablation: AblationSpec } {
  const { L, d } = cand;
  const r = slice(cand.r, i, l, L, d);
  const direction = c.target === 'true' ? unit(r) : ablationDirection(slice(cand.w, i, l, L, d), r, lambda);
  const ablation: AblationSpec = { direction: Float32Array.from(direction) };
  if (c.ablation === 'affine') {
    // [position][layer]: each post-instruction position keeps its own harmless projection.
    ablation.affineTargets = Array.from({ length: cand.k }, (_, pos) =>
      Array.from({ length: L }, (_, layer) => dot(slice(cand.meanHarmless, pos, layer, L, d), direction)),
    );
  }
  return { ablation };
}

/**
 * The intervention a finished run chose, at this λ and α: the ablation of its chosen candidate (ŵ recomputed from
 * the stored w and r) and, with α ≠ 0, activation addition of its selected r. What eval, generate and bake apply.
 */
export async function runIntervention(
  runDir: string,
  c: Pick<MethodConfig, 'ablation'>,
  lambda: number,
  alpha: number,
): Promise<{ sel: SelectionJson; cand: Candidates; ablation: AblationSpec; actadd?: ActAddSpec }> {
  const sel = readJson<SelectionJson>(runDir, FILES.selection);
  if (!sel.chosen) throw new ScalpelError(`${join(runDir, FILES.selection)}: no chosen candidate; rerun select`);
  const cand = await loadCandidates(runDir);
  const target = sel.target as MethodConfig['target'];
  const { ablation } = vectorFor(
    cand,
    { target, ablation: c.ablation },
    sel.chosen.position_index,
    sel.chosen.layer,
    lambda,
  );
  if (alpha === 0) return { sel, cand, ablation };
  const a = sel.actadd?.chosen;
  if (!a)
    throw new ScalpelError(
      `${join(runDir, FILES.selection)}: no actadd vector was selected; rerun select with --alpha`,
    );
  return {
    sel,
    cand,
    ablation,
    actadd: { layer: a.layer, vector: slice(cand.r, a.position_index, a.layer, cand.L, cand.d), alpha },
  };
}
