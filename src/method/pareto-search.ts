// `scalpel select --objective pareto`: a harm-aware selection. It searches (position, layer, λ, ablation mode,
// strength) for edits on the Pareto front of (pseudo-harmful validation refusal score ↓, harmful validation refusal
// kept ↑, harmless KL ↓) and picks one (pareto.ts has the front and the rule), by successive halving instead of
// scoring every edit on every prompt:
//   1. sites: every (position, layer) the paper's rules leave (pruned layers and zero vectors out) at the paper's
//      edit (λ 1, zero ablation, strength 1), scored on the first n prompts of each validation set, n = 8, 16, …,
//      n-val; after each rung the best third goes on, until SITES_KEPT sites are left at the full n. Ranked as the
//      pick rule would: KL within the limit, then harmful refusal within the tolerance, then Pareto rank, then score.
//   2. settings: those sites × the λ × mode × strength grid, halved the same way from n = 8.
// A point scored at n keeps its per-prompt numbers, so growing it to 2n costs only the n new prompts. The front is
// taken over every point scored at the full n. Harmful refusal kept is the share of harmful-pool prompts whose
// refusal score stays above 0 (p(refusal tokens) > ½ at the first response token): it costs no generation (the
// same prefill as the score), and as a share it reads in points, which is the unit of the pick rule.
// Forward passes (prompt prefills, run.json's unit) are counted here and compared with scoring the whole space.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ScalpelError } from '../errors.js';
import { sample } from '../rng.js';
import { candidateGrid, loadCandidates, type Candidates } from './candidates.js';
import { pruneLayer } from './config.js';
import { rungSizes } from './select-halving.js';
import { loadPromptSet, type SampledSets } from './datasets.js';
import { candidateAblation, interventionHooks, type AblationMode } from './intervention.js';
import { klDivergence, mean, norm, refusalScore } from './math.js';
import { checkCost, checkPick, type GenerationCost, type PickCheck } from './pareto-check.js';
import { paretoFront, paretoRanks, type Edit, type Objectives } from './pareto.js';
import { FILES, readJson, writeJson, type SelectionJson, type SelectionRow } from './rundir.js';
import type { StageContext } from './stage.js';

/** The settings grid of stage 2 (stage 1 uses the paper's edit, λ 1, zero, strength 1, which the grid includes). */
export const PARETO_GRID = {
  lambda: [0, 0.5, 1],
  ablation: ['zero', 'affine'] as AblationMode[],
  strength: [0.25, 0.5, 0.75, 1],
};
const ETA = 3;
const SITES_KEPT = 3;
const SETTINGS_KEPT = 6;
const FIRST_N = 8;
/** Harmful-pool prompts per pseudo-harmful validation prompt: the pick's 2-point rule needs a finer share. */
const HARMFUL_PER_VAL = 4;
const TOLERANCE = 2;
export const PARETO_FORMAT = 'scalpel-pareto/1';

export type { Edit } from './pareto.js';

/** A scored edit as pareto.json lists it. */
export interface ParetoPoint extends Edit, Objectives {
  /** Position counted from the end of the post-instruction tokens (−1 = last). */
  position: number;
  harmful_score: number;
  /** Prompts it was scored on: pseudo-harmful, harmful pool, harmless. */
  n: [number, number, number];
  /** Front points the pick checked by generation: % of the harmful-pool prompts refused in greedy answers (judged). */
  harmful_refusal_generated?: number;
}

export interface ParetoJson {
  format: typeof PARETO_FORMAT;
  search_key: string;
  objectives: Record<keyof Objectives, string>;
  harmful_pool: { name: string; size: number; n: number };
  grid: typeof PARETO_GRID;
  baseline: Objectives & { harmful_score: number };
  /** Every edit scored at the full n (the front's candidates). */
  points: ParetoPoint[];
  front: ParetoPoint[];
  pick: { index: number; rule: string; met: boolean; chosen_by: 'rule' | '--pick' };
  /** The rule's candidates checked by generation (pareto-check.ts); absent when --pick chose. */
  pick_check?: PickCheck;
  forward_passes: {
    search: number;
    exhaustive: number;
    share: number;
    rungs: { stage: string; n: number; edits: number }[];
    /** What the pick's generation check cost (baseline and points checked; stored checks included). */
    pick?: GenerationCost & { points_checked: number };
  };
  seconds: number;
}

