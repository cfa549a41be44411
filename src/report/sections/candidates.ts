// Where in the network the candidates work (the paper's Figure 4): heatmaps over every (post-instruction position,
// layer) candidate of the pseudo-harmful refusal score after ablating it and of the harmless KL it causes, with the
// pruned layers and the chosen site marked; and cos(w, r) by layer, how much of the false-refusal vector is the
// true-refusal direction before orthogonalisation (from candidates.safetensors).
import type { TopLevelSpec } from 'vega-lite';
import type { Candidates } from '../../method/candidates.js';
import type { SelectionRow } from '../../method/rundir.js';
import { figure } from '../chart.js';
import { esc, notMeasured } from '../html.js';
import type { ReportInputs } from '../inputs.js';
import type { Section } from './section.js';

interface Cell {
  position: string;
  layer: number;
  value: number | null;
  label: string;
  chosen: boolean;
  dark: boolean;
}

/** "−3 <|assistant|>": a position's offset from the end of the prompt and its chat-template token. */
function positionLabel(position: number, k: number, tokens: string[] | undefined): string {
  const t = tokens?.[position + k];
  return t === undefined ? String(position) : `${position} ${JSON.stringify(t).slice(1, -1)}`;
}

/** Why a candidate has no score, as one letter for its cell (explained in the caption). */
function reasonLetter(rejected: string | null): string {
  if (!rejected) return '';
  if (/^layer /.test(rejected)) return 'P';
  if (/zero vector/.test(rejected)) return '0';
  return '×';
}

function cells(
  rows: SelectionRow[],
  field: 'refusal_score' | 'kl',
  chosen: { position: number; layer: number } | null,
  k: number,
  tokens: string[] | undefined,
  digits: number,
): Cell[] {
  const values = rows.map((r) => r[field]).filter((v): v is number => v !== null && Number.isFinite(v));
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return rows.map((r) => {
    const v = r[field];
    const valued = v !== null && Number.isFinite(v);
    const letter = reasonLetter(r.rejected);
    // Text on the darkest quarter of each colour ramp is drawn white so it stays readable.
    const t = valued && hi > lo ? (v - lo) / (hi - lo) : 0.5;
    const dark = field === 'kl' ? t > 0.7 : Math.abs(v ?? 0) > 0.6 * Math.max(-lo, hi);
    return {
      position: positionLabel(r.position, k, tokens),
      layer: r.layer,
      value: valued ? v : null,
      label: valued ? `${v.toFixed(digits)}${letter === '×' ? '×' : ''}` : letter || '–',
      chosen: chosen !== null && r.position === chosen.position && r.layer === chosen.layer,
      dark: valued && dark,
    };
  });
}

/** A diverging scale centred on 0 (no change in refusal) and symmetric, so colour depth means the same both ways. */
function symmetricDomain(values: (number | null)[]): Record<string, unknown> {
  const m = Math.max(1e-9, ...values.map((v) => (v === null || !Number.isFinite(v) ? 0 : Math.abs(v))));
  return { scheme: 'blueorange', domain: [-m, m] };
}

function heatmapSpec(
  data: Cell[],
  layers: number,
  positions: string[],
  title: string,
  scale: Record<string, unknown>,
): TopLevelSpec {
  const showText = layers <= 16;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: Math.min(520, Math.max(220, layers * 40)),
    height: positions.length * 28,
    data: { values: data },
    encoding: {
      x: { field: 'layer', type: 'ordinal', title: 'layer', axis: { labelAngle: 0, grid: false } },
      y: { field: 'position', type: 'ordinal', sort: positions, title: null, axis: { grid: false } },
    },
    layer: [
      {
        transform: [{ filter: 'datum.value !== null' }],
        mark: { type: 'rect' },
        encoding: {
          color: {
            field: 'value',
            type: 'quantitative',
            title,
            scale,
            legend: { orient: 'bottom', direction: 'horizontal', gradientLength: 160 },
          },
        },
      },
      {
        transform: [{ filter: 'datum.value === null' }],
        mark: { type: 'rect', fill: '#e4e4e4' },
      },
      ...(showText
        ? [
            {
              mark: { type: 'text' as const, fontSize: 11, fontWeight: 600 },
              encoding: {
                text: { field: 'label', type: 'nominal' as const },
                color: {
                  condition: { test: 'datum.dark', value: 'white' },
                  value: '#222',
                },
              },
            },
          ]
        : []),
      {
        transform: [{ filter: 'datum.chosen' }],
        mark: { type: 'rect', fill: null, stroke: '#000', strokeWidth: 3 },
      },
    ],
  } as TopLevelSpec;
}

/** cos(w, r) at every (position, layer): the share of the false-refusal vector that points along true refusal. */
export function cosines(c: Candidates): { position: number; layer: number; cos: number }[] {
  const out: { position: number; layer: number; cos: number }[] = [];
  for (let i = 0; i < c.k; i++)
    for (let l = 0; l < c.L; l++) {
      const o = (i * c.L + l) * c.d;
      let wr = 0;
      let ww = 0;
      let rr = 0;
      for (let j = 0; j < c.d; j++) {
        const w = c.w[o + j]!;
        const r = c.r[o + j]!;
        wr += w * r;
        ww += w * w;
        rr += r * r;
      }
      // A zero vector (a layer where the sets do not differ) has no direction: leave it out.
      if (ww > 0 && rr > 0) out.push({ position: i - c.k, layer: l, cos: wr / Math.sqrt(ww * rr) });
    }
  return out;
}

