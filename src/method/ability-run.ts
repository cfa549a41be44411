// `scalpel ability` as a library call: a model alone (baseline) or a finished run (baseline vs the run's
// intervention at the requested λ / α / ablation), measured by ability.ts and written as ability.json and
// ability-items.jsonl (atomically) into the run directory or an output folder.
import { join } from 'node:path';
import { withAtomicFile, writeAll } from '../io/atomic.js';
import type { HookMap } from '../engine/types.js';
import { loadModel, type LoadedModel } from '../model/load.js';
import { ScalpelError } from '../errors.js';
import {
  ABILITY_FORMAT,
  type AbilityItem,
  type AbilityJson,
  type AbilitySizes,
  abilityWork,
  firstTokenKl,
  measureAbility,
  prepareAbility,
} from './ability.js';
import { findDataset, loadPromptSet } from './datasets.js';
import { engineBackend } from './engine-backend.js';
import { type InterventionRequest, interventionFromRun, interventionHooks } from './intervention.js';
import type { ProgressFactory } from './pipeline.js';
import { FILES, modelFingerprint, requireRunJson, writeJson } from './rundir.js';

export interface AbilityRunOptions {
  /** The model folder (already resolved). */
  modelDir: string;
  /** A finished run: its intervention is the edited condition. Without it only the baseline is measured. */
  runDir?: string;
  /** λ, α, ablation over the run's own (each optional). */
  request?: InterventionRequest;
  /** Where ability.json and ability-items.jsonl go (the run directory, or none: nothing is written). */
  outDir?: string;
  sizes: AbilitySizes;
  /** Harmless prompts for the KL (a dataset name, name:N or prompt file) and how many of them to use. */
  klDataset?: string;
  nKl: number;
  system?: string;
  dataDir?: string;
  batchSize?: number;
  progress?: ProgressFactory;
  log?: (line: string) => void;
}

/**
 * The harmless set that KL is measured on: the held-out counterpart of the run's harmless validation set (its
 * "-test" split when one exists by name, e.g. harmless-val → harmless-test), else that set itself.
 */
export function klDatasetFor(harmlessVal: string): string {
  const test = harmlessVal.replace(/-val$/, '-test');
  return test !== harmlessVal && findDataset(test) ? test : harmlessVal;
}

function bar(o: AbilityRunOptions, label: string, total: number) {
  const b = o.progress?.(label, total);
  return { cb: (done: number, t?: number) => b?.update(done, t), stop: () => b?.stop() };
}

export async function runAbility(o: AbilityRunOptions): Promise<AbilityJson> {
  const t0 = performance.now();
  const ri = o.runDir !== undefined ? await interventionFromRun(o.runDir, o.request) : undefined;
  const m: LoadedModel = await loadModel(o.modelDir);
  const inputs = prepareAbility(m, o.sizes, o.dataDir);
  const items: AbilityItem[] = [];

  const measure = (condition: string, hooks?: HookMap) => {
    const b = bar(o, `ability ${condition}`, abilityWork(inputs));
    try {
      const r = measureAbility(m, inputs, { hooks, batchSize: o.batchSize, condition, onProgress: b.cb });
      items.push(...r.items);
      return r.ability;
    } finally {
      b.stop();
    }
  };
  const baseline = measure('baseline');
  let edited: AbilityJson['conditions']['edited'] = null;
  let kl: AbilityJson['kl'] = null;
  if (ri) {
    const hooks = interventionHooks(ri.intervention, m.model.numLayers);
    edited = measure('edited', hooks);
    const run = o.request?.run ?? requireRunJson(o.runDir!);
    const klSet = o.klDataset ?? klDatasetFor(String(run.config['harmlessVal'] ?? 'harmless-val'));
    const set = loadPromptSet(klSet, o.dataDir);
    const prompts = set.prompts.slice(0, o.nKl);
    if (prompts.length === 0) throw new ScalpelError(`KL dataset ${klSet}: no prompts`);
    const backend = engineBackend(m, { system: o.system });
    const b = bar(o, 'ability KL', 2 * prompts.length);
    try {
      const r = firstTokenKl(
        m,
        prompts.map((p) => backend.encodePrompt(p)),
        hooks,
        { batchSize: o.batchSize, onProgress: b.cb },
      );
      kl = { n: prompts.length, first_token_mean: r.mean, first_token_p95: r.p95, dataset: klSet };
    } finally {
      b.stop();
    }
  }
  const json: AbilityJson = {
    format: ABILITY_FORMAT,
    model_fingerprint: modelFingerprint(o.modelDir),
    settings: ri
      ? {
          lambda: ri.settings.lambda,
          alpha: ri.settings.alpha,
          ablation: ri.settings.ablation,
          target: ri.settings.target,
          site: { position: ri.chosen.position, layer: ri.chosen.layer },
        }
      : null,
    conditions: { baseline, edited },
    kl,
    sizes: {
      n_mmlu: inputs.mmlu.length,
      n_arc: inputs.arc.length,
      n_ppl_docs: inputs.ppl.docs.length,
      shots: o.sizes.shots,
      n_kl: kl?.n ?? 0,
    },
    seconds: (performance.now() - t0) / 1000,
  };
  if (o.outDir === undefined) return json;
  await withAtomicFile(join(o.outDir, FILES.abilityItems), async (handle) => {
    await writeAll(handle, items.map((it) => `${JSON.stringify(it)}\n`).join(''));
  });
  await writeJson(o.outDir, FILES.ability, json);
  return json;
}
