// What the commands print: the before/after table of compliance rates and the one-line summary of a selection.
import { escapeControls } from '../errors.js';
import type { EvalResult, SelectionJson } from '../method/pipeline.js';

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** The before/after table of compliance rates, one row per dataset. */
export function formatTable(results: EvalResult[]): string {
  const sets = [...new Set(results.map((r) => r.dataset))];
  const conds = [...new Set(results.map((r) => r.condition))];
  const head = ['dataset', 'n', ...conds.map((c) => `${c}`), ...(conds.length === 2 ? ['change'] : [])];
  const rows = sets.map((s) => {
    const by = (c: string) => results.find((r) => r.dataset === s && r.condition === c);
    const cells = conds.map((c) => (by(c) ? pct(by(c)!.compliance_rate) : '–'));
    const change =
      conds.length === 2 && by(conds[0]!) && by(conds[1]!)
        ? [
            `${by(conds[1]!)!.compliance_rate >= by(conds[0]!)!.compliance_rate ? '+' : ''}${(100 * (by(conds[1]!)!.compliance_rate - by(conds[0]!)!.compliance_rate)).toFixed(1)}`,
          ]
        : conds.length === 2
          ? ['–'] // a set measured in one condition only still fills its row (the widths are taken per column)
          : [];
    // Dataset names are the user's file names: shown escaped.
    return [escapeControls(s), String(by(conds[0]!)?.n ?? ''), ...cells, ...change];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [
    'compliance rate (share of responses the substring judge does not flag as refusals)',
    line(head),
    ...rows.map(line),
  ].join('\n');
}

export function describeSelection(sel: SelectionJson | undefined): string {
  if (!sel?.chosen) return 'no candidate chosen';
  const c = sel.chosen;
  // selection.json is a file: a damaged one may hold anything where a score should be.
  const f = (x: unknown) => (typeof x === 'number' ? x.toFixed(3) : '–');
  return escapeControls(
    `chosen: position ${c.position}, layer ${c.layer} (target ${sel.target}, λ = ${sel.lambda}, ${sel.ablation} ablation; pseudo-val refusal score ${f(c.refusal_score)}, harmless KL ${f(c.kl)}, harmful-val score ${f(c.harmful_score)})`,
  );
}
