// What the commands print: the before/after table of compliance rates and the one-line summary of a selection.
import { escapeControls } from '../errors.js';
import { describeHeldOut, heldOutHarmful } from '../method/heldout.js';
import type { JudgeJson } from '../method/llm-judge.js';
import { judgeRates } from '../method/llm-judge.js';
import type { EvalResult, SelectionJson } from '../method/pipeline.js';

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/**
 * The before/after table of compliance rates, one row per dataset; with a second judge's labels, its compliance rate
 * beside each of the substring judge's.
 */
export function formatTable(results: EvalResult[], judge?: JudgeJson): string {
  const sets = [...new Set(results.map((r) => r.dataset))];
  const conds = [...new Set(results.map((r) => r.condition))];
  const rates = judge ? judgeRates(judge) : undefined;
  // A gated evaluation (eval --gate) also says what share of each set the gate let the edit touch.
  const gated = results.some((r) => r.gate_cleared !== undefined);
  const head = [
    'dataset',
    'n',
    ...conds.flatMap((c) => (rates ? [c, `${c} (judge)`] : [c])),
    ...(conds.length === 2 ? ['change'] : []),
    ...(gated ? ['gate cleared'] : []),
  ];
  const rows = sets.map((s) => {
    const by = (c: string) => results.find((r) => r.dataset === s && r.condition === c);
    const judged = (c: string) => {
      const j = rates?.get(`${s}\t${c}`);
      return j && j.n > 0 ? pct(j.compliance_rate) : '–';
    };
    const cells = conds.flatMap((c) => {
      const cell = by(c) ? pct(by(c)!.compliance_rate) : '–';
      return rates ? [cell, judged(c)] : [cell];
    });
    const change =
      conds.length === 2 && by(conds[0]!) && by(conds[1]!)
        ? [
            `${by(conds[1]!)!.compliance_rate >= by(conds[0]!)!.compliance_rate ? '+' : ''}${(100 * (by(conds[1]!)!.compliance_rate - by(conds[0]!)!.compliance_rate)).toFixed(1)}`,
          ]
        : conds.length === 2
          ? ['–'] // a set measured in one condition only still fills its row (the widths are taken per column)
          : [];
    // Dataset names are the user's file names: shown escaped.
    const cleared = results.find((r) => r.dataset === s && r.gate_cleared !== undefined)?.gate_cleared;
    const gateCell = gated ? [cleared === undefined ? '–' : pct(cleared)] : [];
    return [escapeControls(s), String(by(conds[0]!)?.n ?? ''), ...cells, ...change, ...gateCell];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [
    'compliance rate (share of responses the substring judge does not flag as refusals)',
    ...(judge ? [judgeNote(judge)] : []),
    line(head),
    ...rows.map(line),
    ...heldOutLine(results),
  ].join('\n');
}

/** Under the table: the held-out harmful sets' refusal pooled (src/method/heldout.ts), when any was evaluated. */
function heldOutLine(results: EvalResult[]): string[] {
  const h = heldOutHarmful(results);
  return h ? ['', describeHeldOut(h)] : [];
}

/** What the judge columns mean, with the rows they leave out. */
function judgeNote(j: JudgeJson): string {
  const partial = j.rows.filter((r) => r.judge === 'partial').length;
  const unparsed = j.rows.filter((r) => r.judge === null).length;
  return `(judge): share the judge ${j.judge} labels compliance, of the responses it labelled (partial: ${partial} of ${j.rows.length}, counted as not compliance; no label in its answer: ${unparsed}, left out)`;
}

export function describeSelection(sel: SelectionJson | undefined): string {
  if (!sel?.chosen) return 'no candidate chosen';
  const c = sel.chosen;
  // selection.json is a file: a damaged one may hold anything where a score should be.
  const f = (x: unknown) => (typeof x === 'number' ? x.toFixed(3) : '–');
  return escapeControls(
    `chosen: position ${c.position}, layer ${c.layer} (target ${sel.target}, λ = ${sel.lambda}, ${sel.ablation} ablation${typeof sel.strength === 'number' && sel.strength !== 1 ? `, strength ${sel.strength}` : ''}; pseudo-val refusal score ${f(c.refusal_score)}, harmless KL ${f(c.kl)}, harmful-val score ${f(c.harmful_score)})`,
  );
}

/** Where the two judges agree and disagree, one row per dataset (judge.json's agreement). */
export function formatAgreement(j: JudgeJson): string {
  const head = [
    'dataset',
    'labelled',
    'agree',
    'substring refusal, judge compliance',
    'substring compliance, judge refusal',
    'partial',
    'no label',
  ];
  const rows = Object.entries(j.agreement).map(([s, a]) => [
    s,
    String(a.n),
    String(a.agree),
    String(a.substring_refusal_judge_compliance),
    String(a.substring_compliance_judge_refusal),
    String(a.partial),
    String(a.unparsed),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return ['agreement of the substring judge and the judge (all conditions)', line(head), ...rows.map(line)].join('\n');
}
