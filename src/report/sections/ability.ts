// Whether general ability holds (the paper's MMLU / ARC / perplexity table), from ability.json: baseline against
// edited, accuracies with Wilson 95% intervals, and the harmless first-token KL the edit causes.
import { wilsonInterval } from '../../method/stats.js';
import { esc, fixed, pct, table } from '../html.js';
import type { AbilityScores, ReportInputs } from '../inputs.js';
import { optionalSection, type Section } from './section.js';

function accuracy(a: { accuracy: number; n: number } | null): string {
  if (!a) return '–';
  const ci = wilsonInterval(Math.round(a.accuracy * a.n), a.n);
  return ci ? `${pct(a.accuracy)} [${pct(ci.lo)}, ${pct(ci.hi)}]` : pct(a.accuracy);
}

export function abilitySection(inputs: ReportInputs): Section {
  const missing = {
    what: 'perplexity, MMLU, ARC-Challenge and harmless KL',
    command: `scalpel ability --run ${inputs.runDir}`,
  };
  return optionalSection('ability', 'General ability', inputs.ability, missing, abilityHtml);
}

function abilityHtml(ab: NonNullable<ReportInputs['ability']>): string {
  const { baseline, edited } = ab.conditions;
  const describe = (s: AbilityScores | undefined, key: 'mmlu' | 'arc_challenge') => {
    const x = s?.[key];
    // ability.json's format is the prompt's whole description ("mmlu-5shot: …"); its name before the colon reads in a table.
    return x ? `n = ${x.n}, ${x.shots}-shot, ${x.format.split(':')[0]}` : '';
  };
  const ppl = baseline?.perplexity ?? edited?.perplexity;
  const rows: (string | number)[][] = [
    [
      'perplexity (lower is better)',
      fixed(baseline?.perplexity?.value, 2),
      fixed(edited?.perplexity?.value, 2),
      ppl ? `${ppl.dataset}: ${ppl.docs} documents, ${ppl.tokens.toLocaleString('en')} tokens` : '',
    ],
    [
      'MMLU accuracy [95% CI]',
      accuracy(baseline?.mmlu ?? null),
      accuracy(edited?.mmlu ?? null),
      describe(baseline, 'mmlu'),
    ],
    [
      'ARC-Challenge accuracy [95% CI]',
      accuracy(baseline?.arc_challenge ?? null),
      accuracy(edited?.arc_challenge ?? null),
      describe(baseline, 'arc_challenge'),
    ],
  ];
  const s = ab.settings;
  const kl = ab.kl
    ? `<p>Harmless first-token KL(baseline ‖ edited): mean ${fixed(ab.kl.first_token_mean, 4)}, 95th percentile ${fixed(ab.kl.first_token_p95, 4)} (n = ${ab.kl.n}, ${esc(ab.kl.dataset)}).</p>`
    : '';
  return `<p class="small">${s ? `Edited: λ = ${esc(s.lambda)}, α = ${esc(s.alpha)}, ${esc(s.ablation)} ablation at position ${esc(s.site?.position)}, layer ${esc(s.site?.layer)}.` : 'No edit: the model measured alone.'}</p>${table(['measure', 'baseline', 'edited', 'data'], rows, [1, 2])}${kl}`;
}
