// The paper's pipeline as three resumable stages over a run directory:
//   extract: sample prompts, find refusal tokens, score and filter the training prompts, average block inputs at
//            the post-instruction positions, and form the candidates r (harmful − harmless) and w (pseudo − harmless)
//   select:  ablate each candidate's ŵ and keep the one with the lowest pseudo-harmful refusal score that passes
//            the KL, layer and harm-guard rules (or Arditi et al.'s rule for --target true; and --alpha's actadd)
//   eval:    greedy generation on evaluation sets, baseline and intervened, judged by substring matching
// Each stage records its settings key, wall time and forward passes in run.json; a rerun skips stages whose key
// is unchanged.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ScalpelError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { PassCounter, counted, type Backend, type OnProgress } from './backend.js';
import { pruneLayer, validateConfig, type MethodConfig } from './config.js';
import { loadPromptSet, type LoadedSet } from './datasets.js';
import { interventionHooks, type AblationSpec, type ActAddSpec } from './hooks.js';
import { hookName, type HookMap } from '../engine/types.js';
import { isRefusal } from './judge.js';
import { MeanAccumulator, ablationDirection, diffInMeans, dot, klDivergence, mean, norm, refusalScore, unit } from './math.js';
import { sample, shuffled, mulberry32 } from './rng.js';
import {
  FILES, RUN_FORMAT, checkSameModel, f32Tensor, modelFingerprint, readJson, readRunJson, readTensors, writeJson, writeTensors,
  type RunJson, type StageRecord,
} from './rundir.js';

export type Stage = 'extract' | 'select' | 'eval';
export type ProgressFactory = (label: string, total: number) => { update(done: number, total?: number): void; stop(): void };

export interface RunOptions {
  runDir: string;
  modelDir: string;
  config: MethodConfig;
  dataDir?: string;
  /** The model, or how to load it (only called when some stage must compute). */
  backend: Backend | (() => Promise<Backend>);
  progress?: ProgressFactory;
  log?: (line: string) => void;
  /** Recompute stages even when run.json says they are done with the same settings. */
  force?: boolean;
}

export interface SelectionRow {
  position: number;
  layer: number;
  refusal_score: number | null;
  kl: number | null;
  harmful_score: number | null;
  steering_score?: number | null;
  rejected: string | null;
}

export interface Chosen {
  position: number;
  layer: number;
  /** Index of the position among the post-instruction tokens (0 = first). */
  position_index: number;
  refusal_score: number | null;
  kl: number | null;
  harmful_score: number | null;
}

export interface SelectionJson {
  target: 'false' | 'true';
  lambda: number;
  ablation: string;
  rules: Record<string, unknown>;
  baseline: { pseudo_val_score: number | null; harmful_val_score: number | null; harmless_val_score: number | null };
  candidates: SelectionRow[];
  chosen: Chosen | null;
  actadd?: { alpha: number; kl_threshold: number; candidates: SelectionRow[]; chosen: Chosen | null };
}

export interface EvalResult {
  dataset: string;
  condition: string;
  lambda: number | null;
  alpha: number | null;
  n: number;
  compliance_rate: number;
  refusal_rate: number;
  target?: string;
  ablation?: string;
  max_new_tokens?: number;
}

export interface ResponseRow {
  dataset: string;
  condition: string;
  lambda: number | null;
  alpha: number | null;
  index: number;
  prompt: string;
  response: string;
  refusal: boolean;
  max_new_tokens: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Stage keys: the settings each stage depends on (plus its upstream stage's key).

const EXTRACT_FIELDS = ['harmfulTrain', 'harmlessTrain', 'pseudoTrain', 'column', 'nTrain', 'seed', 'refusalTokens', 'probeTokens', 'refusalTokenMinShare', 'filter', 'system'] as const;
const SELECT_FIELDS = ['harmfulVal', 'harmlessVal', 'pseudoVal', 'nVal', 'lambda', 'target', 'ablation', 'klThreshold', 'prunePercent', 'harmGuard', 'trueKlThreshold', 'induceThreshold', 'alpha', 'actaddKlThreshold'] as const;
const EVAL_FIELDS = ['evalDatasets', 'maxNewTokens', 'judgeSubstrings'] as const;

function pick(c: MethodConfig, fields: readonly (keyof MethodConfig)[]): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const f of fields) o[f] = c[f] ?? null;
  return o;
}

export function stageKeys(c: MethodConfig, fingerprint: string, dataDir: string | undefined): Record<Stage, string> {
  const extract = JSON.stringify({ model: fingerprint, dataDir: dataDir ?? null, ...pick(c, EXTRACT_FIELDS) });
  const select = JSON.stringify({ extract, ...pick(c, SELECT_FIELDS) });
  const evaluate = JSON.stringify({ select, ...pick(c, EVAL_FIELDS) });
  return { extract, select, eval: evaluate };
}

// ---------------------------------------------------------------------------------------------------------------

const LABELS = { harmfulTrain: 'harmful_train', harmlessTrain: 'harmless_train', pseudoTrain: 'pseudo_train', harmfulVal: 'harmful_val', harmlessVal: 'harmless_val', pseudoVal: 'pseudo_val' } as const;
type SetKey = keyof typeof LABELS;

export interface SampledSets {
  sets: Record<SetKey, { loaded: LoadedSet; prompts: string[] }>;
}

/**
 * Loads and samples the six prompt sets: n_train from each training set and n_val from each validation set, by
 * mulberry32(seed). When a training and a validation set are the same source they are split without overlap.
 */
