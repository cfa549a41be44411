// What the method does to a model at run time, as one typed value: directional ablation of one vector (zero or
// affine), activation addition of another, both, or nothing. Built from a candidate (select scores every one) or from
// a finished run and the dials a user turns (λ, α, ablation mode); validated, and turned into engine hooks, here
// and nowhere else. select, eval, `generate --run` and bake all go through this module, so they cannot disagree on
// what a run means. HACKING.md lists what to touch to add an ablation mode.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { hookName, type HookMap } from '../engine/types.js';
import type { Tensor } from '../tensor.js';
import { ScalpelError } from '../errors.js';
import { loadCandidates, slice, type Candidates } from './candidates.js';
import { ablationHook, addHook, postInstructionAblationHook, pushHook } from './hooks.js';
import { ablationDirection, dot, unit } from './math.js';
import { FILES, f32Tensor, readJson, requireRunJson, type Chosen, type RunJson, type SelectionJson } from './rundir.js';

/** Which refusal the selected vector stands for: 'false' (ŵ from w and r at λ) or 'true' (r̂, Arditi et al.). */
export type Target = 'false' | 'true';

/** The ablation modes, as `--ablation` and config.ablation name them. */
export const ABLATION_MODES = ['zero', 'affine'] as const;
export type AblationMode = (typeof ABLATION_MODES)[number];

/** Activation addition x ← x + α v at one layer's block input (hook_resid_pre), every real token, every step. */
export interface ActAdd {
  layer: number;
  vector: Float32Array;
  alpha: number;
}

/**
 * What an ablation sets the projection on its direction to, and where.
 * - zero: 0 on hook_resid_pre, hook_attn_out and hook_mlp_out of every layer, at every position and decode step.
 * - affine: targets[position][layer] on the block input at the k post-instruction positions of the prompt, whose
 *   attention and MLP outputs there are zero-ablated, at prefill only. User text and generated tokens are left alone,
 *   because one position's target pushed onto every token (generated ones sit near zero) makes the model loop.
 */
export type AblationModeSpec = { kind: 'zero' } | { kind: 'affine'; targets: number[][] };

export type Intervention =
  | { kind: 'none' }
  | {
      kind: 'ablate';
      /** Unit vector. */
      direction: Float32Array;
      mode: AblationModeSpec;
      /**
       * Ablation strength s in [0, 1], the share of the step taken: zero mode x ← x − s(x·d)d, affine mode moves the
       * projection s of the way to its target. 1 = the full ablation; 0 = the model unchanged.
       */
      scale: number;
      /** Added after the ablation at its layer's input, so the added vector arrives whole. */
      add?: ActAdd;
    }
  /** Activation addition alone: select scores actadd candidates and --target true steering this way. */
  | { kind: 'add'; add: ActAdd };

export type Ablation = Extract<Intervention, { kind: 'ablate' }>;

/** The dials on a finished run: they change the intervention without re-selecting the chosen site. */
export interface InterventionSettings {
  /** Partial orthogonalization strength of ŵ against r, in [0, 1] (target false only). */
  lambda: number;
  /** Activation addition coefficient; 0 = off. */
  alpha: number;
  ablation: AblationMode;
  /** Ablation strength s in [0, 1]: the share of the projection step taken (1 = the paper's full ablation). */
  strength: number;
}

/** Also the values for a run.json that lacks a setting. */
export const INTERVENTION_DEFAULTS: InterventionSettings = { lambda: 1, alpha: 0, ablation: 'zero', strength: 1 };

/** A candidate: its post-instruction position index (0 = first) and layer. */
export interface Site {
  positionIndex: number;
  layer: number;
}

