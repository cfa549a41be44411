// The select stage: ablate each candidate's ŵ and keep the one with the lowest pseudo-harmful refusal score that
// passes the KL, layer and harm-guard rules (or Arditi et al.'s rule for --target true), and with --alpha also a
// true-refusal r for activation addition. Every candidate's scores go into selection.json; the chosen vectors into
// vector.safetensors.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ScalpelError } from '../errors.js';
import { candidateGrid, loadCandidates, slice, type Candidates, type Slot } from './candidates.js';
import { pruneLayer, type MethodConfig } from './config.js';
import type { SampledSets } from './datasets.js';
import {
  candidateAblation,
  candidateActAdd,
  interventionHooks,
  modeTensors,
  type Ablation,
  type Intervention,
} from './intervention.js';
import { klDivergence, mean, norm, refusalScore } from './math.js';
import {
  FILES,
  f32Tensor,
  writeJson,
  writeTensors,
  type Chosen,
  type SelectionJson,
  type SelectionRow,
} from './rundir.js';
import { paretoSelect } from './pareto-search.js';
import {
  fallbackOrder,
  HALVING,
  rungSizes,
  successiveHalving,
  type HalvingResult,
  type Measure,
  type Scoring,
} from './select-halving.js';
import type { StageContext } from './stage.js';

/** What scoring needs of a stage: `scalpel sweep --reselect` scores at other settings without writing the run's files. */
export type ScoringContext = Pick<StageContext, 'config' | 'backend' | 'runDir' | 'run' | 'progress' | 'log'>;

/** The select stage's result before anything is written: selection.json's content and the chosen slots. */
export interface Scored {
  sel: SelectionJson;
  chosen: Slot | undefined;
  actaddChosen: Slot | undefined;
}

export async function selectCandidate(ctx: StageContext, sampled: SampledSets): Promise<void> {
  const c = ctx.config;
  if (c.objective === 'pareto') {
    const write = (cand: Candidates, site: { i: number; l: number; position: number }) => {
      const row: SelectionRow = {
        position: site.position,
        layer: site.l,
        refusal_score: null,
        kl: null,
        harmful_score: null,
        rejected: null,
      };
      return writeVector(ctx.runDir, cand, c, { i: site.i, l: site.l, row }, undefined, ctx.fingerprint);
    };
    await paretoSelect(ctx, sampled, write);
    return;
  }
  const cand = await loadCandidates(ctx.runDir);
  const { sel, chosen, actaddChosen } = await scoreCandidates(ctx, sampled, cand);
  // selection.json is written even when nothing passes, so the rejections can be read.
  mkdirSync(ctx.runDir, { recursive: true });
  await writeJson(ctx.runDir, FILES.selection, sel);
  if (!chosen) {
    const hint =
      c.target === 'true'
        ? 'try a larger --true-kl-threshold or a lower --induce-threshold'
        : 'try --no-harm-guard or a larger --kl-threshold';
    throw new ScalpelError(`select: no candidate passes the rules (see ${join(ctx.runDir, FILES.selection)}); ${hint}`);
  }
  if (c.alpha !== 0 && !actaddChosen) {
    throw new ScalpelError(
      `select: no actadd candidate passes KL ≤ ${c.actaddKlThreshold} at α = ${c.alpha} (see ${join(ctx.runDir, FILES.selection)})`,
    );
  }
  await writeVector(ctx.runDir, cand, c, chosen, actaddChosen, ctx.fingerprint);
  const ch = sel.chosen!;
  ctx.log(
    `chosen: position ${ch.position}, layer ${ch.layer} (pseudo-val score ${fmt(ch.refusal_score)}, KL ${fmt(ch.kl)}, harmful-val score ${fmt(ch.harmful_score)})`,
  );
}

/**
 * Scores every candidate on the validation sets at ctx.config's λ, α and ablation mode and applies the rules: the
 * select stage's work, writing nothing. `cand`: the run's candidates.safetensors.
 */
