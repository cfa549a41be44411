// Spread over draws (`scalpel stability`): per study, the site each draw of the training/validation prompts chose,
// and how far each evaluation set's gain moves between draws (max − min and sd, in points).
import { esc, table } from '../html.js';
import type { ReportInputs } from '../inputs.js';
import type { Section } from './section.js';
import { drawSites, spreadRows } from '../../method/stability.js';

const pts = (x: number) => (100 * x).toFixed(1);

/** null without stability.json: the study is an optional, costly extra (K more runs), so its absence needs no note. */
export function stabilitySection(inputs: ReportInputs): Section | null {
  const doc = inputs.stability;
  if (!doc || doc.studies.length === 0) return null;
  const parts = doc.studies.map((s) => {
    const sites = drawSites(s).join(', ');
    const rows = spreadRows(s, 'held-out harmful refusal, pooled (%)');
    const c = s.spread.direction_cosine;
    const cos = c
      ? ` Cosine between the chosen directions of two draws: mean ${c.mean.toFixed(3)}, min ${c.min.toFixed(3)}.`
      : '';
    return `<h3>${esc(s.study)} (${s.draws.length} draws; n_train ${s.settings.n_train}, n_val ${s.settings.n_val} × ${s.settings.val_draws})</h3>
<p>Chosen site (position/layer) per draw: ${esc(sites)}. ${s.spread.distinct_sites} distinct; the most frequent on ${esc(pts(s.spread.modal_site_share))}% of draws.${cos}</p>
${table(['dataset', 'gain, mean (points)', 'min', 'max', 'max − min', 'sd'], rows, [1, 2, 3, 4, 5])}`;
  });
  const note = `<p class="small">${esc(doc.studies[0]!.resampling)}. Gain: edited minus baseline compliance on the same prompts.</p>`;
  return { id: 'stability', title: 'Spread over draws', html: `${parts.join('')}${note}` };
}