export function sampleSets(c: MethodConfig, dataDir: string | undefined): SampledSets {
  const out = {} as SampledSets['sets'];
  for (const [train, val] of [['harmfulTrain', 'harmfulVal'], ['harmlessTrain', 'harmlessVal'], ['pseudoTrain', 'pseudoVal']] as const) {
    const lt = loadPromptSet(c[train], dataDir, c.column);
    if (c[train] === c[val]) {
      const all = shuffled(lt.prompts, mulberry32(c.seed));
      const nVal = Math.min(c.nVal, Math.floor(all.length / 2));
      out[val] = { loaded: lt, prompts: all.slice(0, nVal) };
      out[train] = { loaded: lt, prompts: all.slice(nVal, nVal + c.nTrain) };
    } else {
      const lv = loadPromptSet(c[val], dataDir, c.column);
      out[train] = { loaded: lt, prompts: sample(lt.prompts, c.nTrain, c.seed) };
      out[val] = { loaded: lv, prompts: sample(lv.prompts, c.nVal, c.seed) };
    }
  }
  return { sets: out };
}

/** Parses a dataset reference list for evaluation, loading each (errors early, before anything is written). */
export function loadEvalSets(c: MethodConfig, dataDir: string | undefined): LoadedSet[] {
  return c.evalDatasets.map((ref) => loadPromptSet(ref, dataDir, c.column));
}

// ---------------------------------------------------------------------------------------------------------------

class Runner {
  readonly counter = new PassCounter();
  private backendInst?: Backend;
  readonly keys: Record<Stage, string>;
  readonly fingerprint: string;
  run: RunJson;
  readonly log: (s: string) => void;

  constructor(readonly o: RunOptions, readonly sets: SampledSets, readonly evalSets: LoadedSet[], existing: RunJson | null, fingerprint: string) {
    this.fingerprint = fingerprint;
    this.keys = stageKeys(o.config, fingerprint, o.dataDir);
    this.log = o.log ?? (() => {});
    this.run = existing ?? {
      format: RUN_FORMAT,
      model: { dir: resolve(o.modelDir), fingerprint },
      config: {},
      seeds: { sample: o.config.seed, rng: 'mulberry32' },
      stages: {},
    };
    this.run.config = { ...o.config, dataDir: o.dataDir ?? null };
    this.run.seeds = { sample: o.config.seed, rng: 'mulberry32' };
  }

  async backend(): Promise<Backend> {
    if (!this.backendInst) {
      const t0 = performance.now();
      const b = typeof this.o.backend === 'function' ? await this.o.backend() : this.o.backend;
      this.run['model_load_seconds'] = Math.round((performance.now() - t0) / 10) / 100;
      this.backendInst = counted(b, this.counter);
      this.run.model = { ...this.run.model, num_layers: b.numLayers, width: b.width, vocab_size: b.vocabSize };
    }
    return this.backendInst;
  }

  done(stage: Stage, honourForce = true): boolean {
    if (this.o.force && honourForce) return false;
    const rec = this.run.stages[stage];
    if (!rec || rec.key !== this.keys[stage]) return false;
    const files: Record<Stage, string[]> = {
      extract: [FILES.candidates], select: [FILES.selection, FILES.vector], eval: [FILES.eval, FILES.responses],
    };
    return files[stage].every((f) => existsSync(join(this.o.runDir, f)));
  }

  ensureDir(): void {
    mkdirSync(this.o.runDir, { recursive: true });
  }

  progress(label: string, total: number): { cb: OnProgress; stop: () => void; bump: () => void } {
    const bar = this.o.progress?.(label, total);
    let n = 0;
    return {
      cb: (done, t) => bar?.update(done, t),
      bump: () => bar?.update(++n, total),
      stop: () => bar?.stop(),
    };
  }

  async finishStage(stage: Stage, t0: number): Promise<void> {
    const rec: StageRecord = {
      key: this.keys[stage],
      seconds: Math.round((performance.now() - t0) / 10) / 100,
      ...this.counter.snapshot(),
      finished_at: new Date().toISOString(),
    };
    this.run.stages[stage] = rec;
    // Downstream stages were computed from the old result of this one.
    const order: Stage[] = ['extract', 'select', 'eval'];
    for (const s of order.slice(order.indexOf(stage) + 1)) {
      if (this.run.stages[s] && this.run.stages[s]!.key !== this.keys[s]) delete this.run.stages[s];
    }
    await writeJson(this.o.runDir, FILES.run, this.run);
    this.log(`${stage}: ${rec.seconds}s, ${rec.forward_passes} forward passes (${rec.prompt_prefills} prompts, ${rec.decode_steps} decode steps)`);
  }

