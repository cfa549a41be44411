// `scalpel sweep --ability`: general ability at every sweep setting (the figures of `scalpel ability`: harmless
// first-token KL mean and p95, WikiText-2 perplexity, MMLU and ARC-Challenge accuracy) with that setting's
// intervention. The samples are tokenized once and the baseline measured once per sweep (kept in sweep.json, never
// recomputed while the sizes stay the same); each setting then costs one measurement under its hooks. The KL needs
// the baseline's first-token logits on the harmless prompts: they are computed once per process, when a setting
// first needs them (a resumed sweep prefills those prompts again, and counts it).
import { createHash } from 'node:crypto';
import { lastLogits } from '../engine/generate.js';
import type { HookMap } from '../engine/types.js';
import { ScalpelError } from '../errors.js';
import type { LoadedModel } from '../model/load.js';
import {
  type Ability,
  type AbilityInputs,
  type AbilityJson,
  type AbilitySizes,
  abilityWork,
  measureAbility,
  percentile,
  prepareAbility,
} from './ability.js';
import { loadPromptSet } from './datasets.js';
import { engineBackend } from './engine-backend.js';
import { klDivergence } from './math.js';
import type { ProgressFactory } from './pipeline.js';

/** What `sweep --ability` measures, and with what. */
export interface SweepAbilityRequest {
  sizes: AbilitySizes;
  /** Harmless prompts for the KL: a dataset name, name:N or prompt file (see klDatasetFor). */
  klDataset: string;
  nKl: number;
  /** The model as a LoadedModel (log-probabilities need more than the Backend offers); loaded once, shared. */
  model: () => Promise<LoadedModel>;
  system?: string;
  batchSize?: number;
}

/** The sizes actually measured, as ability.json states them. */
export type AbilitySizesJson = AbilityJson['sizes'];

/** sweep.json's `ability_baseline`: the unedited model's figures, shared by every point of the same `key`. */
export interface SweepAbilityBaseline {
  key: string;
  sizes: AbilitySizesJson;
  kl_dataset: string;
  baseline: Ability;
  /** Sequences run to measure it (one prefill each: choices, windows). */
  forward_passes: number;
  seconds: number;
}

/** A point's `ability`: its figures under its intervention, with the KL against the baseline. */
export interface PointAbility {
  key: string;
  edited: Ability;
  kl: NonNullable<AbilityJson['kl']>;
  /** Sequences run for this point (its own, plus the baseline KL prefills when this process needed them first). */
  forward_passes: number;
  seconds: number;
}

/** What the figures depend on: two requests with the same key give the same numbers for the same intervention. */
export function abilityKey(req: Pick<SweepAbilityRequest, 'sizes' | 'klDataset' | 'nKl' | 'system'>): string {
  const id = JSON.stringify([req.sizes, req.klDataset, req.nKl, req.system ?? null]);
  return createHash('sha256').update(id).digest('hex').slice(0, 16);
}

const round2 = (x: number) => Math.round(x * 100) / 100;

/** One model and its prepared inputs, measured under any number of interventions. */
export class SweepAbility {
  readonly key: string;
  private baseKlLogits?: Float32Array[];

  private constructor(
    private readonly req: SweepAbilityRequest,
    private readonly m: LoadedModel,
    private readonly inputs: AbilityInputs,
    private readonly klPrompts: number[][],
    private readonly progress?: ProgressFactory,
  ) {
    this.key = abilityKey(req);
  }

  /** Loads the samples and tokenizes them (and the KL prompts, with the run's chat template) once. */
  static async open(req: SweepAbilityRequest, dataDir: string | undefined, progress?: ProgressFactory) {
    const m = await req.model();
    const inputs = prepareAbility(m, req.sizes, dataDir);
    const set = loadPromptSet(req.klDataset, dataDir);
    const prompts = set.prompts.slice(0, req.nKl);
    if (prompts.length === 0) throw new ScalpelError(`--kl-dataset ${req.klDataset}: no prompts`);
    const chat = engineBackend(m, { system: req.system });
    return new SweepAbility(
      req,
      m,
      inputs,
      prompts.map((p) => chat.encodePrompt(p)),
      progress,
    );
  }

  get sizes(): AbilitySizesJson {
    return {
      n_mmlu: this.inputs.mmlu.length,
      n_arc: this.inputs.arc.length,
      n_ppl_docs: this.inputs.ppl.docs.length,
      shots: this.req.sizes.shots,
      n_kl: this.klPrompts.length,
    };
  }

  private measure(label: string, hooks?: HookMap): Ability {
    const bar = this.progress?.(label, abilityWork(this.inputs));
    try {
      return measureAbility(this.m, this.inputs, {
        hooks,
        batchSize: this.req.batchSize,
        onProgress: (d, t) => bar?.update(d, t),
      }).ability;
    } finally {
      bar?.stop();
    }
  }

  private logits(label: string, hooks?: HookMap): Float32Array[] {
    const bar = this.progress?.(label, this.klPrompts.length);
    try {
      return lastLogits(this.m.model, this.klPrompts, {
        hooks,
        batchSize: this.req.batchSize,
        onProgress: (d, t) => bar?.update(d, t),
      });
    } finally {
      bar?.stop();
    }
  }

  /** The unedited model's figures. */
  baseline(): SweepAbilityBaseline {
    const t0 = performance.now();
    const baseline = this.measure('ability baseline');
    return {
      key: this.key,
      sizes: this.sizes,
      kl_dataset: this.req.klDataset,
      baseline,
      forward_passes: abilityWork(this.inputs),
      seconds: round2((performance.now() - t0) / 1000),
    };
  }

  /** The figures under `hooks`, and the first-token KL(baseline ‖ edited) on the harmless prompts. */
  point(hooks: HookMap, label: string): PointAbility {
    const t0 = performance.now();
    let passes = abilityWork(this.inputs) + this.klPrompts.length;
    if (!this.baseKlLogits) {
      this.baseKlLogits = this.logits('ability KL baseline');
      passes += this.klPrompts.length;
    }
    const edited = this.measure(`ability ${label}`, hooks);
    const ed = this.logits(`ability KL ${label}`, hooks);
    const values = this.baseKlLogits.map((b, i) => klDivergence(b, ed[i]!));
    const n = values.length;
    return {
      key: this.key,
      edited,
      kl: {
        n,
        first_token_mean: values.reduce((a, b) => a + b, 0) / n,
        first_token_p95: percentile(values, 95),
        dataset: this.req.klDataset,
      },
      forward_passes: passes,
      seconds: round2((performance.now() - t0) / 1000),
    };
  }
}
