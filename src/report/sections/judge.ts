// Where the substring judge and a model judge disagree, from judge.json: agreement per dataset, the two kinds of
// disagreement and the partial verdicts, and a few disagreeing answers (joined to their text in responses.jsonl or
// sweep-responses.jsonl).
import type { ResponseRow } from '../../method/evaluate.js';
import { esc, pct, table } from '../html.js';
import type { JudgeRow, ReportInputs } from '../inputs.js';
import { optionalSection, type Section } from './section.js';

const SHOWN = 5;

const rowKey = (r: Pick<ResponseRow, 'dataset' | 'condition' | 'lambda' | 'alpha' | 'index'>) =>
  JSON.stringify([r.dataset, r.condition, r.lambda ?? null, r.alpha ?? null, r.index]);

export function judgeSection(inputs: ReportInputs): Section {
  const missing = {
    what: 'a second judge',
    command: `scalpel eval --run ${inputs.runDir} --judge openai:http://127.0.0.1:PORT/v1#MODEL`,
  };
  return optionalSection('judge', 'Judge agreement', inputs.judge, missing, (j) => judgeHtml(j, inputs));
}

function judgeHtml(j: NonNullable<ReportInputs['judge']>, inputs: ReportInputs): string {
  const rows = Object.entries(j.agreement ?? {}).map(([dataset, a]) => [
    dataset,
    a.n,
    a.n > 0 ? pct(a.agree / a.n) : '–',
    a.substring_refusal_judge_compliance,
    a.substring_compliance_judge_refusal,
    a.partial,
    a.unparsed ?? 0,
  ]);
  const texts = new Map<string, ResponseRow>();
  for (const r of [...inputs.responses, ...inputs.sweepResponses]) texts.set(rowKey(r), r);
  const disagree = j.rows.filter((r: JudgeRow) => r.judge !== null && r.judge !== r.substring);
  const shown = disagree.slice(0, SHOWN).map((r) => {
    const t = texts.get(rowKey(r));
    return `<div class="example"><div class="prompt"><span class="label">${esc(r.dataset)} #${r.index} · ${esc(r.condition)}${r.lambda !== null ? ` λ=${esc(r.lambda)}` : ''} · substring: ${esc(r.substring)}, judge: ${esc(r.judge)}</span> ${t ? esc(t.prompt) : ''}</div>${t ? `<pre>${esc(t.response)}</pre>` : ''}</div>`;
  });
  return `<p class="small">Judge: <code>${esc(j.judge)}</code>, rubric ${esc(j.rubric_version)}; ${j.rows.length} verdicts.</p>${table(
    [
      'dataset',
      'n',
      'agree',
      'substring refusal, judge compliance',
      'substring compliance, judge refusal',
      'judge: partial',
      'unreadable',
    ],
    rows,
    [1, 2, 3, 4, 5, 6],
  )}${disagree.length > 0 ? `<h4>Disagreements: ${disagree.length}${disagree.length > SHOWN ? ` (first ${SHOWN} shown)` : ''}</h4>${shown.join('')}` : ''}`;
}