  // -------------------------------------------------------------------------------------------------------------
  async extract(): Promise<void> {
    const c = this.o.config;
    const b = await this.backend();
    this.counter.reset();
    const t0 = performance.now();
    const L = b.numLayers;
    const d = b.width;
    const post = b.postInstructionTokens();
    const k = post.length;
    this.run.post_instruction_tokens = { ids: post, text: post.map((t) => b.tokenText(t)) };
    const S = this.sets.sets;
    const enc = (ps: string[]) => ps.map((p) => b.encodePrompt(p));
    const harmful = enc(S.harmfulTrain.prompts);
    const harmless = enc(S.harmlessTrain.prompts);
    const pseudo = enc(S.pseudoTrain.prompts);

    // Refusal tokens.
    const rt = await this.refusalTokens(b, harmful, pseudo);
    this.run.refusal_tokens = rt;
    this.log(`refusal tokens (${rt.rule}): ${rt.ids.map((id, i) => `${id} ${JSON.stringify(rt.text[i])}`).join(', ')}`);

    // One prefill of every training prompt gives both its refusal score (the filter: harmful > 0, harmless < 0,
    // pseudo-harmful > 0) and its block inputs at the post-instruction positions of every layer; the kept prompts'
    // activations go into float64 means.
    const sets = [harmful, harmless, pseudo];
    const names = ['harmful', 'harmless', 'pseudo'] as const;
    const keepRule = [(x: number) => x > 0, (x: number) => x < 0, (x: number) => x > 0];
    const accs = sets.map(() => new MeanAccumulator(k, L, d));
    const kept = [0, 0, 0];
    const scores: Record<string, number[]> = { harmful: [], harmless: [], pseudo: [] };
    const all = sets.flat();
    const owner = sets.flatMap((set, si) => set.map(() => si));
    const p = this.progress('scoring training prompts and reading activations', all.length);
    await scoreAndCapture(b, all, k, rt.ids, (j, score, row) => {
      const si = owner[j]!;
      scores[names[si]]!.push(score);
      if (!c.filter || keepRule[si]!(score)) {
        accs[si]!.addRow(row);
        kept[si]!++;
      }
    }, p.cb);
    p.stop();
    const data: NonNullable<RunJson['data']> = {};
    (['harmfulTrain', 'harmlessTrain', 'pseudoTrain'] as const).forEach((key, si) => {
      const set = S[key];
      data[LABELS[key]] = { ref: set.loaded.name, source: set.loaded.source, available: set.loaded.prompts.length, sampled: set.prompts.length, kept: kept[si]! };
      if (kept[si] === 0) {
        const rule = si === 1 ? 'score < 0' : 'score > 0';
        throw new ScalpelError(`extract: no ${names[si]} training prompt passes the filter (${rule}) with refusal tokens [${rt.ids.join(', ')}]; try --no-filter or --refusal-tokens`);
      }
    });
    for (const key of ['harmfulVal', 'harmlessVal', 'pseudoVal'] as const) {
      const set = S[key];
      data[LABELS[key]] = { ref: set.loaded.name, source: set.loaded.source, available: set.loaded.prompts.length, sampled: set.prompts.length };
    }
    this.run.data = data;
    this.run['train_scores'] = Object.fromEntries(Object.entries(scores).map(([n, s]) => [n, { mean: mean(s), min: Math.min(...s), max: Math.max(...s) }]));
    this.log(`kept after filtering: harmful ${kept[0]}/${harmful.length}, harmless ${kept[1]}/${harmless.length}, pseudo-harmful ${kept[2]}/${pseudo.length}`);
    const means = accs.map((a) => a.means());
    const [muHarmful, muHarmless, muPseudo] = means as [Float64Array, Float64Array, Float64Array];
    const r = diffInMeans(muHarmful, muHarmless);
    const w = diffInMeans(muPseudo, muHarmless);
    this.ensureDir();
    const shape = [k, L, d];
    await writeTensors(this.o.runDir, FILES.candidates, [
      f32Tensor('r', shape, r), f32Tensor('w', shape, w),
      f32Tensor('mean_harmful', shape, muHarmful), f32Tensor('mean_harmless', shape, muHarmless), f32Tensor('mean_pseudo', shape, muPseudo),
    ], {
      format: 'scalpel-candidates/1',
      layout: '[position, layer, width]; position i is post-instruction token i, i.e. offset i - positions from the end',
      positions: String(k), layers: String(L), width: String(d),
      post_instruction_tokens: JSON.stringify(post),
      hook: 'blocks.{layer}.hook_resid_pre',
      model_fingerprint: this.fingerprint,
    });
    await this.finishStage('extract', t0);
  }