export async function candidatesSection(inputs: ReportInputs): Promise<Section> {
  const sel = inputs.selection;
  const parts: string[] = [];
  const tokens = inputs.run.post_instruction_tokens?.text;
  const k = inputs.candidates?.k ?? tokens?.length ?? 0;
  const layers = inputs.candidates?.L ?? inputs.run.model.num_layers ?? 0;
  if (!sel || sel.candidates.length === 0) {
    parts.push(notMeasured('candidate scores', `scalpel select --run ${inputs.runDir}`));
  } else {
    const rows = sel.candidates;
    const kk = k || Math.max(...rows.map((r) => -r.position));
    const L = layers || Math.max(...rows.map((r) => r.layer)) + 1;
    const positions = [...new Set(rows.map((r) => r.position))]
      .sort((a, b) => a - b)
      .map((p) => positionLabel(p, kk, tokens));
    const pruneFrom = sel.rules['prune_from_layer'];
    const caption = (what: string) =>
      `${what} Black box: the chosen site. Grey cells were not scored: P a pruned layer${typeof pruneFrom === 'number' ? ` (layers ≥ ${pruneFrom})` : ''}, 0 a zero vector; × marks a scored candidate that a rule rejected (KL or harm guard).`;
    parts.push(
      await figure(
        'refusal-heatmap',
        heatmapSpec(
          cells(rows, 'refusal_score', sel.chosen, kk, tokens, 2),
          L,
          positions,
          'refusal score',
          symmetricDomain(rows.map((r) => r.refusal_score)),
        ),
        esc(
          caption(
            `Pseudo-harmful validation refusal score with each candidate ablated (lower: fewer refusals; baseline ${sel.baseline.pseudo_val_score?.toFixed(2) ?? '–'}).`,
          ),
        ),
        'heatmap of the pseudo-harmful refusal score for every position and layer',
      ),
    );
    parts.push(
      await figure(
        'kl-heatmap',
        heatmapSpec(cells(rows, 'kl', sel.chosen, kk, tokens, 3), L, positions, 'harmless KL', {
          scheme: 'oranges',
          type: 'sqrt',
        }),
        esc(
          caption(
            `KL divergence of the harmless validation prompts' next-token distributions with each candidate ablated (limit ${String(sel.rules['kl_threshold'] ?? '–')}).`,
          ),
        ),
        'heatmap of the harmless KL for every position and layer',
      ),
    );
  }
  if (!inputs.candidates) {
    parts.push(notMeasured('cos(w, r)', `scalpel extract --run ${inputs.runDir}`));
  } else {
    const cs = cosines(inputs.candidates).map((x) => ({
      ...x,
      position: positionLabel(x.position, inputs.candidates!.k, tokens),
    }));
    const chosen = sel?.chosen;
    const pruneFrom = sel?.rules['prune_from_layer'];
    parts.push(
      await figure(
        'cosine',
        {
          $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
          width: 340,
          height: 200,
          layer: [
            ...(typeof pruneFrom === 'number' && pruneFrom < inputs.candidates.L
              ? [
                  {
                    data: { values: [{ from: pruneFrom - 0.5, to: inputs.candidates.L - 0.5 }] },
                    mark: { type: 'rect' as const, color: '#eee' },
                    encoding: {
                      x: { field: 'from', type: 'quantitative' as const },
                      x2: { field: 'to' },
                    },
                  },
                ]
              : []),
            {
              data: { values: cs },
              mark: { type: 'line' as const, point: true },
              encoding: {
                x: {
                  field: 'layer',
                  type: 'quantitative' as const,
                  title: 'layer',
                  axis: { tickMinStep: 1, format: 'd' },
                  scale: { domain: [-0.5, inputs.candidates.L - 0.5], nice: false },
                },
                y: { field: 'cos', type: 'quantitative' as const, title: 'cos(w, r)' },
                color: { field: 'position', type: 'nominal' as const, title: 'position', sort: null },
              },
            },
            ...(chosen
              ? [
                  {
                    data: { values: [{ layer: chosen.layer }] },
                    mark: { type: 'rule' as const, strokeDash: [4, 3], color: '#000' },
                    encoding: { x: { field: 'layer', type: 'quantitative' as const } },
                  },
                ]
              : []),
          ],
        } as TopLevelSpec,
        esc(
          `Cosine between the false-refusal candidate w (pseudo-harmful − harmless) and the true-refusal candidate r (harmful − harmless) at each layer, before λ orthogonalises w against r.${chosen ? ` Dashed: the chosen layer ${chosen.layer}.` : ''}${typeof pruneFrom === 'number' ? ' Shaded: pruned layers.' : ''}`,
        ),
        'cosine between w and r by layer, one line per position',
      ),
    );
  }
  return { id: 'candidates', title: 'Where the candidates work', html: parts.join('') };
}
