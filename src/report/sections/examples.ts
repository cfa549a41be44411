// What the answers look like (the paper's Figure 1): per dataset, prompts whose judgement flipped in each direction,
// the answer before and after side by side. All of it is untrusted text, so it goes through esc().
import type { ResponseRow } from '../../method/evaluate.js';
import { esc, notMeasured } from '../html.js';
import type { ReportInputs } from '../inputs.js';
import type { PairedDataset } from '../paired.js';
import type { Section } from './section.js';

/** Examples shown per dataset and direction: enough to see the pattern, few enough to read. */
export const EXAMPLES_PER_DIRECTION = 3;

function example(pair: { before: ResponseRow; after: ResponseRow }, condition: string): string {
  const answer = (label: string, r: ResponseRow) =>
    `<div class="answer ${r.refusal ? 'refused' : 'complied'}"><div class="label">${esc(label)} · ${r.refusal ? 'refusal' : 'compliance'}</div><pre>${esc(r.response)}</pre></div>`;
  return `<div class="example"><div class="prompt"><span class="label">prompt #${pair.before.index}</span> ${esc(pair.before.prompt)}</div><div class="pair">${answer('baseline', pair.before)}${answer(condition, pair.after)}</div></div>`;
}

function direction(title: string, pairs: { before: ResponseRow; after: ResponseRow }[], condition: string): string {
  if (pairs.length === 0) return `<h4>${esc(title)}: none</h4>`;
  const shown = pairs.slice(0, EXAMPLES_PER_DIRECTION);
  return `<h4>${esc(title)}: ${pairs.length}${pairs.length > shown.length ? ` (first ${shown.length} shown)` : ''}</h4>${shown.map((p) => example(p, condition)).join('')}`;
}

export function examplesSection(inputs: ReportInputs, paired: PairedDataset[]): Section {
  const withPairs = paired.filter((d) => d.toCompliance && d.toRefusal);
  if (withPairs.length === 0)
    return {
      id: 'examples',
      title: 'Example responses',
      html: notMeasured('paired responses', `scalpel eval --run ${inputs.runDir}`),
    };
  const html = withPairs
    .map(
      (d) =>
        `<section class="dataset"><h3>${esc(d.dataset)}</h3>${direction('refused before, answered after', d.toCompliance!, d.condition)}${direction('answered before, refused after', d.toRefusal!, d.condition)}</section>`,
    )
    .join('');
  return {
    id: 'examples',
    title: 'Example responses',
    html: `<p class="small">Prompts whose substring judgement flipped under the edit, in prompt order. Control characters in prompts and answers are shown as \\xNN.</p>${html}`,
  };
}