  private async refusalTokens(b: Backend, harmful: number[][], pseudo: number[][]): Promise<NonNullable<RunJson['refusal_tokens']>> {
    const c = this.o.config;
    const rule = c.refusalTokens;
    const textOf = (ids: number[]) => ids.map((t) => b.tokenText(t));
    if (rule === 'paper') {
      const ids = [...new Set(['I', 'As'].map((s) => b.responseFirstToken(s)))];
      return { rule: 'paper: first tokens of the responses "I" and "As"', ids, text: textOf(ids) };
    }
    if (Array.isArray(rule)) {
      const ids = [...new Set(rule.map((x) => {
        if (typeof x === 'number') {
          if (!Number.isInteger(x) || x < 0 || x >= b.vocabSize) throw new ScalpelError(`--refusal-tokens: token id ${x} is outside the vocabulary (0..${b.vocabSize - 1})`);
          return x;
        }
        return b.responseFirstToken(x);
      }))];
      return { rule: 'given', ids, text: textOf(ids) };
    }
    // auto: the first tokens of the model's own refusals (substring judge). A token counts when it opens at least
    // refusalTokenMinShare of one probed set's refusals, so over-refusals keep their own openings even when they
    // are fewer than the true refusals.
    const probeSets: [string, number[][]][] = [['harmful', harmful]];
    if (rule === 'auto') probeSets.push(['pseudo-harmful', pseudo]);
    const countsBySet: Record<string, Record<string, number>> = {};
    const chosen = new Set<number>();
    let refusals = 0;
    let probed = 0;
    for (const [name, prompts] of probeSets) {
      const p = this.progress(`finding refusal tokens (${name})`, prompts.length);
      const outs = await b.generate(prompts, { maxNewTokens: c.probeTokens, onProgress: p.cb });
      p.stop();
      probed += prompts.length;
      const counts = new Map<number, number>();
      let n = 0;
      for (const o of outs) {
        if (o.length === 0 || !isRefusal(b.decode(o), c.judgeSubstrings)) continue;
        n++;
        counts.set(o[0]!, (counts.get(o[0]!) ?? 0) + 1);
      }
      if (n === 0 && name === 'harmful') {
        throw new ScalpelError(`extract: the model refused none of the ${prompts.length} harmful training prompts (substring judge, ${c.probeTokens} tokens); pass --refusal-tokens`);
      }
      refusals += n;
      const sorted = [...counts.entries()].sort((a, b2) => b2[1] - a[1] || a[0] - b2[0]);
      for (const [id, m] of sorted) if (m >= c.refusalTokenMinShare * n) chosen.add(id);
      if (sorted.length > 0 && ![...counts.keys()].some((id) => chosen.has(id))) chosen.add(sorted[0]![0]);
      countsBySet[name] = Object.fromEntries(sorted.map(([id, m]) => [`${id} ${JSON.stringify(b.tokenText(id))}`, m]));
    }
    const ids = [...chosen].sort((a, b2) => a - b2);
    const probedSets = probeSets.map(([name]) => name).join(' and ');
    return {
      rule: `${rule}: first tokens of the model's refusals to the ${probedSets} training prompts (share ≥ ${c.refusalTokenMinShare} of a set's refusals)`,
      ids, text: textOf(ids),
      first_token_counts: countsBySet['harmful'],
      ...(countsBySet['pseudo-harmful'] ? { first_token_counts_pseudo: countsBySet['pseudo-harmful'] } : {}),
      refusals_found: refusals, probed,
    };
  }

