// The trade-off as λ and α move (the paper's Figures 3 and 5), from sweep.json: compliance against λ per dataset with
// Wilson 95% intervals, the α × λ grid per dataset, and every point's numbers, site and cost in a table.
import type { TopLevelSpec } from 'vega-lite';
import { figure } from '../chart.js';
import { esc, notMeasured, pct, table } from '../html.js';
import type { ReportInputs, SweepDoc } from '../inputs.js';
import { rateOf } from '../paired.js';
import type { Section } from './section.js';
import { LAMBDA_AXIS, sweepAbility, sweepJudge } from './sweep-extras.js';

interface PointRate {
  dataset: string;
  lambda: number;
  alpha: number;
  rate: number;
  lo: number;
  hi: number;
  n: number;
}

function pointRates(sweep: SweepDoc): PointRate[] {
  return sweep.points.flatMap((p) =>
    p.results.map((r) => {
      const rate = rateOf(r);
      return {
        dataset: r.dataset,
        lambda: p.lambda,
        alpha: p.alpha,
        rate: rate.rate,
        lo: rate.ci?.lo ?? rate.rate,
        hi: rate.ci?.hi ?? rate.rate,
        n: r.n,
      };
    }),
  );
}

const sortNum = (xs: number[]) => [...new Set(xs)].sort((a, b) => a - b);

function curvesSpec(rows: PointRate[], datasets: string[]): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: 340,
    height: 240,
    data: { values: rows },
    encoding: {
      // A little room either side, so the λ = 0 and λ = 1 points and their intervals clear the axes.
      x: LAMBDA_AXIS,
      color: { field: 'dataset', type: 'nominal', sort: datasets, title: null },
    },
    layer: [
      {
        mark: { type: 'rule', opacity: 0.55 },
        encoding: { y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' } },
      },
      {
        mark: { type: 'line', point: { filled: true, size: 40 } },
        encoding: {
          y: {
            field: 'rate',
            type: 'quantitative',
            title: 'compliance rate',
            axis: { format: '.0%' },
            scale: { domain: [0, 1] },
          },
        },
      },
    ],
  } as TopLevelSpec;
}

function gridSpec(rows: PointRate[], datasets: string[], lambdas: number[], alphas: number[]): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    data: { values: rows.map((r) => ({ ...r, label: pct(r.rate, 0) })) },
    facet: { field: 'dataset', type: 'nominal', sort: datasets, title: null },
    columns: 2,
    spec: {
      width: Math.max(120, lambdas.length * 38),
      height: Math.max(28, alphas.length * 28),
      encoding: {
        x: { field: 'lambda', type: 'ordinal', title: 'λ', sort: lambdas, axis: { labelAngle: 0, grid: false } },
        y: { field: 'alpha', type: 'ordinal', title: 'α', sort: alphas, axis: { grid: false } },
      },
      layer: [
        {
          mark: { type: 'rect' },
          encoding: {
            color: {
              field: 'rate',
              type: 'quantitative',
              title: 'compliance',
              scale: { scheme: 'viridis', domain: [0, 1] },
              legend: { format: '.0%', orient: 'bottom', direction: 'horizontal' },
            },
          },
        },
        {
          mark: { type: 'text', fontSize: 10 },
          encoding: {
            text: { field: 'label', type: 'nominal' },
            color: { condition: { test: 'datum.rate > 0.6', value: '#111' }, value: 'white' },
          },
        },
      ],
    },
  } as TopLevelSpec;
}

export async function sweepSection(inputs: ReportInputs): Promise<Section> {
  const sweep = inputs.sweep;
  const title = 'Trade-off: λ and α';
  if (!sweep || sweep.points.length === 0)
    return {
      id: 'sweep',
      title,
      html: notMeasured(
        'λ curves (Figure 3) and the α × λ grid (Figure 5)',
        `scalpel sweep --run ${inputs.runDir} --lambda 0,0.25,0.5,0.75,1`,
      ),
    };
  const rows = pointRates(sweep);
  const datasets = sweep.datasets.length > 0 ? sweep.datasets : [...new Set(rows.map((r) => r.dataset))];
  const lambdas = sortNum(sweep.points.map((p) => p.lambda));
  const alphas = sortNum(sweep.points.map((p) => p.alpha));
  // Figure 3 is the λ dial alone: the curves at the smallest α swept (0 unless the sweep left it out).
  const curveAlpha = alphas[0]!;
  const parts: string[] = [];
  parts.push(
    await figure(
      'lambda-curves',
      curvesSpec(
        rows.filter((r) => r.alpha === curveAlpha),
        datasets,
      ),
      esc(
        `Compliance against λ at α = ${curveAlpha} (the paper's Figure 3), with Wilson 95% intervals. λ = 0 ablates w as extracted, λ = 1 ablates w orthogonalised against r. Baseline (no edit): ${sweep.baseline.map((b) => `${b.dataset} ${pct(b.compliance_rate)}`).join(', ')}.`,
      ),
      'compliance rate against lambda, one line per dataset',
    ),
  );
  parts.push(
    await figure(
      'alpha-lambda-grid',
      gridSpec(rows, datasets, lambdas, alphas),
      esc(
        `Compliance over α × λ per dataset (the paper's Figure 5: α adds α·r, the true-refusal direction, back at its layer).${alphas.length === 1 ? ` Only α = ${alphas[0]} was swept: pass --alpha with several values (e.g. --alpha 0,0.2,0.4) for the grid's other rows.` : ''}`,
      ),
      'grid of compliance over alpha and lambda, one panel per dataset',
    ),
  );
  const head = ['λ', 'α', 'site (pos, layer)', 'seconds', 'forward passes', ...datasets];
  const tableRows = sweep.points.map((p) => [
    p.lambda,
    p.alpha,
    p.site
      ? `${p.site.position}, ${p.site.layer}${p.reselect ? ' (reselected)' : ''}`
      : `none${p.note ? `: ${p.note}` : ''}`,
    p.seconds.toFixed(1),
    p.forward_passes,
    ...datasets.map((d) => {
      const r = p.results.find((x) => x.dataset === d);
      return r ? pct(r.compliance_rate) : '–';
    }),
  ]);
  parts.push(
    table(
      head,
      tableRows,
      head.map((_, i) => i).filter((i) => i !== 2),
    ),
  );
  const cost = sweep.cost;
  if (cost)
    parts.push(
      `<p class="small">Sweep cost: ${cost.forward_passes.toLocaleString('en')} forward passes${cost.separate_eval_forward_passes_estimate !== undefined ? ` (separate <code>scalpel eval --lambda</code> calls: about ${cost.separate_eval_forward_passes_estimate.toLocaleString('en')})` : ''}; n per dataset: ${sweep.baseline.map((b) => `${esc(b.dataset)} ${b.n}`).join(', ')}.</p>`,
    );
  parts.push(await sweepAbility(sweep), sweepJudge(sweep, datasets));
  return { id: 'sweep', title, html: parts.join('') };
}