export async function scoreCandidates(ctx: ScoringContext, sampled: SampledSets, cand: Candidates): Promise<Scored> {
  const c = ctx.config;
  const b = ctx.backend;
  const { k, L, d } = cand;
  if (L !== b.numLayers || d !== b.width)
    throw new ScalpelError(
      `${join(ctx.runDir, FILES.candidates)}: shape [${k}, ${L}, ${d}] does not fit the model (${b.numLayers} layers, width ${b.width})`,
    );
  const rt = ctx.run.refusal_tokens?.ids;
  if (!rt) throw new ScalpelError(`${join(ctx.runDir, FILES.run)}: no refusal tokens recorded; run extract first`);
  const S = sampled.sets;
  const harmless = S.harmlessVal.prompts.map((p) => b.encodePrompt(p));
  const pseudo = S.pseudoVal.prompts.map((p) => b.encodePrompt(p));
  const harmful = S.harmfulVal.prompts.map((p) => b.encodePrompt(p));
  const floorLayer = pruneLayer(L, c.prunePercent);
  const ablationFor = (i: number, l: number, lambda: number): Ablation =>
    candidateAblation(
      cand,
      { positionIndex: i, layer: l },
      { target: c.target, ablation: c.ablation, lambda, strength: c.strength },
    );
  const hooksFor = (iv: Intervention) => interventionHooks(iv, L);
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

  const { rows, slots } = candidateGrid(k, L, (l) =>
    l >= floorLayer ? `layer ${l} ≥ ${floorLayer} (last ${Math.round(c.prunePercent * 100)}% of layers)` : null,
  );
  if (c.target === 'true') for (const row of rows) row.steering_score = null;
  const live = slots.filter((s) => s.row.rejected === null);
  let chosen: Slot | undefined;
  // Identical inputs give zero differences (e.g. layer 0, where the block input is the post-instruction token's
  // embedding for every prompt): nothing to ablate.
  for (const s of live) {
    if (norm(ablationFor(s.i, s.l, c.lambda).direction) < 0.5)
      s.row.rejected = 'zero vector (the three sets do not differ here)';
  }
  const todo = live.filter((s) => s.row.rejected === null);
  const halvingSearch = c.target === 'false' && c.search === 'halving';
  const p = ctx.progress(
    `selecting among ${todo.length} candidates${halvingSearch ? ' by successive halving' : ''}`,
    halvingSearch ? rungSizes(pseudo.length).length : todo.length,
  );
  // --search halving: grows a candidate's per-prompt figures to the first `to` prompts of each validation set.
  const hooksOf = new Map<Slot, ReturnType<typeof interventionHooks>>();
  const measure: Measure = async (h, to) => {
    const hooks = hooksOf.get(h.slot) ?? hooksFor(ablationFor(h.slot.i, h.slot.l, c.lambda));
    hooksOf.set(h.slot, hooks);
    const newPseudo = pseudo.slice(h.pseudo.length, to);
    if (newPseudo.length > 0)
      for (const l of await b.lastLogits(newPseudo, { hooks })) h.pseudo.push(refusalScore(l, rt));
    const from = h.kl.length;
    const newHarmless = harmless.slice(from, Math.min(harmless.length, to));
    if (newHarmless.length > 0)
      for (const [j, l] of (await b.lastLogits(newHarmless, { hooks })).entries())
        h.kl.push(klDivergence(baseHarmless[from + j]!, l));
  };
  let halving: HalvingResult | undefined;
  if (halvingSearch) {
    halving = await successiveHalving(todo, pseudo.length, c.klThreshold, measure, (n, m) => {
      p.bump();
      ctx.log(`halving: ${m} candidates scored on ${n} prompts of each validation set`);
    });
    p.stop();
  } else if (c.target === 'false') {
    for (const s of todo) {
      const hooks = hooksFor(ablationFor(s.i, s.l, c.lambda));
      s.row.kl = await meanKl(hooks);
      if (s.row.kl > c.klThreshold) s.row.rejected = `KL ${fmt(s.row.kl)} > ${c.klThreshold}`;
      else s.row.refusal_score = await meanScore(pseudo, hooks);
      p.bump();
    }
    p.stop();
  }
  if (c.target === 'false') {
    // Lowest pseudo-harmful score first; the harm guard is checked in that order until a candidate passes.
    // The guard rejects pushing harmful prompts below 0; a model already below 0 must not drop further.
    const guard = Math.min(0, baseline.harmful_val_score ?? 0);
    const pickFrom = async (from: Slot[]) => {
      const ranked = from
        .filter((s) => s.row.rejected === null)
        .sort((a, b2) => a.row.refusal_score! - b2.row.refusal_score!);
      for (const s of ranked) {
        if (chosen) {
          s.row.rejected = null;
          continue;
        }
        if (c.harmGuard) {
          s.row.harmful_score = await meanScore(harmful, hooksFor(ablationFor(s.i, s.l, c.lambda)));
          if (s.row.harmful_score < guard) {
            s.row.rejected = `harmful-val score ${fmt(s.row.harmful_score)} < ${fmt(guard)} (harm guard)`;
            continue;
          }
        }
        chosen = s;
      }
    };
    if (!halving) await pickFrom(todo);
    else {
      // Full-n figures decide; halved-out rows keep their estimates for the heatmap, marked as such.
      const record = (h: Scoring, estimate: boolean) => {
        const row = h.slot.row;
        row.kl = mean(h.kl);
        row.refusal_score = mean(h.pseudo);
        row.rejected = estimate
          ? `halved out at n = ${h.pseudo.length} (--search halving; figures are estimates)`
          : row.kl > c.klThreshold
            ? `KL ${fmt(row.kl)} > ${c.klThreshold}`
            : null;
      };
      for (const h of halving.full) record(h, false);
      for (const h of halving.dropped) record(h, true);
      await pickFrom(halving.full.map((h) => h.slot));
      // No survivor passes (the KL limit at full n, or the harm guard): the halved-out candidates are scored in full
      // a batch at a time in the order halving left them (the latest rung first, best estimate first), as the
      // exhaustive sweep walks its ranking until one passes.
      const rest = fallbackOrder(halving.dropped, c.klThreshold);
      while (!chosen && rest.length > 0) {
        const batch = rest.splice(0, HALVING.kept);
        ctx.log(`halving: no candidate scored in full passes the rules yet; scoring ${batch.length} more in full`);
        for (const h of batch) {
          await measure(h, pseudo.length);
          record(h, false);
        }
        await pickFrom(batch.map((h) => h.slot));
      }
    }
  } else {
    // Arditi et al.: KL ≤ 0.1 under ablation of r̂, adding r at its layer must induce refusal on harmless prompts
    // (mean score > 0), lowest harmful-val refusal score under ablation wins.
    for (const s of todo) {
      const hooks = hooksFor(ablationFor(s.i, s.l, c.lambda));
      s.row.kl = await meanKl(hooks);
      if (s.row.kl > c.trueKlThreshold) s.row.rejected = `KL ${fmt(s.row.kl)} > ${c.trueKlThreshold}`;
      else {
        const add = hooksFor({ kind: 'add', add: candidateActAdd(cand, { positionIndex: s.i, layer: s.l }, 1) });
        s.row.steering_score = await meanScore(harmless, add);
        if (c.induceFilter && s.row.steering_score <= c.induceThreshold)
          s.row.rejected = `steering score ${fmt(s.row.steering_score)} ≤ ${c.induceThreshold} (adding r does not induce refusal)`;
        else s.row.harmful_score = await meanScore(harmful, hooks);
      }
      p.bump();
    }
    p.stop();
    const ok = todo
      .filter((s) => s.row.rejected === null)
      .sort((a, b2) => a.row.harmful_score! - b2.row.harmful_score!);
    chosen = ok[0];
  }

  const sel: SelectionJson = {
    target: c.target,
    lambda: c.lambda,
    ablation: c.ablation,
    ...(c.strength !== 1 ? { strength: c.strength } : {}),
    rules:
      c.target === 'false'
        ? {
            kl_threshold: c.klThreshold,
            prune_from_layer: floorLayer,
            harm_guard: c.harmGuard ? `harmful-val score ≥ min(0, baseline ${fmt(baseline.harmful_val_score)})` : false,
            pick: 'lowest pseudo-harmful val refusal score',
            ...(halving ? { search: { how: 'successive halving', ...HALVING, rungs: halving.rungs } } : {}),
          }
        : {
            kl_threshold: c.trueKlThreshold,
            induce_threshold: c.induceFilter ? c.induceThreshold : 'off (--no-induce-filter)',
            prune_from_layer: floorLayer,
            pick: 'lowest harmful val refusal score',
          },
    baseline,
    candidates: rows,
    chosen: chosen ? chosenOf(chosen, k) : null,
  };

  // Optional activation addition: a true-refusal candidate r, added as α·r at its layer's input.
  let actaddChosen: Slot | undefined;
  if (c.alpha !== 0) {
    const { rows: arows, slots: aslots } = candidateGrid(k, L, (l) =>
      l >= floorLayer ? `layer ${l} ≥ ${floorLayer}` : null,
    );
    for (const s of aslots)
      if (s.row.rejected === null && norm(slice(cand.r, s.i, s.l, L, d)) === 0) s.row.rejected = 'zero vector';
    const alive = aslots.filter((s) => s.row.rejected === null);
    const pa = ctx.progress('selecting the actadd vector', alive.length);
    for (const s of alive) {
      const add = hooksFor({ kind: 'add', add: candidateActAdd(cand, { positionIndex: s.i, layer: s.l }, c.alpha) });
      const logits = await b.lastLogits(harmless, { hooks: add });
      s.row.kl = mean(logits.map((lg, j) => klDivergence(baseHarmless[j]!, lg)));
      if (s.row.kl > c.actaddKlThreshold) s.row.rejected = `KL ${fmt(s.row.kl)} > ${c.actaddKlThreshold}`;
      else if (c.alpha > 0) s.row.refusal_score = mean(logits.map((lg) => refusalScore(lg, rt)));
      else s.row.harmful_score = await meanScore(harmful, add);
      pa.bump();
    }
    pa.stop();
    // α > 0 adds refusal: the largest harmless-val refusal score wins. α < 0 removes it: the lowest harmful-val score.
    const ok = alive
      .filter((s) => s.row.rejected === null)
      .sort((a, b2) =>
        c.alpha > 0 ? b2.row.refusal_score! - a.row.refusal_score! : a.row.harmful_score! - b2.row.harmful_score!,
      );
    actaddChosen = ok[0];
    sel.actadd = {
      alpha: c.alpha,
      kl_threshold: c.actaddKlThreshold,
      candidates: arows,
      chosen: actaddChosen ? chosenOf(actaddChosen, k) : null,
    };
  }

  return { sel, chosen, actaddChosen };
}