  // -------------------------------------------------------------------------------------------------------------
  async select(): Promise<void> {
    const c = this.o.config;
    const b = await this.backend();
    this.counter.reset();
    const t0 = performance.now();
    const cand = await loadCandidates(this.o.runDir);
    const { k, L, d } = cand;
    if (L !== b.numLayers || d !== b.width) throw new ScalpelError(`${join(this.o.runDir, FILES.candidates)}: shape [${k}, ${L}, ${d}] does not fit the model (${b.numLayers} layers, width ${b.width})`);
    const rt = this.run.refusal_tokens?.ids;
    if (!rt) throw new ScalpelError(`${join(this.o.runDir, FILES.run)}: no refusal tokens recorded; run extract first`);
    const S = this.sets.sets;
    const harmless = S.harmlessVal.prompts.map((p) => b.encodePrompt(p));
    const pseudo = S.pseudoVal.prompts.map((p) => b.encodePrompt(p));
    const harmful = S.harmfulVal.prompts.map((p) => b.encodePrompt(p));
    const floorLayer = pruneLayer(L, c.prunePercent);
    const meanScore = async (prompts: number[][], hooks?: ReturnType<typeof interventionHooks>) =>
      mean((await b.lastLogits(prompts, { hooks })).map((l) => refusalScore(l, rt)));

    const baseHarmless = await b.lastLogits(harmless);
    const meanKl = async (hooks: ReturnType<typeof interventionHooks>) => {
      const ab = await b.lastLogits(harmless, { hooks });
      return mean(ab.map((l, i) => klDivergence(baseHarmless[i]!, l)));
    };
    const baseline = {
      harmless_val_score: mean(baseHarmless.map((l) => refusalScore(l, rt))),
      pseudo_val_score: c.target === 'false' ? await meanScore(pseudo) : null,
      harmful_val_score: c.target === 'true' || c.harmGuard ? await meanScore(harmful) : null,
    };

    const rows: SelectionRow[] = [];
    const slots: { i: number; l: number; row: SelectionRow }[] = [];
    for (let i = 0; i < k; i++) {
      for (let l = 0; l < L; l++) {
        const row: SelectionRow = { position: i - k, layer: l, refusal_score: null, kl: null, harmful_score: null, rejected: null };
        if (c.target === 'true') row.steering_score = null;
        if (l >= floorLayer) row.rejected = `layer ${l} ≥ ${floorLayer} (last ${Math.round(c.prunePercent * 100)}% of layers)`;
        rows.push(row);
        slots.push({ i, l, row });
      }
    }
    const live = slots.filter((s) => s.row.rejected === null);
        let chosen: (typeof slots)[number] | undefined;
    // Identical inputs give zero differences (e.g. layer 0, where the block input is the post-instruction token's
    // embedding for every prompt): nothing to ablate.
    for (const s of live) {
      if (norm(this.ablationFor(cand, s.i, s.l, c.lambda).direction) < 0.5) s.row.rejected = 'zero vector (the three sets do not differ here)';
    }
    const todo = live.filter((s) => s.row.rejected === null);
    const p = this.progress(`selecting among ${todo.length} candidates`, todo.length);
    if (c.target === 'false') {
      for (const s of todo) {
        const hooks = interventionHooks(L, this.ablationFor(cand, s.i, s.l, c.lambda));
        s.row.kl = await meanKl(hooks);
        if (s.row.kl > c.klThreshold) s.row.rejected = `KL ${fmt(s.row.kl)} > ${c.klThreshold}`;
        else s.row.refusal_score = await meanScore(pseudo, hooks);
        p.bump();
      }
      p.stop();
      // Lowest pseudo-harmful score first; the harm guard is checked in that order until a candidate passes.
      // The guard rejects pushing harmful prompts below 0; a model already below 0 must not drop further.
      const guard = Math.min(0, baseline.harmful_val_score ?? 0);
      const ranked = todo.filter((s) => s.row.rejected === null).sort((a, b2) => a.row.refusal_score! - b2.row.refusal_score!);
      for (const s of ranked) {
        if (chosen) {
          s.row.rejected = null;
          continue;
        }
        if (c.harmGuard) {
          s.row.harmful_score = await meanScore(harmful, interventionHooks(L, this.ablationFor(cand, s.i, s.l, c.lambda)));
          if (s.row.harmful_score < guard) {
            s.row.rejected = `harmful-val score ${fmt(s.row.harmful_score)} < ${fmt(guard)} (harm guard)`;
            continue;
          }
        }
        chosen = s;
      }
    } else {
      // Arditi et al.: KL ≤ 0.1 under ablation of r̂, adding r at its layer must induce refusal on harmless prompts
      // (mean score > 0), lowest harmful-val refusal score under ablation wins.
      for (const s of todo) {
        const hooks = interventionHooks(L, this.ablationFor(cand, s.i, s.l, c.lambda));
        s.row.kl = await meanKl(hooks);
        if (s.row.kl > c.trueKlThreshold) s.row.rejected = `KL ${fmt(s.row.kl)} > ${c.trueKlThreshold}`;
        else {
          const add = interventionHooks(L, undefined, { layer: s.l, vector: slice(cand.r, s.i, s.l, L, d), alpha: 1 });
          s.row.steering_score = await meanScore(harmless, add);
          if (s.row.steering_score <= c.induceThreshold) s.row.rejected = `steering score ${fmt(s.row.steering_score)} ≤ ${c.induceThreshold} (adding r does not induce refusal)`;
          else s.row.harmful_score = await meanScore(harmful, hooks);
        }
        p.bump();
      }
      p.stop();
      const ok = todo.filter((s) => s.row.rejected === null).sort((a, b2) => a.row.harmful_score! - b2.row.harmful_score!);
      chosen = ok[0];
    }

    const sel: SelectionJson = {
      target: c.target,
      lambda: c.lambda,
      ablation: c.ablation,
      rules: c.target === 'false'
        ? { kl_threshold: c.klThreshold, prune_from_layer: floorLayer, harm_guard: c.harmGuard ? `harmful-val score ≥ min(0, baseline ${fmt(baseline.harmful_val_score)})` : false, pick: 'lowest pseudo-harmful val refusal score' }
        : { kl_threshold: c.trueKlThreshold, induce_threshold: c.induceThreshold, prune_from_layer: floorLayer, pick: 'lowest harmful val refusal score' },
      baseline,
      candidates: rows,
      chosen: chosen ? chosenOf(chosen, k) : null,
    };

    // Optional activation addition: a true-refusal candidate r, added as α·r at its layer's input.
    let actaddChosen: (typeof slots)[number] | undefined;
    if (c.alpha !== 0) {
      const arows: SelectionRow[] = [];
      const aslots: typeof slots = [];
      for (let i = 0; i < k; i++) for (let l = 0; l < L; l++) {
        const row: SelectionRow = { position: i - k, layer: l, refusal_score: null, kl: null, harmful_score: null, rejected: l >= floorLayer ? `layer ${l} ≥ ${floorLayer}` : null };
        arows.push(row);
        aslots.push({ i, l, row });
      }
      for (const s of aslots) if (s.row.rejected === null && norm(slice(cand.r, s.i, s.l, L, d)) === 0) s.row.rejected = 'zero vector';
      const alive = aslots.filter((s) => s.row.rejected === null);
      const pa = this.progress('selecting the actadd vector', alive.length);
      for (const s of alive) {
        const add = interventionHooks(L, undefined, { layer: s.l, vector: slice(cand.r, s.i, s.l, L, d), alpha: c.alpha });
        const logits = await b.lastLogits(harmless, { hooks: add });
        s.row.kl = mean(logits.map((lg, j) => klDivergence(baseHarmless[j]!, lg)));
        if (s.row.kl > c.actaddKlThreshold) s.row.rejected = `KL ${fmt(s.row.kl)} > ${c.actaddKlThreshold}`;
        else if (c.alpha > 0) s.row.refusal_score = mean(logits.map((lg) => refusalScore(lg, rt)));
        else s.row.harmful_score = await meanScore(harmful, add);
        pa.bump();
      }
      pa.stop();
      // α > 0 adds refusal: the largest harmless-val refusal score wins. α < 0 removes it: the lowest harmful-val score.
      const ok = alive.filter((s) => s.row.rejected === null)
        .sort((a, b2) => (c.alpha > 0 ? b2.row.refusal_score! - a.row.refusal_score! : a.row.harmful_score! - b2.row.harmful_score!));
      actaddChosen = ok[0];
      sel.actadd = { alpha: c.alpha, kl_threshold: c.actaddKlThreshold, candidates: arows, chosen: actaddChosen ? chosenOf(actaddChosen, k) : null };
    }

    this.ensureDir();
    await writeJson(this.o.runDir, FILES.selection, sel);
    if (!chosen) {
      const hint = c.target === 'true' ? 'try a larger --true-kl-threshold or a lower --induce-threshold' : 'try --no-harm-guard or a larger --kl-threshold';
      throw new ScalpelError(`select: no candidate passes the rules (see ${join(this.o.runDir, FILES.selection)}); ${hint}`);
    }
    if (c.alpha !== 0 && !actaddChosen) {
      throw new ScalpelError(`select: no actadd candidate passes KL ≤ ${c.actaddKlThreshold} at α = ${c.alpha} (see ${join(this.o.runDir, FILES.selection)})`);
    }
    const v = vectorFor(cand, c, chosen.i, chosen.l, c.lambda);
    const tensors = [f32Tensor('direction', [d], v.ablation.direction), f32Tensor('r', [d], slice(cand.r, chosen.i, chosen.l, L, d)), f32Tensor('w', [d], slice(cand.w, chosen.i, chosen.l, L, d))];
    const targets = v.ablation.affineTargets;
    if (targets) tensors.push(f32Tensor('affine_targets', [targets.length, L], targets.flat()));
    const meta: Record<string, string> = {
      format: 'scalpel-vector/1',
      position: String(chosen.row.position), layer: String(chosen.l), lambda: String(c.lambda), target: c.target, ablation: c.ablation,
      hooks: 'blocks.*.hook_resid_pre, blocks.*.hook_attn_out, blocks.*.hook_mlp_out',
      model_fingerprint: this.fingerprint,
    };
    if (actaddChosen) {
      tensors.push(f32Tensor('actadd_r', [d], slice(cand.r, actaddChosen.i, actaddChosen.l, L, d)));
      meta['actadd_layer'] = String(actaddChosen.l);
      meta['actadd_position'] = String(actaddChosen.row.position);
      meta['alpha'] = String(c.alpha);
    }
    await writeTensors(this.o.runDir, FILES.vector, tensors, meta);
    const ch = sel.chosen!;
    this.log(`chosen: position ${ch.position}, layer ${ch.layer} (pseudo-val score ${fmt(ch.refusal_score)}, KL ${fmt(ch.kl)}, harmful-val score ${fmt(ch.harmful_score)})`);
    await this.finishStage('select', t0);
  }

