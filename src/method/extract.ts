// The extract stage: find the refusal tokens, score every training prompt and read its block inputs at the
// post-instruction positions in one prefill, keep the prompts the filter accepts (harmful > 0, harmless < 0,
// pseudo-harmful > 0), and form the candidates r (harmful − harmless) and w (pseudo − harmless) from their float64
// means (candidates.safetensors).
import { ScalpelError } from '../errors.js';
import { hookName, type HookMap } from '../engine/types.js';
import type { Backend, OnProgress } from './backend.js';
import { writeCandidates } from './candidates.js';
import { type LoadedSet, SET_LABELS, type SampledSets } from './datasets.js';
import { isRefusal } from './judge.js';
import { MeanAccumulator, diffInMeans, mean, refusalScore } from './math.js';
import type { RunJson } from './rundir.js';
import type { StageContext } from './stage.js';

export async function extractCandidates(ctx: StageContext, sampled: SampledSets): Promise<void> {
  const c = ctx.config;
  const b = ctx.backend;
  const L = b.numLayers;
  const d = b.width;
  const post = b.postInstructionTokens();
  const k = post.length;
  ctx.run.post_instruction_tokens = { ids: post, text: post.map((t) => b.tokenText(t)) };
  const S = sampled.sets;
  const enc = (ps: string[]) => ps.map((p) => b.encodePrompt(p));
  const harmful = enc(S.harmfulTrain.prompts);
  const harmless = enc(S.harmlessTrain.prompts);
  const pseudo = enc(S.pseudoTrain.prompts);

  const rt = await findRefusalTokens(ctx, harmful, pseudo);
  ctx.run.refusal_tokens = rt;
  ctx.log(`refusal tokens (${rt.rule}): ${rt.ids.map((id, i) => `${id} ${JSON.stringify(rt.text[i])}`).join(', ')}`);

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
  const p = ctx.progress('scoring training prompts and reading activations', all.length);
  await scoreAndCapture(
    b,
    all,
    k,
    rt.ids,
    (j, score, row) => {
      const si = owner[j]!;
      scores[names[si]]!.push(score);
      if (!c.filter || keepRule[si]!(score)) {
        accs[si]!.addRow(row);
        kept[si]!++;
      }
    },
    p.cb,
  );
  p.stop();
  const data: NonNullable<RunJson['data']> = {};
  (['harmfulTrain', 'harmlessTrain', 'pseudoTrain'] as const).forEach((key, si) => {
    const set = S[key];
    data[SET_LABELS[key]] = { ...sampledRecord(set), kept: kept[si]! };
    if (kept[si] === 0) {
      const rule = si === 1 ? 'score < 0' : 'score > 0';
      throw new ScalpelError(
        `extract: no ${names[si]} training prompt passes the filter (${rule}) with refusal tokens [${rt.ids.join(', ')}]; try --no-filter or --refusal-tokens`,
      );
    }
  });
  for (const key of ['harmfulVal', 'harmlessVal', 'pseudoVal'] as const) {
    const set = S[key];
    data[SET_LABELS[key]] = sampledRecord(set);
  }
  ctx.run.data = data;
  ctx.run['train_scores'] = Object.fromEntries(
    Object.entries(scores).map(([n, s]) => [n, { mean: mean(s), min: Math.min(...s), max: Math.max(...s) }]),
  );
  ctx.log(
    `kept after filtering: harmful ${kept[0]}/${harmful.length}, harmless ${kept[1]}/${harmless.length}, pseudo-harmful ${kept[2]}/${pseudo.length}`,
  );
  const means = accs.map((a) => a.means());
  const [muHarmful, muHarmless, muPseudo] = means as [Float64Array, Float64Array, Float64Array];
  const r = diffInMeans(muHarmful, muHarmless);
  const w = diffInMeans(muPseudo, muHarmless);
  await writeCandidates(
    ctx.runDir,
    { k, L, d, r, w, meanHarmful: muHarmful, meanHarmless: muHarmless, meanPseudo: muPseudo },
    post,
    ctx.fingerprint,
  );
}