/** vector.safetensors: the chosen candidate's ablation direction, its r and w, and the actadd r if any. */
async function writeVector(
  runDir: string,
  cand: Candidates,
  c: MethodConfig,
  chosen: Slot,
  actaddChosen: Slot | undefined,
  fingerprint: string,
): Promise<void> {
  const { L, d } = cand;
  const v = candidateAblation(cand, { positionIndex: chosen.i, layer: chosen.l }, c);
  const tensors = [
    f32Tensor('direction', [d], v.direction),
    f32Tensor('r', [d], slice(cand.r, chosen.i, chosen.l, L, d)),
    f32Tensor('w', [d], slice(cand.w, chosen.i, chosen.l, L, d)),
    ...modeTensors(v.mode, L),
  ];
  const meta: Record<string, string> = {
    format: 'scalpel-vector/1',
    position: String(chosen.row.position),
    layer: String(chosen.l),
    lambda: String(c.lambda),
    target: c.target,
    ablation: c.ablation,
    ...(c.strength !== 1 ? { strength: String(c.strength) } : {}),
    hooks: 'blocks.*.hook_resid_pre, blocks.*.hook_attn_out, blocks.*.hook_mlp_out',
    model_fingerprint: fingerprint,
  };
  if (actaddChosen) {
    tensors.push(f32Tensor('actadd_r', [d], slice(cand.r, actaddChosen.i, actaddChosen.l, L, d)));
    meta['actadd_layer'] = String(actaddChosen.l);
    meta['actadd_position'] = String(actaddChosen.row.position);
    meta['alpha'] = String(c.alpha);
  }
  await writeTensors(runDir, FILES.vector, tensors, meta);
}

function chosenOf(s: Slot, k: number): Chosen {
  return {
    position: s.i - k,
    layer: s.l,
    position_index: s.i,
    refusal_score: s.row.refusal_score,
    kl: s.row.kl,
    harmful_score: s.row.harmful_score,
  };
}

function fmt(x: number | null | undefined): string {
  return x === null || x === undefined ? '–' : x.toFixed(3);
}
