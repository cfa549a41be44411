// The headline: which model, which edit, where in the network, and what it did to each evaluation set: compliance
// before and after with Wilson 95% intervals, the prompts that flipped each way, and the exact McNemar test on them.
import { basename } from 'node:path';
import { figure } from '../chart.js';
import { esc, fixed, notMeasured, pct, raw, table } from '../html.js';
import type { ReportInputs } from '../inputs.js';
import { datasetKind, type PairedDataset, type Rate } from '../paired.js';
import type { Section } from './section.js';
import { heldOutHarmful, type PooledRate, type RateRow } from '../../method/heldout.js';

export function modelName(inputs: ReportInputs): string {
  return inputs.run.model.hub?.repo ?? basename(inputs.run.model.dir);
}

/** The chosen (position, layer) in words, with the chat-template token at that position. */
export function describeSite(inputs: ReportInputs): string {
  const chosen = inputs.selection?.chosen;
  if (!chosen) return 'none (no candidate passed selection)';
  const token = inputs.run.post_instruction_tokens?.text[chosen.position_index];
  return `position ${chosen.position}${token === undefined ? '' : ` (token ${JSON.stringify(token)})`}, layer ${chosen.layer}`;
}

/** A rate with its Wilson interval on a second, smaller line (so the table fits a phone). */
const rateCell = (r: Rate) =>
  raw(`${esc(pct(r.rate))}${r.ci ? `<br><span class="ci">[${esc(pct(r.ci.lo))}, ${esc(pct(r.ci.hi))}]</span>` : ''}`);

export function formatP(p: number | null): string {
  if (p === null) return '–';
  return p < 1e-4 ? p.toExponential(1) : p.toFixed(4);
}

/**
 * The held-out harmful sets pooled (src/method/heldout.ts): refusal before and after with Wilson intervals, and each
 * set's change; empty when no held-out harmful set was evaluated.
 */
export function heldOutHtml(results: readonly RateRow[]): string {
  const h = heldOutHarmful(results);
  if (!h) return '';
  const p = h.pooled;
  const rate = (r: PooledRate) =>
    `${pct(r.refusal_rate)}${r.wilson95 ? ` [${pct(r.wilson95.lo)}, ${pct(r.wilson95.hi)}]` : ''}`;
  const signed = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(100 * x).toFixed(1)}`;
  const per = h.sets
    .map((s) => `${s.dataset} (n = ${s.n}) ${s.change === null ? pct(s.baseline_refusal) : signed(s.change)}`)
    .join(', ');
  const after = p.edited ? ` → <strong>${esc(rate(p.edited))}</strong> after (${esc(signed(p.change!))} points)` : '';
  return `<p class="held-out">Held-out harmful refusal, ${h.sets.length} sets pooled (n = ${p.baseline.n}, Wilson 95%): <strong>${esc(rate(p.baseline))}</strong> before${after}.<br><span class="small">Refusal change per set (points): ${esc(per)}.</span></p>`;
}

export async function headlineSection(inputs: ReportInputs, paired: PairedDataset[]): Promise<Section> {
  const c = inputs.run.config;
  const sel = inputs.selection;
  const facts: [string, string][] = [
    ['model', `${modelName(inputs)} (fingerprint ${inputs.run.model.fingerprint})`],
    [
      'edit',
      `target ${String(sel?.target ?? c['target'])}, ${String(sel?.ablation ?? c['ablation'])} ablation, λ = ${String(sel?.lambda ?? c['lambda'])}, α = ${String(c['alpha'] ?? 0)}`,
    ],
    ['chosen site', describeSite(inputs)],
    [
      'its validation scores',
      sel?.chosen
        ? `pseudo-harmful refusal score ${fixed(sel.chosen.refusal_score)} (baseline ${fixed(sel.baseline.pseudo_val_score)}), harmless KL ${fixed(sel.chosen.kl)}, harmful score ${fixed(sel.chosen.harmful_score)} (baseline ${fixed(sel.baseline.harmful_val_score)})`
        : '–',
    ],
    [
      'generation',
      `greedy, ${String(c['maxNewTokens'])} new tokens at most; refusal judged by substring (${Array.isArray(c['judgeSubstrings']) ? c['judgeSubstrings'].length : '?'} phrases)`,
    ],
  ];
  const dl = `<dl class="facts">${facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl>`;
  if (paired.length === 0)
    return {
      id: 'headline',
      title: 'Headline',
      html: `${dl}${notMeasured('before/after compliance', `scalpel eval --run ${inputs.runDir}`)}`,
    };

  const rows = paired.map((d) => [
    raw(`${esc(d.dataset)}<br><span class="ci">${esc(datasetKind(d.dataset))}, n = ${d.before.n}</span>`),
    rateCell(d.before),
    rateCell(d.after),
    `${d.after.rate >= d.before.rate ? '+' : '−'}${Math.abs(100 * (d.after.rate - d.before.rate)).toFixed(1)}`,
    d.toCompliance ? `${d.toCompliance.length} / ${d.toRefusal!.length}` : '–',
    formatP(d.pValue),
  ]);
  const tableHtml = table(
    ['dataset', 'compliance before', 'after', 'change (points)', 'flips: answered / refused', 'McNemar p'],
    rows,
    [1, 2, 3, 4, 5],
  );
  const data = paired.flatMap((d) =>
    (['before', 'after'] as const).map((when) => ({
      dataset: d.dataset,
      when: when === 'before' ? 'baseline' : `edited (${d.condition})`,
      rate: d[when].rate,
      lo: d[when].ci?.lo ?? d[when].rate,
      hi: d[when].ci?.hi ?? d[when].rate,
    })),
  );
  const chart = await figure(
    'headline',
    {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      width: 320,
      data: { values: data },
      encoding: {
        y: { field: 'dataset', type: 'nominal', sort: null, title: null },
        yOffset: { field: 'when', sort: null },
        color: { field: 'when', type: 'nominal', sort: null, title: null, scale: { range: ['#9a9a9a', '#d9480f'] } },
      },
      layer: [
        {
          mark: { type: 'rule', strokeWidth: 2 },
          encoding: {
            x: { field: 'lo', type: 'quantitative', title: 'compliance rate', axis: { format: '.0%' } },
            x2: { field: 'hi' },
          },
        },
        {
          mark: { type: 'point', filled: true, size: 60 },
          encoding: { x: { field: 'rate', type: 'quantitative', scale: { domain: [0, 1] } } },
        },
      ],
    },
    'Compliance (share of answers the substring judge does not flag as refusals) before and after the edit, with Wilson 95% intervals.',
    'compliance per dataset before and after the edit',
  );
  const heldOut = heldOutHtml(inputs.results ?? []);
  const note = `<p class="small">Brackets: Wilson 95% intervals. Flips: prompts refused before and answered after / answered before and refused after. Pseudo-harmful sets should rise; harmful sets should stay low. McNemar: exact two-sided test on the prompts whose judgement flipped (paired by prompt), so a change that is larger than its intervals suggest can still be chance, and the reverse.</p>`;
  return { id: 'headline', title: 'Headline', html: `${dl}${heldOut}${tableHtml}${chart}${note}` };
}