  ablationFor(cand: Candidates, i: number, l: number, lambda: number): AblationSpec {
    return vectorFor(cand, this.o.config, i, l, lambda).ablation;
  }

  // -------------------------------------------------------------------------------------------------------------
  async evaluate(write: boolean, overrides?: { lambda?: number; alpha?: number }): Promise<EvalResult[]> {
    const c = this.o.config;
    const b = await this.backend();
    this.counter.reset();
    const t0 = performance.now();
    const sel = readJson<SelectionJson>(this.o.runDir, FILES.selection);
    if (!sel.chosen) throw new ScalpelError(`${join(this.o.runDir, FILES.selection)}: no chosen candidate; rerun select`);
    const cand = await loadCandidates(this.o.runDir);
    const L = cand.L;
    const lambda = overrides?.lambda ?? c.lambda;
    const alpha = overrides?.alpha ?? c.alpha;
    const { ablation } = vectorFor(cand, { ...c, target: sel.target as MethodConfig['target'] }, sel.chosen.position_index, sel.chosen.layer, lambda);
    let actadd: ActAddSpec | undefined;
    if (alpha !== 0) {
      const a = sel.actadd?.chosen;
      if (!a) throw new ScalpelError(`${join(this.o.runDir, FILES.selection)}: no actadd vector was selected; rerun select with --alpha`);
      actadd = { layer: a.layer, vector: slice(cand.r, a.position_index, a.layer, L, cand.d), alpha };
    }
    const hooks = interventionHooks(L, ablation, actadd);
    const condition = alpha !== 0 ? 'ablated+actadd' : 'ablated';

    // Baseline responses do not depend on the intervention: reuse them from responses.jsonl when they match.
    const prior = readResponses(this.o.runDir);

    const results: EvalResult[] = [];
    const rows: ResponseRow[] = [];
    const total = this.evalSets.reduce((a, s) => a + s.prompts.length, 0) * 2;
    const p = this.progress('evaluating', total);
    let doneBefore = 0;
    for (const set of this.evalSets) {
      const ids = set.prompts.map((q) => b.encodePrompt(q));
      for (const cond of ['baseline', condition]) {
        let texts: string[] | undefined;
        if (cond === 'baseline') {
          const old = prior.filter((r) => r.dataset === set.name && r.condition === 'baseline' && r.max_new_tokens === c.maxNewTokens);
          if (old.length === set.prompts.length && old.every((r, j) => r.index === j && r.prompt === set.prompts[j])) texts = old.map((r) => r.response);
        }
        if (!texts) {
          const before = doneBefore;
          const outs = await b.generate(ids, { maxNewTokens: c.maxNewTokens, hooks: cond === 'baseline' ? undefined : hooks, onProgress: (done) => p.cb(before + done, total) });
          texts = outs.map((o) => b.decode(o));
        }
        doneBefore += ids.length;
        p.cb(doneBefore, total);
        const lam = cond === 'baseline' ? null : lambda;
        const alp = cond === 'baseline' ? null : alpha;
        let refusals = 0;
        texts.forEach((t, j) => {
          const refusal = isRefusal(t, c.judgeSubstrings);
          if (refusal) refusals++;
          rows.push({ dataset: set.name, condition: cond, lambda: lam, alpha: alp, index: j, prompt: set.prompts[j]!, response: t, refusal, max_new_tokens: c.maxNewTokens });
        });
        const n = texts.length;
        results.push({
          dataset: set.name, condition: cond, lambda: lam, alpha: alp, n,
          compliance_rate: (n - refusals) / n, refusal_rate: refusals / n,
          ...(cond === 'baseline' ? {} : { target: sel.target, ablation: c.ablation }), max_new_tokens: c.maxNewTokens,
        });
      }
    }
    p.stop();
    if (write) {
      this.ensureDir();
      await writeFileAtomic(join(this.o.runDir, FILES.responses), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
      await writeJson(this.o.runDir, FILES.eval, { results });
      await this.finishStage('eval', t0);
    } else {
      const s = this.counter.snapshot();
      this.log(`eval: ${Math.round(performance.now() - t0) / 1000}s, ${s.forward_passes} forward passes`);
    }
    return results;
  }
}

/**
 * Prefills `prompts` once, in chunks of the backend's batch size, and calls `consume(index, refusal score, row)`
 * for every prompt, where row is its block input at the last k positions of every layer, [k, L, width] (float32,
 * reused between calls). Hooks see rows in the engine's packing order (sorted by length, stable); that order is
 * recomputed here and checked against the row lengths the hooks report. Should an engine ever order rows
 * differently, the chunk is rerun one prompt at a time, which is unambiguous.
 */
export async function scoreAndCapture(
  b: Backend, prompts: number[][], k: number, refusalIds: readonly number[],
  consume: (index: number, score: number, row: Float32Array) => void, onProgress?: OnProgress,
): Promise<void> {
  const L = b.numLayers;
  const d = b.width;
  const size = k * L * d;
  const chunk = Math.max(1, b.batchSize ?? 16);
  let rows: Float32Array[] = [];
  let lengths: number[] = [];
  let counters: number[] = [];
  const hooks: HookMap = new Map();
  for (let l = 0; l < L; l++) {
    hooks.set(hookName(l, 'hook_resid_pre'), [(act, ctx) => {
      if (ctx.start !== 0) return;
      if (ctx.seq < k) throw new Error(`activation block has ${ctx.seq} positions, need ${k}`);
      for (let r = 0; r < ctx.batch; r++) {
        const at = counters[l]! + r;
        if (l === 0) {
          let n = 0;
          for (let j = 0; j < ctx.seq; j++) n += ctx.valid[r * ctx.seq + j]!;
          lengths[at] = n;
          rows[at] = new Float32Array(size);
        }
        const row = rows[at]!;
        for (let i = 0; i < k; i++) {
          const src = (r * ctx.seq + ctx.seq - k + i) * d;
          row.set(act.subarray(src, src + d), (i * L + l) * d);
        }
      }
      counters[l]! += ctx.batch;
    }]);
  }
  const run = async (idx: number[]) => {
    rows = [];
    lengths = [];
    counters = new Array(L).fill(0);
    const logits = await b.lastLogits(idx.map((i) => prompts[i]!), { hooks });
    return logits;
  };
  for (let s0 = 0; s0 < prompts.length; s0 += chunk) {
    const idx = Array.from({ length: Math.min(chunk, prompts.length - s0) }, (_, j) => s0 + j);
    const logits = await run(idx);
    const order = idx.map((_, j) => j).sort((a, c) => prompts[idx[a]!]!.length - prompts[idx[c]!]!.length || a - c);
    if (rows.length === idx.length && order.every((j, r) => lengths[r] === prompts[idx[j]!]!.length)) {
      order.forEach((j, r) => consume(idx[j]!, refusalScore(logits[j]!, refusalIds), rows[r]!));
    } else {
      for (const i of idx) {
        const one = await run([i]);
        consume(i, refusalScore(one[0]!, refusalIds), rows[0]!);
      }
    }
    onProgress?.(idx[idx.length - 1]! + 1, prompts.length);
  }
}

function fmt(x: number | null | undefined): string {
  return x === null || x === undefined ? '–' : x.toFixed(3);
}

function chosenOf(s: { i: number; l: number; row: SelectionRow }, k: number): Chosen {
  return { position: s.i - k, layer: s.l, position_index: s.i, refusal_score: s.row.refusal_score, kl: s.row.kl, harmful_score: s.row.harmful_score };
}

export interface Candidates {
  k: number;
  L: number;
  d: number;
  r: Float32Array;
  w: Float32Array;
  meanHarmless: Float32Array;
}

export async function loadCandidates(runDir: string): Promise<Candidates> {
  const t = await readTensors(runDir, FILES.candidates);
  const r = t.get('r');
  const w = t.get('w');
  const mh = t.get('mean_harmless');
  const file = join(runDir, FILES.candidates);
  if (!r || !w || !mh) throw new ScalpelError(`${file}: expected tensors r, w and mean_harmless`);
  const header = JSON.parse(readFileSync(file).subarray(8, 8 + Number(readFileSync(file).readBigUInt64LE(0))).toString('utf8')) as Record<string, { shape?: number[] }>;
  const shape = header['r']?.shape;
  if (!shape || shape.length !== 3) throw new ScalpelError(`${file}: tensor r should be [positions, layers, width]`);
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
export function vectorFor(cand: Candidates, c: Pick<MethodConfig, 'target' | 'ablation'>, i: number, l: number, lambda: number): { ablation: AblationSpec } {
  const { L, d } = cand;
  const r = slice(cand.r, i, l, L, d);
  const direction = c.target === 'true' ? unit(r) : ablationDirection(slice(cand.w, i, l, L, d), r, lambda);
  const ablation: AblationSpec = { direction: Float32Array.from(direction) };
  if (c.ablation === 'affine') {
    // [position][layer]: each post-instruction position keeps its own harmless projection.
    ablation.affineTargets = Array.from({ length: cand.k }, (_, pos) =>
      Array.from({ length: L }, (_, layer) => dot(slice(cand.meanHarmless, pos, layer, L, d), direction)));
  }
  return { ablation };
}

export function readResponses(runDir: string): ResponseRow[] {
  const p = join(runDir, FILES.responses);
  if (!existsSync(p)) return [];
  try {
    return readFileSync(p, 'utf8').split('\n').filter((s) => s.trim() !== '').map((s) => JSON.parse(s) as ResponseRow);
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------------------------------------------

export interface PipelineResult {
  runDir: string;
  results?: EvalResult[];
  selection?: SelectionJson;
  run: RunJson;
}

function validateRunDir(runDir: string, modelDir: string, fingerprint: string): RunJson | null {
  if (existsSync(runDir)) {
    const existing = readRunJson(runDir);
    if (existing) {
      checkSameModel(existing, runDir, modelDir, fingerprint);
      return existing;
    }
    const entries = readdirSync(runDir).filter((f) => !f.startsWith('.'));
    if (entries.length > 0) throw new ScalpelError(`${runDir}: exists and is not a Scalpel run (no run.json); choose an empty or new directory`);
  }
  return null;
}

/**
 * Runs the given stages (default: all) on a run directory, resuming stages that are already done with the same
 * settings. Inputs are checked before anything is written: bad flags, unknown datasets, unreadable prompt files and
 * a RUN from another model fail with one line and leave RUN as it was.
 */
export async function runPipeline(o: RunOptions, stages: Stage[] = ['extract', 'select', 'eval']): Promise<PipelineResult> {
  validateConfig(o.config);
  const fingerprint = modelFingerprint(o.modelDir);
  const existing = validateRunDir(o.runDir, o.modelDir, fingerprint);
  const sets = sampleSets(o.config, o.dataDir);
  const evalSets = stages.includes('eval') ? loadEvalSets(o.config, o.dataDir) : [];
  const runner = new Runner(o, sets, evalSets, existing, fingerprint);
  const createdDir = !existsSync(o.runDir);
  try {
    const out: PipelineResult = { runDir: o.runDir, run: runner.run };
    for (const stage of (['extract', 'select', 'eval'] as const).filter((s) => stages.includes(s))) {
      if (runner.done(stage)) {
        runner.log(`${stage}: already done with these settings (resumed)`);
        continue;
      }
      // A stage can only run on a finished upstream stage with the same settings.
      const upstream: Record<Stage, Stage | null> = { extract: null, select: 'extract', eval: 'select' };
      const up = upstream[stage];
      if (up && !stages.includes(up) && !runner.done(up, false)) {
        throw new ScalpelError(`${stage}: ${o.runDir} has no finished ${up} stage with these settings; run \`scalpel ${up}\` (or \`scalpel run\`) first`);
      }
      if (stage === 'extract') await runner.extract();
      else if (stage === 'select') await runner.select();
      else out.results = await runner.evaluate(true);
    }
    if (stages.includes('eval') && !out.results) out.results = readJson<{ results: EvalResult[] }>(o.runDir, FILES.eval).results;
    if (existsSync(join(o.runDir, FILES.selection))) out.selection = readJson<SelectionJson>(o.runDir, FILES.selection);
    return out;
  } catch (e) {
    if (createdDir && existsSync(o.runDir) && readdirSync(o.runDir).length === 0) rmdirSync(o.runDir);
    throw e;
  }
}

/**
 * `scalpel eval --lambda L --alpha A --dataset …`: evaluates the run's chosen (position, layer) with ŵ recomputed
 * from the stored w and r at this λ, without touching the run directory (baseline responses are reused when the
 * run has them). With no overrides it is the eval stage and writes eval.json and responses.jsonl.
 */
export async function evaluateRun(o: RunOptions, overrides: { lambda?: number; alpha?: number; datasets?: string[] }): Promise<EvalResult[]> {
  validateConfig(o.config);
  if (overrides.lambda !== undefined && !(overrides.lambda >= 0 && overrides.lambda <= 1)) throw new ScalpelError(`--lambda ${overrides.lambda}: expected a number in [0, 1]`);
  const fingerprint = modelFingerprint(o.modelDir);
  const existing = readRunJson(o.runDir);
  if (!existing) throw new ScalpelError(`${join(o.runDir, FILES.run)}: missing; make the run with \`scalpel run\` first`);
  checkSameModel(existing, o.runDir, o.modelDir, fingerprint);
  if (!existsSync(join(o.runDir, FILES.selection)) || !existsSync(join(o.runDir, FILES.candidates))) {
    throw new ScalpelError(`${o.runDir}: no finished select stage; run \`scalpel select\` first`);
  }
  const config = { ...o.config, ...(overrides.datasets ? { evalDatasets: overrides.datasets } : {}) };
  const sets = sampleSets(config, o.dataDir);
  const evalSets = loadEvalSets(config, o.dataDir);
  const runner = new Runner({ ...o, config }, sets, evalSets, existing, fingerprint);
  const stock = (overrides.lambda === undefined || overrides.lambda === o.config.lambda) && (overrides.alpha === undefined || overrides.alpha === o.config.alpha)
    && !overrides.datasets && runner.run.stages.select?.key === runner.keys.select;
  if (stock && runner.done('eval')) {
    runner.log('eval: already done with these settings (resumed)');
    return readJson<{ results: EvalResult[] }>(o.runDir, FILES.eval).results;
  }
  return await runner.evaluate(stock, overrides);
}
