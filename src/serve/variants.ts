// Which model a request runs: the served model under its aliases (`<name>` = the run's own intervention, or the
// baseline without a run; `<name>:baseline`; `<name>:lambda=<x>`), adjusted by the request's `scalpel` field. Each
// distinct (intervention, λ, α) becomes engine hooks once (interventionFromRun + interventionHooks) and is kept, so a
// request pays only for a lookup.
import type { HookMap } from '../engine/types.js';
import { interventionFromRun, interventionHooks } from '../method/intervention.js';
import type { RunJson } from '../method/rundir.js';
import type { ScalpelField } from './schemas.js';
import { ApiError } from './api-error.js';

/** λ values listed by /v1/models next to the default and the baseline (any λ in [0, 1] is accepted). */
export const LISTED_LAMBDAS = [0, 0.5, 1];

/** How many distinct hook sets are kept; the oldest is dropped beyond it (any λ is accepted, so keys are unbounded). */
const CACHE_SIZE = 64;

/** What one request runs: no hooks (baseline), or the run's ablation at these settings (undefined = the run's). */
export type Variant = { kind: 'baseline' } | { kind: 'ablate'; lambda?: number; alpha?: number };

export class Variants {
  private readonly cache = new Map<string, Promise<HookMap>>();

  constructor(
    /** The served name: the model folder's basename or the Hub id. */
    readonly name: string,
    private readonly numLayers: number,
    private readonly run?: { dir: string; json: RunJson },
  ) {}

  /** The model ids /v1/models lists. */
  aliases(): string[] {
    const ids = [this.name, `${this.name}:baseline`];
    if (this.run) for (const x of LISTED_LAMBDAS) ids.push(`${this.name}:lambda=${x}`);
    return ids;
  }

  /** The variant a request names by its model id and `scalpel` field; a 404 or 400 ApiError when it names none. */
  resolve(model: string, field: ScalpelField = {}): Variant {
    let variant: Variant;
    if (model === this.name) variant = this.run ? { kind: 'ablate' } : { kind: 'baseline' };
    else if (model === `${this.name}:baseline`) variant = { kind: 'baseline' };
    else if (model.startsWith(`${this.name}:lambda=`)) {
      const text = model.slice(`${this.name}:lambda=`.length);
      const lambda = /^\d+(\.\d+)?$/.test(text) ? Number(text) : Number.NaN;
      if (!(lambda >= 0 && lambda <= 1))
        throw new ApiError(400, `model ${JSON.stringify(model)}: λ must be a number in [0, 1]`, 'model');
      variant = { kind: 'ablate', lambda };
    } else throw new ApiError(404, `The model ${JSON.stringify(model)} does not exist`, 'model', 'model_not_found');

    const { intervention, lambda, alpha } = field;
    if (intervention === 'none') return { kind: 'baseline' };
    if (intervention === 'ablate' || lambda !== undefined || alpha !== undefined) {
      const base: { lambda?: number; alpha?: number } = variant.kind === 'ablate' ? variant : {};
      variant = { kind: 'ablate', lambda: lambda ?? base.lambda, alpha: alpha ?? base.alpha };
    }
    if (variant.kind === 'ablate' && !this.run)
      throw new ApiError(
        400,
        'this server has no run (start it with --run RUN) and serves the baseline only',
        'scalpel',
      );
    return variant;
  }

  /** The hooks of a variant (undefined for the baseline), built on first use. */
  async hooks(v: Variant): Promise<HookMap | undefined> {
    if (v.kind === 'baseline' || !this.run) return undefined;
    const key = `${v.lambda ?? 'run'}|${v.alpha ?? 'run'}`;
    let hooks = this.cache.get(key);
    if (!hooks) {
      const run = this.run;
      hooks = interventionFromRun(run.dir, { run: run.json, lambda: v.lambda, alpha: v.alpha }).then((applied) =>
        interventionHooks(applied.intervention, this.numLayers),
      );
      // A failure (e.g. α ≠ 0 on a run without an actadd vector) is not kept: it says why to every request.
      hooks.catch(() => this.cache.delete(key));
      this.cache.set(key, hooks);
      if (this.cache.size > CACHE_SIZE) this.cache.delete(this.cache.keys().next().value!);
    }
    return hooks;
  }
}