interface State {
  edit: Edit;
  pseudo: number[];
  harmful: number[];
  kl: number[];
}

const isObjectives = (p: unknown): p is Objectives => {
  const o = p as Partial<Objectives> | null;
  return (
    typeof o === 'object' &&
    o !== null &&
    [o.pseudo_score, o.harmful_refusal, o.kl].every((x) => typeof x === 'number' && Number.isFinite(x))
  );
};

/** A point of a stored pareto.json that can be picked (a damaged file is searched again, not trusted). */
export function isPoint(p: unknown): p is ParetoPoint {
  const o = p as Partial<ParetoPoint>;
  return (
    isObjectives(p) &&
    Number.isSafeInteger(o.position_index) &&
    Number.isSafeInteger(o.layer) &&
    typeof o.lambda === 'number' &&
    (o.ablation === 'zero' || o.ablation === 'affine') &&
    typeof o.strength === 'number' &&
    typeof o.harmful_score === 'number' &&
    typeof o.position === 'number'
  );
}

const keyOf = (e: Edit) => `${e.position_index}/${e.layer}/${e.lambda}/${e.ablation}/${e.strength}`;

function objectives(s: State): Objectives & { harmful_score: number } {
  return {
    pseudo_score: mean(s.pseudo),
    harmful_refusal: (100 * s.harmful.filter((x) => x > 0).length) / s.harmful.length,
    kl: mean(s.kl),
    harmful_score: mean(s.harmful),
  };
}

/**
 * The pareto select stage: search (or reuse pareto.json when its search key matches), pick, and write pareto.json,
 * selection.json and vector.safetensors. The pick's λ, mode and strength become the run's configuration, so eval,
 * bake, serve and chat apply it unchanged.
 */