function unreachable(x: never): never {
  throw new Error(`internal: unhandled ablation mode ${JSON.stringify(x)}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Validation: one line per problem, naming where the value came from.

/** Names a setting in an error message: as the flag with the value given, or as a file's config field. */
export type SettingLabel = (field: keyof InterventionSettings, value: unknown) => string;
export const asFlag: SettingLabel = (field, value) => `--${field} ${String(value)}`;
export const inRunFile =
  (file: string): SettingLabel =>
  (field, value) =>
    `${file}: config.${field} is ${String(value)}`;

/** Checks the settings that are present: λ and the strength in [0, 1], α finite, a known ablation mode. */
export function validateSettings(s: Partial<InterventionSettings>, label: SettingLabel = asFlag): void {
  if (s.lambda !== undefined && !(s.lambda >= 0 && s.lambda <= 1))
    throw new ScalpelError(`${label('lambda', s.lambda)}: expected a number in [0, 1]`);
  if (s.alpha !== undefined && !Number.isFinite(s.alpha))
    throw new ScalpelError(`${label('alpha', s.alpha)}: expected a number`);
  if (s.strength !== undefined && !(s.strength >= 0 && s.strength <= 1))
    throw new ScalpelError(`${label('strength', s.strength)}: expected a number in [0, 1]`);
  if (s.ablation !== undefined && !ABLATION_MODES.includes(s.ablation))
    throw new ScalpelError(`${label('ablation', s.ablation)}: expected ${ABLATION_MODES.join(' or ')}`);
}

/** Checks an intervention built by hand or by this module against a model of `numLayers` layers. */
export function validateIntervention(iv: Intervention, numLayers: number): void {
  if (iv.kind === 'ablate') {
    if (!(iv.scale >= 0 && iv.scale <= 1))
      throw new ScalpelError(`intervention.scale ${iv.scale}: expected an ablation strength in [0, 1]`);
    if (!iv.direction.every(Number.isFinite)) throw new ScalpelError('intervention.direction: expected finite values');
    if (iv.mode.kind === 'affine') {
      const bad = iv.mode.targets.findIndex((t) => t.length !== numLayers || !t.every(Number.isFinite));
      if (iv.mode.targets.length === 0 || bad >= 0)
        throw new ScalpelError(
          `intervention.mode.targets${bad >= 0 ? `[${bad}]` : ''}: expected [position][layer] finite numbers, ${numLayers} layers per position`,
        );
    }
  }
  const add = iv.kind === 'none' ? undefined : iv.add;
  if (add) {
    if (!Number.isInteger(add.layer) || add.layer < 0 || add.layer >= numLayers)
      throw new ScalpelError(`intervention.add.layer ${add.layer}: expected an integer in [0, ${numLayers})`);
    if (!Number.isFinite(add.alpha)) throw new ScalpelError(`intervention.add.alpha ${add.alpha}: expected a number`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Building.

/**
 * The ablation of the candidate at `site`: ŵ from w and r at λ (target false) or r̂ (target true), in the given
 * mode. Pure; select calls it for every candidate, interventionFromRun for the chosen one.
 */
export function candidateAblation(
  cand: Candidates,
  site: Site,
  s: { target: Target; ablation: AblationMode; lambda: number; strength?: number },
): Ablation {
  const { L, d } = cand;
  const r = slice(cand.r, site.positionIndex, site.layer, L, d);
  const direction =
    s.target === 'true' ? unit(r) : ablationDirection(slice(cand.w, site.positionIndex, site.layer, L, d), r, s.lambda);
  return {
    kind: 'ablate',
    direction: Float32Array.from(direction),
    mode: modeSpec(s.ablation, cand, direction),
    scale: s.strength ?? 1,
  };
}

/** The mode's parameters for this direction (kept in float64, as the hooks compute in float64). */
function modeSpec(mode: AblationMode, cand: Candidates, direction: Float64Array): AblationModeSpec {
  const { k, L, d } = cand;
  switch (mode) {
    case 'zero':
      return { kind: 'zero' };
    case 'affine':
      // [position][layer]: each post-instruction position keeps its own harmless projection.
      return {
        kind: 'affine',
        targets: Array.from({ length: k }, (_, pos) =>
          Array.from({ length: L }, (_, layer) => dot(slice(cand.meanHarmless, pos, layer, L, d), direction)),
        ),
      };
    default:
      return unreachable(mode);
  }
}

/** Activation addition of the candidate r at `site` (a view into the candidates), α r at its layer's input. */
export function candidateActAdd(cand: Candidates, site: Site, alpha: number): ActAdd {
  return { layer: site.layer, vector: slice(cand.r, site.positionIndex, site.layer, cand.L, cand.d), alpha };
}

/** The mode's own numbers for vector.safetensors, beside the direction (affine: `affine_targets`, [positions, L]). */
export function modeTensors(mode: AblationModeSpec, numLayers: number): Tensor[] {
  switch (mode.kind) {
    case 'zero':
      return [];
    case 'affine':
      return [f32Tensor('affine_targets', [mode.targets.length, numLayers], mode.targets.flat())];
    default:
      return unreachable(mode);
  }
}

export interface InterventionRequest extends Partial<InterventionSettings> {
  /** run.json when the caller has read it already; it supplies the settings not given here. */
  run?: RunJson;
}

/** A finished run's intervention, and what callers report or record with it. */
export interface RunIntervention {
  /** The chosen candidate's ablation, with activation addition of the selected r when α ≠ 0. */
  intervention: Ablation;
  /** The settings used (request, else run.json, else the defaults) and selection.json's target. */
  settings: InterventionSettings & { target: Target };
  selection: SelectionJson;
  chosen: Chosen;
  candidates: Candidates;
}

/**
 * The intervention a finished run chose, at the requested λ, α and ablation mode (each defaulting to the run's):
 * the chosen (position, layer) stays, ŵ is recomputed from the stored w and r. What eval, generate and bake apply.
 */
export async function interventionFromRun(runDir: string, request: InterventionRequest = {}): Promise<RunIntervention> {
  const given: Partial<InterventionSettings> = {};
  const stored: Partial<InterventionSettings> = {};
  const fields = Object.keys(INTERVENTION_DEFAULTS) as (keyof InterventionSettings)[];
  for (const f of fields) if (request[f] !== undefined) Object.assign(given, { [f]: request[f] });
  if (fields.some((f) => given[f] === undefined)) {
    const config = (request.run ?? requireRunJson(runDir)).config;
    for (const f of fields)
      if (given[f] === undefined && config[f] !== undefined && config[f] !== null)
        Object.assign(stored, { [f]: config[f] });
  }
  validateSettings(given);
  validateSettings(stored, inRunFile(join(runDir, FILES.run)));
  const settings: InterventionSettings = { ...INTERVENTION_DEFAULTS, ...stored, ...given };

  if (!existsSync(join(runDir, FILES.selection)) || !existsSync(join(runDir, FILES.candidates)))
    throw new ScalpelError(`${runDir}: no finished select stage; run \`scalpel select\` first`);
  const selection = readJson<SelectionJson>(runDir, FILES.selection);
  const chosen = selection.chosen;
  if (!chosen) throw new ScalpelError(`${join(runDir, FILES.selection)}: no chosen candidate; rerun select`);
  checkChosen(chosen, join(runDir, FILES.selection), 'chosen');
  if (selection.target !== 'false' && selection.target !== 'true')
    throw new ScalpelError(`${join(runDir, FILES.selection)}: field target must be "false" or "true"`);
  const candidates = await loadCandidates(runDir);
  if (settings.alpha !== 0 && !selection.actadd?.chosen)
    throw new ScalpelError(
      `${join(runDir, FILES.selection)}: no actadd vector was selected; rerun select with --alpha`,
    );
  if (settings.alpha !== 0) checkChosen(selection.actadd?.chosen, join(runDir, FILES.selection), 'actadd.chosen');
  return interventionFromSelection(selection, candidates, settings);
}

