// candidates.safetensors, the hand-over from extract to select and eval: for every post-instruction position and
// layer, the candidate r (harmful − harmless), w (pseudo-harmful − harmless) and the three means, each
// [positions, layers, width]. What one candidate means as an intervention is intervention.ts's job.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ScalpelError } from '../errors.js';
import { readSafetensorsHeader } from '../io/safetensors.js';
import { FILES, f32Tensor, readTensors, writeTensors, type SelectionRow } from './rundir.js';

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

/** A candidate (position index i, layer l) and its row in selection.json. */
export interface Slot {
  i: number;
  l: number;
  row: SelectionRow;
}

/** Every (position index, layer) candidate with its unscored selection.json row; `pruned` says why a layer is out. */
export function candidateGrid(
  k: number,
  L: number,
  pruned: (layer: number) => string | null,
): { rows: SelectionRow[]; slots: Slot[] } {
  const rows: SelectionRow[] = [];
  const slots: Slot[] = [];
  for (let i = 0; i < k; i++)
    for (let l = 0; l < L; l++) {
      const row: SelectionRow = {
        position: i - k,
        layer: l,
        refusal_score: null,
        kl: null,
        harmful_score: null,
        rejected: pruned(l),
      };
      rows.push(row);
      slots.push({ i, l, row });
    }
  return { rows, slots };
}
