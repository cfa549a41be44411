// What `sweep --ability` and `sweep --judge` add to the trade-off section: general ability against λ (a chart of the
// harmless first-token KL and a table of every figure, the baseline first), and the second judge's compliance and
// agreement at every setting.
import type { TopLevelSpec } from 'vega-lite';
import { wilsonInterval } from '../../method/stats.js';
import { figure } from '../chart.js';
import { esc, fixed, pct, table } from '../html.js';
import type { AbilityScores, SweepDoc } from '../inputs.js';

/** The λ axis of every chart over a sweep: a little room either side, ticks at the usual settings. */
export const LAMBDA_AXIS = {
  field: 'lambda',
  type: 'quantitative' as const,
  title: 'λ (partial orthogonalisation)',
  scale: { domain: [-0.04, 1.04], nice: false },
  axis: { values: [0, 0.25, 0.5, 0.75, 1], format: '.2~f' },
};

type Point = SweepDoc['points'][number];

function accuracy(a: { accuracy: number; n: number } | null | undefined): string {
  if (!a) return '–';
  const ci = wilsonInterval(Math.round(a.accuracy * a.n), a.n);
  return ci ? `${pct(a.accuracy)} [${pct(ci.lo)}, ${pct(ci.hi)}]` : pct(a.accuracy);
}

const figures = (a: Pick<AbilityScores, 'perplexity' | 'mmlu' | 'arc_challenge'>) => [
  fixed(a.perplexity?.value, 2),
  accuracy(a.mmlu),
  accuracy(a.arc_challenge),
];

function klSpec(rows: { lambda: number; alpha: number; kl: number; stat: string }[]): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: 340,
    height: 180,
    data: { values: rows },
    mark: { type: 'line', point: { filled: true, size: 40 } },
    encoding: {
      x: LAMBDA_AXIS,
      y: { field: 'kl', type: 'quantitative', title: 'harmless first-token KL' },
      color: { field: 'stat', type: 'nominal', title: null, sort: ['mean', '95th percentile'] },
    },
  } as TopLevelSpec;
}

/** General ability at every point measured with the sweep's current sizes; '' when none was. */
export async function sweepAbility(sweep: SweepDoc): Promise<string> {
  const base = sweep.ability_baseline;
  // A damaged sweep.json loses this table rather than the report: only well-formed entries are drawn.
  if (!base || typeof base.baseline !== 'object' || base.baseline === null || typeof base.sizes !== 'object') return '';
  const points = sweep.points.filter((p): p is Point & { ability: NonNullable<Point['ability']> } =>
    Boolean(
      p.ability &&
        p.ability.key === base.key &&
        typeof p.ability.edited === 'object' &&
        p.ability.edited !== null &&
        typeof p.ability.kl?.first_token_mean === 'number',
    ),
  );
  if (points.length === 0) return '';
  const alpha = Math.min(...points.map((p) => p.alpha));
  const curve = points
    .filter((p) => p.alpha === alpha)
    .flatMap((p) => [
      { lambda: p.lambda, alpha: p.alpha, kl: p.ability.kl.first_token_mean, stat: 'mean' },
      { lambda: p.lambda, alpha: p.alpha, kl: p.ability.kl.first_token_p95, stat: '95th percentile' },
    ]);
  const sz = base.sizes;
  const parts: string[] = [];
  parts.push('<h3>General ability against λ</h3>');
  parts.push(
    await figure(
      'ability-lambda',
      klSpec(curve),
      esc(
        `Harmless first-token KL(baseline ‖ edited) against λ at α = ${alpha}: mean and 95th percentile over ${sz.n_kl} prompts of ${base.kl_dataset}.`,
      ),
      'harmless first-token KL against lambda, mean and 95th percentile',
    ),
  );
  const rows: (string | number)[][] = [
    ['baseline', '', '–', '–', ...figures(base.baseline)],
    ...points.map((p) => [
      p.lambda,
      p.alpha,
      fixed(p.ability.kl.first_token_mean, 4),
      fixed(p.ability.kl.first_token_p95, 4),
      ...figures(p.ability.edited),
    ]),
  ];
  parts.push(
    table(['λ', 'α', 'KL mean', 'KL p95', 'perplexity', 'MMLU [95% CI]', 'ARC-Challenge [95% CI]'], rows, [1, 2, 3, 4]),
  );
  const ppl = base.baseline.perplexity;
  parts.push(
    `<p class="small">Measured as <code>scalpel ability</code> does, at each point's intervention; the baseline once. n: KL ${sz.n_kl}, MMLU ${sz.n_mmlu} (${sz.shots}-shot), ARC-Challenge ${sz.n_arc}${ppl ? `, perplexity ${ppl.docs} WikiText-2 articles (${ppl.tokens.toLocaleString('en')} tokens)` : ''}; ${(sweep.cost?.ability_forward_passes ?? 0).toLocaleString('en')} sequences run for ability.</p>`,
  );
  return parts.join('');
}

/** The second judge at every point judged by the baseline's judge; '' when none was. */
export function sweepJudge(sweep: SweepDoc, datasets: string[]): string {
  const bj = sweep.baseline_judge;
  const wellFormed = (j: Point['judge']) =>
    typeof j === 'object' && j !== null && typeof j.rates === 'object' && typeof j.agreement === 'object';
  if (!bj || !wellFormed(bj)) return '';
  const points = sweep.points.filter((p) => wellFormed(p.judge) && p.judge!.judge === bj.judge);
  if (points.length === 0) return '';
  const agree = (a: { n: number; agree: number } | undefined) => (a && a.n > 0 ? pct(a.agree / a.n) : '–');
  const rate = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : pct(x));
  const substring = (results: { dataset: string; compliance_rate: number }[], d: string) =>
    rate(results.find((r) => r.dataset === d)?.compliance_rate);
  const cells = (j: NonNullable<Point['judge']>, results: { dataset: string; compliance_rate: number }[]) =>
    datasets.flatMap((d) => [substring(results, d), rate(j.rates[d]?.compliance_rate), agree(j.agreement[d])]);
  const head = ['λ', 'α', ...datasets.flatMap((d) => [`${d}: substring`, 'judge', 'agree'])];
  const rows = [
    ['baseline', '', ...cells(bj, sweep.baseline)],
    ...points.map((p) => [String(p.lambda), String(p.alpha), ...cells(p.judge!, p.results)]),
  ];
  const unparsed = [bj, ...points.map((p) => p.judge!)].reduce(
    (n, j) => n + Object.values(j.agreement).reduce((m, a) => m + (a.unparsed ?? 0), 0),
    0,
  );
  return `<h3>Second judge at every setting</h3><p class="small">Judge <code>${esc(bj.judge)}</code>, rubric ${esc(bj.rubric_version)}: compliance by each judge and the share of the judge's labels the substring judge agrees with; ${unparsed} answers held no label and are left out.</p>${table(
    head,
    rows,
    head.map((_, i) => i).filter((i) => i > 0),
  )}`;
}
