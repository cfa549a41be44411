// The harm-aware selection's trade-off, from pareto.json (`scalpel select --objective pareto`): every edit scored at
// the full n as pseudo-harmful refusal score against harmful refusal kept, KL as the colour, the front joined and
// the pick marked, with the baseline's lines; then the front as a table and the search's cost.
import type { TopLevelSpec } from 'vega-lite';
import { isPoint, type ParetoJson, type ParetoPoint } from '../../method/pareto-search.js';
import { figure } from '../chart.js';
import { esc, fixed, table } from '../html.js';
import type { ReportInputs } from '../inputs.js';
import type { Section } from './section.js';

const label = (p: ParetoPoint) => `${p.position}/${p.layer} λ${p.lambda} ${p.ablation} s${p.strength}`;

function frontSpec(doc: ParetoJson): TopLevelSpec {
  const onFront = new Set(doc.front.map(label));
  const picked = doc.front[doc.pick.index];
  const rows = doc.points.map((p) => ({
    pseudo: p.pseudo_score,
    harmful: p.harmful_refusal,
    kl: p.kl,
    edit: label(p),
    front: onFront.has(label(p)) ? 'on the front' : 'dominated',
  }));
  const frontRows = rows.filter((r) => r.front === 'on the front').sort((a, b) => a.pseudo - b.pseudo);
  const b = doc.baseline;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: 360,
    height: 260,
    layer: [
      {
        data: { values: [{ x: b.pseudo_score, y: b.harmful_refusal - 2 }] },
        layer: [
          {
            mark: { type: 'rule', strokeDash: [4, 3], color: '#888' },
            encoding: { x: { field: 'x', type: 'quantitative' } },
          },
          {
            mark: { type: 'rule', strokeDash: [2, 2], color: '#c33' },
            encoding: { y: { field: 'y', type: 'quantitative' } },
          },
        ],
      },
      {
        data: { values: frontRows },
        mark: { type: 'line', color: '#555', strokeWidth: 1 },
        encoding: {
          x: { field: 'pseudo', type: 'quantitative' },
          y: { field: 'harmful', type: 'quantitative' },
        },
      },
      {
        data: { values: rows },
        mark: { type: 'point', filled: true, size: 55, opacity: 0.85 },
        encoding: {
          x: {
            field: 'pseudo',
            type: 'quantitative',
            title: 'pseudo-harmful val refusal score (lower: fewer false refusals)',
          },
          y: {
            field: 'harmful',
            type: 'quantitative',
            title: 'harmful val refused (%)',
            scale: { zero: false },
          },
          color: {
            field: 'kl',
            type: 'quantitative',
            title: 'harmless KL',
            scale: { scheme: 'viridis', reverse: true },
          },
          shape: { field: 'front', type: 'nominal', title: null, sort: ['on the front', 'dominated'] },
        },
      },
      ...(picked
        ? [
            {
              data: { values: [{ pseudo: picked.pseudo_score, harmful: picked.harmful_refusal }] },
              mark: { type: 'point', shape: 'circle', size: 260, color: '#d62728', strokeWidth: 2, filled: false },
              encoding: {
                x: { field: 'pseudo', type: 'quantitative' },
                y: { field: 'harmful', type: 'quantitative' },
              },
            },
          ]
        : []),
    ],
  } as TopLevelSpec;
}

export async function paretoSection(inputs: ReportInputs): Promise<Section | null> {
  const stored = inputs.pareto;
  if (!stored) return null;
  // A damaged file's unreadable points are left out rather than drawn as garbage.
  const front = stored.front.filter(isPoint);
  const doc: ParetoJson = {
    ...stored,
    points: stored.points.filter(isPoint),
    front,
    pick: { ...stored.pick, index: front.length === stored.front.length ? stored.pick?.index : -1 },
  };
  if (typeof doc.baseline?.pseudo_score !== 'number' || typeof doc.baseline.harmful_refusal !== 'number')
    return {
      id: 'pareto',
      title: 'Harm-aware selection: the Pareto front',
      html: '<p>pareto.json has no readable baseline.</p>',
    };
  const b = doc.baseline;
  const fp = doc.forward_passes;
  const parts = [
    await figure(
      'pareto-front',
      frontSpec(doc),
      esc(
        `Every edit the search scored on all its validation prompts (${doc.points.length}; n = ${Array.isArray(doc.front[0]?.n) ? doc.front[0].n.join(' / ') : '–'} pseudo-harmful / harmful pool / harmless), the front joined, the pick circled in red. Grey dashes: the model's own pseudo-harmful score (${fixed(b.pseudo_score)}); red dashes: 2 points below its harmful refusal (${b.harmful_refusal.toFixed(1)}%), the pick rule's floor. Harmful pool: ${String(doc.harmful_pool?.name)}, ${String(doc.harmful_pool?.n)} of ${String(doc.harmful_pool?.size)} prompts.`,
      ),
      'scatter of edits: pseudo-harmful refusal score against harmful refusal kept, coloured by KL',
    ),
  ];
  const head = [
    '#',
    'position',
    'layer',
    'λ',
    'mode',
    'strength',
    'pseudo score',
    'harmful refused',
    'generated refused',
    'KL',
  ];
  const genRate = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? `${x.toFixed(1)}%` : '–');
  parts.push(
    table(
      head,
      doc.front.map((p, i) => [
        i === doc.pick.index ? `${i} (pick)` : i,
        p.position,
        p.layer,
        p.lambda,
        p.ablation,
        p.strength,
        fixed(p.pseudo_score),
        `${p.harmful_refusal.toFixed(1)}%`,
        genRate(p.harmful_refusal_generated),
        fixed(p.kl),
      ]),
      [1, 2, 3, 5, 6, 7, 8, 9],
    ),
  );
  parts.push(
    `<p class="small">Pick: ${esc(doc.pick.chosen_by === 'rule' ? `${String(doc.pick.rule)}${doc.pick.met ? '' : ' (no point met it; the checked point keeping the most generated harmful refusal)'}` : `--pick ${doc.pick.index}`)}. ${typeof fp?.search === 'number' && typeof fp.exhaustive === 'number' ? `Search cost: ${fp.search.toLocaleString('en')} forward passes (prompt prefills) against ${fp.exhaustive.toLocaleString('en')} for scoring every edit of the space on every prompt (${((100 * fp.search) / fp.exhaustive).toFixed(1)}%).` : ''}</p>`,
  );
  const check = doc.pick_check;
  if (check && typeof check === 'object')
    parts.push(
      `<p class="small">${esc(`The pick is checked by generation: the front points the rule allows, largest gain first, answered greedily (${String(check.max_new_tokens)} tokens) on the ${String(check.n)} harmful-pool prompts and judged by the substring judge, until one keeps its refusal within ${String(check.tolerance)} points of the model's own (${genRate(check.baseline?.harmful_refusal_generated)}); "generated refused" above. ${Array.isArray(check.checked) ? check.checked.length : 0} points checked${typeof fp?.pick?.forward_passes === 'number' ? `, ${fp.pick.forward_passes.toLocaleString('en')} forward passes (prefills and decode steps)` : ''}.`)}</p>`,
    );
  return { id: 'pareto', title: 'Harm-aware selection: the Pareto front', html: parts.join('') };
}
