// `scalpel sweep --judge openai:URL[#model]`: the second judge at every sweep setting. The rows of the settings (and
// baselines) not yet judged by this judge go to llm-judge.ts in one batch, through the run's judge-cache.jsonl, so a
// response the run's own eval or an earlier sweep already had judged costs no request; each point then keeps the
// judge's rates and its agreement with the substring judge per dataset.
import type { ResponseRow } from './evaluate.js';
import {
  type Agreement,
  type JudgeJson,
  type JudgeOptions,
  type JudgeRates,
  type JudgeRow,
  agreementOf,
  judgeName,
  judgeRates,
  judgeRows,
} from './llm-judge.js';

/** sweep.json's `judge` on a point and `baseline_judge`: the second judge's verdicts on those rows, per dataset. */
export interface JudgeSummary {
  judge: string;
  rubric_version: string;
  rates: Record<string, JudgeRates>;
  agreement: Record<string, Agreement>;
}

/** The judge's options with its model already known (connectJudge), so its name is fixed before judging. */
export type SweepJudgeRequest = JudgeOptions & { spec: JudgeOptions['spec'] & { model: string } };

export const sweepJudgeName = (req: SweepJudgeRequest) => judgeName(req.spec, req.spec.model);

/** Per dataset, the judge's rates and agreement over `rows` (one condition: a point's, or the baseline). */
export function summarize(judge: Pick<JudgeJson, 'judge' | 'rubric_version'>, rows: JudgeRow[]): JudgeSummary {
  const rates: Record<string, JudgeRates> = {};
  for (const [key, r] of judgeRates({ rows })) rates[key.split('\t')[0]!] = r;
  return { judge: judge.judge, rubric_version: judge.rubric_version, rates, agreement: agreementOf(rows).agreement };
}

/**
 * Judges every group's rows in one call (the concurrency limit spans them all) and returns each group's summary, in
 * the order given.
 */
export async function judgeGroups(
  groups: ResponseRow[][],
  req: SweepJudgeRequest,
): Promise<{ summaries: JudgeSummary[]; usage: JudgeJson['usage'] }> {
  const j = await judgeRows(groups.flat(), req);
  const summaries: JudgeSummary[] = [];
  let at = 0;
  for (const g of groups) {
    summaries.push(summarize(j, j.rows.slice(at, at + g.length)));
    at += g.length;
  }
  return { summaries, usage: j.usage };
}