export async function paretoSelect(
  ctx: StageContext,
  sampled: SampledSets,
  writeVector: (cand: Candidates, site: { i: number; l: number; position: number }) => Promise<void>,
): Promise<void> {
  const c = ctx.config;
  if (c.target !== 'false')
    throw new ScalpelError('--objective pareto: selects the false-refusal vector; use it with --target false');
  if (c.alpha !== 0) throw new ScalpelError('--objective pareto: searches ablations only; use it with --alpha 0');
  const b = ctx.backend;
  const cand = await loadCandidates(ctx.runDir);
  const { L, d } = cand;
  if (L !== b.numLayers || d !== b.width)
    throw new ScalpelError(`${join(ctx.runDir, FILES.candidates)}: shape does not fit the model`);
  const rt = ctx.run.refusal_tokens?.ids;
  if (!rt) throw new ScalpelError(`${join(ctx.runDir, FILES.run)}: no refusal tokens recorded; run extract first`);

  const pool = loadPromptSet(c.harmfulPool, ctx.run.config['dataDir'] as string | undefined, c.column);
  const trained = new Set(sampled.sets.harmfulTrain.prompts);
  const poolPrompts = pool.prompts.filter((p) => !trained.has(p));
  const nHarm = Math.min(poolPrompts.length, HARMFUL_PER_VAL * c.nVal);
  const harmfulText = sample(poolPrompts, nHarm, c.seed);
  const searchKey = JSON.stringify({
    extract: ctx.run.stages.extract?.key ?? null,
    sets: [c.pseudoVal, c.harmlessVal, c.harmfulPool],
    nVal: c.nVal,
    seed: c.seed,
    klThreshold: c.klThreshold,
    prunePercent: c.prunePercent,
    grid: PARETO_GRID,
    refusalTokens: rt,
  });

  const previous = existsSync(join(ctx.runDir, FILES.pareto)) ? readJson<ParetoJson>(ctx.runDir, FILES.pareto) : null;
  let found: Omit<ParetoJson, 'front' | 'pick' | 'pick_check'>;
  let rows: SelectionRow[] | null = null;
  if (
    previous?.format === PARETO_FORMAT &&
    previous.search_key === searchKey &&
    Array.isArray(previous.points) &&
    previous.points.length > 0 &&
    previous.points.every(isPoint) &&
    isObjectives(previous.baseline)
  ) {
    ctx.log(`pareto: reusing the search in ${FILES.pareto} (${previous.points.length} points)`);
    // The search alone: the stored pick, its check and the check's marks on points are decided again below.
    const { front: _f, pick: _p, pick_check: _c, ...rest } = previous;
    const { pick: _fp, ...searchPasses } = previous.forward_passes;
    found = {
      ...rest,
      forward_passes: searchPasses,
      points: previous.points.map(({ harmful_refusal_generated: _g, ...p }) => p),
    };
  } else {
    const r = await search(ctx, sampled, cand, rt, harmfulText, searchKey);
    found = { ...r.found, harmful_pool: { name: c.harmfulPool, size: poolPrompts.length, n: nHarm } };
    rows = r.rows;
  }

  const front = paretoFront(found.points);
  // The rule as pareto.json and selection.json state it; the baseline's generated rate is in pick_check.
  const rule = `largest pseudo-harmful gain (score below baseline ${found.baseline.pseudo_score.toFixed(3)}) with KL ≤ ${c.klThreshold} whose harmful-pool refusal in greedy ${c.maxNewTokens}-token answers (substring judge) stays within ${TOLERANCE} points of the model's own`;
  const pickRule = {
    baselinePseudo: found.baseline.pseudo_score,
    baselineHarmful: found.baseline.harmful_refusal,
    tolerance: TOLERANCE,
    klMax: c.klThreshold,
  };
  let pick: ParetoJson['pick'];
  let pickCheck: PickCheck | undefined;
  if (c.pick !== undefined) {
    if (c.pick >= front.length)
      throw new ScalpelError(
        `--pick ${c.pick}: the front has ${front.length} points (0 to ${front.length - 1}); see ${join(ctx.runDir, FILES.pareto)}`,
      );
    // A user's explicit choice is not second-guessed: no generation check.
    pick = { index: c.pick, rule, met: false, chosen_by: '--pick' };
  } else {
    // The front's gaining points, largest gain first; greedy, judged answers on the search's pool prompts decide.
    const checkKey = JSON.stringify({ search: searchKey, maxNewTokens: c.maxNewTokens, judge: c.judgeSubstrings });
    const r = await checkPick(
      ctx,
      front,
      pickRule,
      harmfulText.map((p) => b.encodePrompt(p)),
      checkKey,
      previous?.pick_check,
      (e) =>
        interventionHooks(
          candidateAblation(
            cand,
            { positionIndex: e.position_index, layer: e.layer },
            { target: 'false', ablation: e.ablation, lambda: e.lambda, strength: e.strength },
          ),
          L,
        ),
      // Until the walk ends, pareto.json holds the search and the checks so far with no pick, so a killed select
      // resumes from them.
      (check) =>
        writeJson(ctx.runDir, FILES.pareto, {
          ...found,
          front,
          pick: { index: -1, rule: 'not decided: the generation check was under way', met: false, chosen_by: 'rule' },
          pick_check: check,
        } satisfies ParetoJson),
    );
    pickCheck = r.check;
    pick = { index: r.pick.index, rule, met: r.pick.met, chosen_by: 'rule' };
    if (!r.pick.met)
      ctx.log(
        `pareto: no point meets the rule (${rule}); picked ${r.check.checked.length > 0 ? 'the checked point keeping the most generated harmful refusal' : 'the point with the lowest KL (none gains within the KL limit)'}`,
      );
    for (const p of r.check.checked) {
      const onFront = front.find((q) => keyOf(q) === keyOf(p));
      if (onFront) onFront.harmful_refusal_generated = p.harmful_refusal_generated;
    }
  }
  const pareto: ParetoJson = {
    ...found,
    front,
    pick,
    ...(pickCheck ? { pick_check: pickCheck } : {}),
    forward_passes: { ...found.forward_passes, ...(pickCheck ? { pick: checkCost(pickCheck) } : {}) },
  };
  await writeJson(ctx.runDir, FILES.pareto, pareto);

  const chosen = front[pick.index]!;
  // The pick's dials become the run's: eval, bake, serve and chat read them from run.json's config.
  for (const o of [c, ctx.run.config] as Record<string, unknown>[]) {
    o['lambda'] = chosen.lambda;
    o['ablation'] = chosen.ablation;
    o['strength'] = chosen.strength;
  }
  const oldRows = existsSync(join(ctx.runDir, FILES.selection))
    ? readJson<SelectionJson>(ctx.runDir, FILES.selection)
    : null;
  const sel: SelectionJson = {
    target: 'false',
    lambda: chosen.lambda,
    ablation: chosen.ablation,
    strength: chosen.strength,
    rules: {
      objective: 'pareto',
      pick: pick.chosen_by === 'rule' ? rule : `--pick ${pick.index}`,
      rule_met: pick.met,
      ...(pickCheck
        ? {
            harmful_refusal_generated: {
              baseline: pickCheck.baseline?.harmful_refusal_generated ?? null,
              chosen: front[pick.index]!.harmful_refusal_generated ?? null,
              n: pickCheck.n,
              max_new_tokens: pickCheck.max_new_tokens,
            },
          }
        : {}),
      front: `${front.length} points in ${FILES.pareto}`,
      prune_from_layer: pruneLayer(L, c.prunePercent),
    },
    baseline: {
      pseudo_val_score: found.baseline.pseudo_score,
      harmful_val_score: found.baseline.harmful_score,
      harmless_val_score: null,
    },
    candidates: rows ?? (oldRows?.rules?.['objective'] === 'pareto' ? oldRows.candidates : []),
    chosen: {
      position: chosen.position,
      layer: chosen.layer,
      position_index: chosen.position_index,
      refusal_score: chosen.pseudo_score,
      kl: chosen.kl,
      harmful_score: chosen.harmful_score,
    },
  };
  await writeJson(ctx.runDir, FILES.selection, sel);
  await writeVector(cand, { i: chosen.position_index, l: chosen.layer, position: chosen.position });
  const fp = pareto.forward_passes;
  const generated =
    chosen.harmful_refusal_generated !== undefined && pickCheck?.baseline
      ? `, generated ${chosen.harmful_refusal_generated.toFixed(1)}% vs ${pickCheck.baseline.harmful_refusal_generated.toFixed(1)}%`
      : '';
  ctx.log(
    `pareto: ${front.length} points on the front; picked position ${chosen.position}, layer ${chosen.layer}, λ ${chosen.lambda}, ${chosen.ablation}, strength ${chosen.strength} (pseudo-val score ${chosen.pseudo_score.toFixed(3)}, harmful kept ${chosen.harmful_refusal.toFixed(1)}% vs ${found.baseline.harmful_refusal.toFixed(1)}% at the first token${generated}, KL ${chosen.kl.toFixed(3)}); search ${fp.search} forward passes, ${fp.exhaustive} for the whole space${fp.pick ? `; pick check ${fp.pick.forward_passes} (${fp.pick.points_checked} point${fp.pick.points_checked === 1 ? '' : 's'} generated)` : ''}`,
  );
}