/** The refusal tokens by --refusal-tokens: the paper's, the given ones, or (auto) the openings of the model's refusals. */
async function findRefusalTokens(
  ctx: StageContext,
  harmful: number[][],
  pseudo: number[][],
): Promise<NonNullable<RunJson['refusal_tokens']>> {
  const c = ctx.config;
  const b = ctx.backend;
  const rule = c.refusalTokens;
  const textOf = (ids: number[]) => ids.map((t) => b.tokenText(t));
  if (rule === 'paper') {
    const ids = [...new Set(['I', 'As'].map((s) => b.responseFirstToken(s)))];
    return { rule: 'paper: first tokens of the responses "I" and "As"', ids, text: textOf(ids) };
  }
  if (Array.isArray(rule)) {
    const ids = [
      ...new Set(
        rule.map((x) => {
          if (typeof x === 'number') {
            if (!Number.isInteger(x) || x < 0 || x >= b.vocabSize)
              throw new ScalpelError(
                `--refusal-tokens: token id ${x} is outside the vocabulary (0..${b.vocabSize - 1})`,
              );
            return x;
          }
          return b.responseFirstToken(x);
        }),
      ),
    ];
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
    const p = ctx.progress(`finding refusal tokens (${name})`, prompts.length);
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
      throw new ScalpelError(
        `extract: the model refused none of the ${prompts.length} harmful training prompts (substring judge, ${c.probeTokens} tokens); pass --refusal-tokens`,
      );
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
    ids,
    text: textOf(ids),
    first_token_counts: countsBySet['harmful'],
    ...(countsBySet['pseudo-harmful'] ? { first_token_counts_pseudo: countsBySet['pseudo-harmful'] } : {}),
    refusals_found: refusals,
    probed,
  };
}

/**
 * Prefills `prompts` once, in chunks of the backend's batch size, and calls `consume(index, refusal score, row)`
 * for every prompt, where row is its block input at the last k positions of every layer, [k, L, width] (float32,
 * reused between calls). Hooks see rows in the engine's packing order (sorted by length, stable); that order is
 * recomputed here and checked against the row lengths the hooks report. Should an engine ever order rows
 * differently, the chunk is rerun one prompt at a time, which is unambiguous.
 */
export async function scoreAndCapture(
  b: Backend,
  prompts: number[][],
  k: number,
  refusalIds: readonly number[],
  consume: (index: number, score: number, row: Float32Array) => void,
  onProgress?: OnProgress,
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
    hooks.set(hookName(l, 'hook_resid_pre'), [
      (act, ctx) => {
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
      },
    ]);
  }
  const run = async (idx: number[]) => {
    rows = [];
    lengths = [];
    counters = new Array(L).fill(0);
    const logits = await b.lastLogits(
      idx.map((i) => prompts[i]!),
      { hooks },
    );
    return logits;
  };
  for (let s0 = 0; s0 < prompts.length; s0 += chunk) {
    const idx = Array.from({ length: Math.min(chunk, prompts.length - s0) }, (_, j) => s0 + j);
    const logits = await run(idx);
    const order = idx.map((_, j) => j).sort((a, c) => prompts[idx[a]!]!.length - prompts[idx[c]!]!.length || a - c);
    if (rows.length === idx.length && order.every((j, r) => lengths[r] === prompts[idx[j]!]!.length)) {
      for (const [r, j] of order.entries()) consume(idx[j]!, refusalScore(logits[j]!, refusalIds), rows[r]!);
    } else {
      for (const i of idx) {
        const one = await run([i]);
        consume(i, refusalScore(one[0]!, refusalIds), rows[0]!);
      }
    }
    onProgress?.(idx[idx.length - 1]! + 1, prompts.length);
  }
}

/** run.json's record of a sampled set: where it came from, how many prompts it has and how many were drawn. */
function sampledRecord(set: { loaded: LoadedSet; prompts: string[] }) {
  return {
    ref: set.loaded.name,
    source: set.loaded.source,
    available: set.loaded.prompts.length,
    sampled: set.prompts.length,
  };
}