/**
 * The intervention of a selection (selection.json's, or one scored at other settings by `scalpel sweep --reselect`)
 * at these settings: its chosen candidate's ablation, and with α ≠ 0 activation addition of its actadd choice.
 */
export function interventionFromSelection(
  selection: SelectionJson,
  candidates: Candidates,
  settings: InterventionSettings,
): RunIntervention {
  const chosen = selection.chosen;
  if (!chosen) throw new ScalpelError('selection: no chosen candidate');
  const target = selection.target;
  const intervention = candidateAblation(
    candidates,
    { positionIndex: chosen.position_index, layer: chosen.layer },
    { target, ablation: settings.ablation, lambda: settings.lambda, strength: settings.strength },
  );
  if (settings.alpha !== 0) {
    const a = selection.actadd?.chosen;
    if (!a) throw new ScalpelError(`selection: no actadd vector was selected at α = ${settings.alpha}`);
    intervention.add = candidateActAdd(candidates, { positionIndex: a.position_index, layer: a.layer }, settings.alpha);
  }
  return { intervention, settings: { ...settings, target }, selection, chosen, candidates };
}

/** A chosen candidate of selection.json names a position index and a layer (a damaged file may not). */
function checkChosen(c: unknown, file: string, field: string): asserts c is Chosen {
  const index = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  const o = c as Partial<Chosen> | null;
  if (o === null || typeof o !== 'object' || !index(o.position_index) || !index(o.layer))
    throw new ScalpelError(`${file}: field ${field} is not a candidate { position_index, layer }; rerun select`);
}

// ---------------------------------------------------------------------------------------------------------------
// Hooks.

/**
 * The engine hooks of an intervention (run at prefill and at every decode step; see AblationModeSpec for where
 * each mode acts), with activation addition at its layer's input after the ablation there. α = 0 adds nothing.
 */
export function interventionHooks(iv: Intervention, numLayers: number): HookMap {
  validateIntervention(iv, numLayers);
  const map: HookMap = new Map();
  if (iv.kind === 'ablate') {
    const { direction, mode, scale } = iv;
    switch (mode.kind) {
      case 'zero': {
        const zero = ablationHook(direction, 0, scale);
        for (let l = 0; l < numLayers; l++) {
          pushHook(map, hookName(l, 'hook_resid_pre'), zero);
          pushHook(map, hookName(l, 'hook_attn_out'), zero);
          pushHook(map, hookName(l, 'hook_mlp_out'), zero);
        }
        break;
      }
      case 'affine': {
        const zero = postInstructionAblationHook(
          direction,
          mode.targets.map(() => 0),
          scale,
        );
        for (let l = 0; l < numLayers; l++) {
          const pre = postInstructionAblationHook(
            direction,
            mode.targets.map((t) => t[l]!),
            scale,
          );
          pushHook(map, hookName(l, 'hook_resid_pre'), pre);
          pushHook(map, hookName(l, 'hook_attn_out'), zero);
          pushHook(map, hookName(l, 'hook_mlp_out'), zero);
        }
        break;
      }
      default:
        unreachable(mode);
    }
  }
  const add = iv.kind === 'none' ? undefined : iv.add;
  if (add && add.alpha !== 0) pushHook(map, hookName(add.layer, 'hook_resid_pre'), addHook(add.vector, add.alpha));
  return map;
}