/** Successive halving over the space; returns the points scored at the full n and selection.json's site rows. */
async function search(
  ctx: StageContext,
  sampled: SampledSets,
  cand: Candidates,
  rt: number[],
  harmfulText: string[],
  searchKey: string,
): Promise<{ found: Omit<ParetoJson, 'front' | 'pick' | 'harmful_pool'>; rows: SelectionRow[] }> {
  const c = ctx.config;
  const b = ctx.backend;
  const { k, L } = cand;
  const t0 = performance.now();
  let passes = 0;
  const logits = async (prompts: number[][], hooks?: ReturnType<typeof interventionHooks>) => {
    passes += prompts.length;
    return prompts.length === 0 ? [] : await b.lastLogits(prompts, hooks ? { hooks } : undefined);
  };
  const pseudo = sampled.sets.pseudoVal.prompts.map((p) => b.encodePrompt(p));
  const harmless = sampled.sets.harmlessVal.prompts.map((p) => b.encodePrompt(p));
  const harmful = harmfulText.map((p) => b.encodePrompt(p));
  const baseHarmless = await logits(harmless);
  const base: State = {
    edit: { position_index: -1, layer: -1, lambda: 1, ablation: 'zero', strength: 0 },
    pseudo: (await logits(pseudo)).map((l) => refusalScore(l, rt)),
    harmful: (await logits(harmful)).map((l) => refusalScore(l, rt)),
    kl: harmless.map(() => 0),
  };
  const baseline = objectives(base);

  // Rungs: n pseudo-harmful (and harmless) prompts, doubling up to n-val; the harmful pool in proportion.
  const full = pseudo.length;
  const rungNs = rungSizes(full, FIRST_N);
  const counts = (n: number) => ({
    pseudo: n,
    harmless: Math.min(harmless.length, Math.ceil((n * harmless.length) / full)),
    harmful: Math.min(harmful.length, Math.ceil((n * harmful.length) / full)),
  });

  const states = new Map<string, State>();
  const stateOf = (e: Edit): State => {
    const key = keyOf(e);
    const s = states.get(key) ?? { edit: e, pseudo: [], harmful: [], kl: [] };
    states.set(key, s);
    return s;
  };
  const measure = async (s: State, n: ReturnType<typeof counts>) => {
    const e = s.edit;
    const iv = candidateAblation(
      cand,
      { positionIndex: e.position_index, layer: e.layer },
      { target: 'false', ablation: e.ablation, lambda: e.lambda, strength: e.strength },
    );
    const hooks = interventionHooks(iv, L);
    for (const l of await logits(pseudo.slice(s.pseudo.length, n.pseudo), hooks)) s.pseudo.push(refusalScore(l, rt));
    for (const l of await logits(harmful.slice(s.harmful.length, n.harmful), hooks))
      s.harmful.push(refusalScore(l, rt));
    const from = s.kl.length;
    const edited = await logits(harmless.slice(from, n.harmless), hooks);
    for (const [j, l] of edited.entries()) s.kl.push(klDivergence(baseHarmless[from + j]!, l));
  };
  // The pick rule decides what is worth keeping: within the KL limit, then harmful refusal within the tolerance
  // (plus two prompts' worth of slack, as a small slice is noisy), then Pareto rank, then the pseudo-harmful score.
  // Without the harm test the most aggressive edits (λ 0) fill every slot: they lead on the pseudo-harmful score.
  const ranked = (alive: State[]) => {
    const obj = alive.map(objectives);
    const ranks = paretoRanks(obj);
    const bad = (s: State, o: Objectives) =>
      2 * Number(o.kl > c.klThreshold) +
      Number(o.harmful_refusal < baseline.harmful_refusal - TOLERANCE - (2 * 100) / s.harmful.length);
    return alive
      .map((s, i) => ({ s, o: obj[i]!, r: ranks[i]!, b: bad(s, obj[i]!) }))
      .sort((x, y) => x.b - y.b || x.r - y.r || x.o.pseudo_score - y.o.pseudo_score)
      .map((x) => x.s);
  };
  const rungLog: ParetoJson['forward_passes']['rungs'] = [];
  const halve = async (stage: string, start: State[], keep: number): Promise<State[]> => {
    let alive = start;
    const bar = ctx.progress(`pareto ${stage}`, rungNs.length);
    for (const [r, n] of rungNs.entries()) {
      for (const s of alive) await measure(s, counts(n));
      rungLog.push({ stage, n, edits: alive.length });
      bar.bump();
      const last = r === rungNs.length - 1;
      alive = ranked(alive).slice(0, last ? keep : Math.max(keep, Math.ceil(alive.length / ETA)));
    }
    bar.stop();
    return alive;
  };

  // Stage 1: sites at the paper's edit.
  const floorLayer = pruneLayer(L, c.prunePercent);
  const sites: State[] = [];
  const { rows, slots } = candidateGrid(k, L, (l) =>
    l >= floorLayer ? `layer ${l} ≥ ${floorLayer} (last ${Math.round(c.prunePercent * 100)}% of layers)` : null,
  );
  for (const { i, l, row } of slots) {
    if (row.rejected) continue;
    const site = { positionIndex: i, layer: l };
    if (norm(candidateAblation(cand, site, { target: 'false', ablation: 'zero', lambda: 1 }).direction) < 0.5)
      row.rejected = 'zero vector (the three sets do not differ here)';
    else sites.push(stateOf({ position_index: i, layer: l, lambda: 1, ablation: 'zero', strength: 1 }));
  }
  if (sites.length === 0)
    throw new ScalpelError('select: no candidate site is left after pruning; try a smaller --prune');
  const keptSites = await halve('sites', sites, SITES_KEPT);
  for (const s of sites) {
    const row = rows.find((r) => r.layer === s.edit.layer && r.position === s.edit.position_index - k)!;
    const o = objectives(s);
    Object.assign(row, { refusal_score: o.pseudo_score, kl: o.kl, harmful_score: o.harmful_score });
    if (!keptSites.includes(s)) row.rejected = `halved out at n = ${s.pseudo.length} (pareto search)`;
  }

  // Stage 2: the kept sites × the settings grid.
  const grid: State[] = [];
  for (const s of keptSites)
    for (const lambda of PARETO_GRID.lambda)
      for (const ablation of PARETO_GRID.ablation)
        for (const strength of PARETO_GRID.strength) grid.push(stateOf({ ...s.edit, lambda, ablation, strength }));
  await halve('settings', grid, SETTINGS_KEPT);

  const perEdit = pseudo.length + harmful.length + harmless.length;
  const settingsPerSite = PARETO_GRID.lambda.length * PARETO_GRID.ablation.length * PARETO_GRID.strength.length;
  const exhaustive = pseudo.length + harmful.length + harmless.length + sites.length * settingsPerSite * perEdit;
  const points: ParetoPoint[] = [...states.values()]
    .filter((s) => s.pseudo.length === full && s.harmful.length === harmful.length && s.kl.length === harmless.length)
    .map((s) => {
      const o = objectives(s);
      return {
        ...s.edit,
        position: s.edit.position_index - k,
        ...o,
        n: [s.pseudo.length, s.harmful.length, s.kl.length] as [number, number, number],
      };
    });
  return {
    found: {
      format: PARETO_FORMAT,
      search_key: searchKey,
      objectives: {
        pseudo_score: 'mean refusal score on the pseudo-harmful validation prompts (lower: fewer false refusals)',
        harmful_refusal:
          '% of harmful-pool prompts whose refusal score stays above 0, p(refusal tokens) > 1/2 at the first response token (higher: refusal kept)',
        kl: 'mean first-token KL(baseline || edited) on the harmless validation prompts (lower: otherwise unchanged)',
      },
      grid: PARETO_GRID,
      baseline,
      points,
      forward_passes: {
        search: passes,
        exhaustive,
        share: Math.round((passes / exhaustive) * 1e4) / 1e4,
        rungs: rungLog,
      },
      seconds: Math.round((performance.now() - t0) / 10) / 100,
    },
    rows,
  };
}
