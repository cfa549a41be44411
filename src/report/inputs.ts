// Everything the report reads from a run directory, read once: the run's own files (run.json, selection.json,
// candidates.safetensors, eval.json, responses.jsonl) and the optional ones other commands add (sweep.json,
// ability.json, judge.json; their contract is in the issue-14 file formats). A missing optional file is null, and its
// section says which command makes it; a file that is there but is not what it claims to be is a one-line error.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ScalpelError } from '../errors.js';
import { type Candidates, loadCandidates } from '../method/candidates.js';
import type { EvalResult, ResponseRow } from '../method/evaluate.js';
import type { JudgeRow } from '../method/llm-judge.js';
import type { ParetoJson } from '../method/pareto-search.js';
import type { StabilityJson } from '../method/stability.js';
import { FILES, type RunJson, type SelectionJson, readJson, requireRunJson } from '../method/rundir.js';
import type { PointAbility, SweepAbilityBaseline } from '../method/sweep-ability.js';
import type { JudgeSummary } from '../method/sweep-judge.js';

/** The optional files, by the names the commands that write them use. */
export const OPTIONAL_FILES = {
  sweep: 'sweep.json',
  sweepResponses: 'sweep-responses.jsonl',
  ability: 'ability.json',
  judge: 'judge.json',
  stability: 'stability.json',
} as const;

/** sweep.json (`scalpel sweep`), the fields the report reads. */
export interface SweepDoc {
  format: string;
  model_fingerprint?: string;
  max_new_tokens?: number;
  datasets: string[];
  baseline: EvalResult[];
  points: {
    lambda: number;
    alpha: number;
    ablation: string;
    reselect: boolean;
    /** null when re-selection found no candidate (its results are then empty). */
    site: { position: number; layer: number } | null;
    results: EvalResult[];
    seconds: number;
    forward_passes: number;
    note?: string;
    /** `sweep --ability`: figures under this point's intervention. */
    ability?: PointAbility;
    /** `sweep --judge`: the second judge's rates and agreement per dataset. */
    judge?: JudgeSummary;
  }[];
  cost?: {
    forward_passes: number;
    separate_eval_forward_passes_estimate?: number;
    ability_forward_passes?: number;
    judge_requests?: number;
  };
  ability_baseline?: SweepAbilityBaseline;
  baseline_judge?: JudgeSummary & { max_new_tokens: number };
  [key: string]: unknown;
}

export interface AbilityScores {
  perplexity: { value: number; tokens: number; docs: number; dataset: string } | null;
  mmlu: { accuracy: number; n: number; shots: number; format: string } | null;
  arc_challenge: { accuracy: number; n: number; shots: number; format: string } | null;
  [key: string]: unknown;
}

/** ability.json (`scalpel ability`). */
export interface AbilityDoc {
  format: string;
  model_fingerprint?: string;
  /** null for a model measured alone (no edit). */
  settings: { lambda: number; alpha: number; ablation: string; site: { position: number; layer: number } } | null;
  conditions: { baseline: AbilityScores; edited: AbilityScores | null };
  kl?: { n: number; first_token_mean: number; first_token_p95: number; dataset: string } | null;
}

// judge.json's rows, as the judge writes them.
export type { JudgeRow };

/** judge.json (`--judge openai:URL[#model]` on eval, run or sweep). */
export interface JudgeDoc {
  format: string;
  judge: string;
  rubric_version: string;
  rows: JudgeRow[];
  agreement: Record<
    string,
    {
      n: number;
      agree: number;
      substring_refusal_judge_compliance: number;
      substring_compliance_judge_refusal: number;
      partial: number;
      unparsed?: number;
    }
  >;
}

export interface ReportInputs {
  runDir: string;
  run: RunJson;
  selection: SelectionJson | null;
  candidates: Candidates | null;
  results: EvalResult[];
  responses: ResponseRow[];
  sweep: SweepDoc | null;
  sweepResponses: ResponseRow[];
  ability: AbilityDoc | null;
  judge: JudgeDoc | null;
  /** pareto.json (`scalpel select --objective pareto`). */
  pareto: ParetoJson | null;
  stability: StabilityJson | null;
}

/** Reads what a report needs; only run.json is required (a run stopped after extract still gets a report). */
export async function readReportInputs(runDir: string): Promise<ReportInputs> {
  const run = requireRunJson(runDir);
  const has = (file: string) => existsSync(join(runDir, file));
  const selection = has(FILES.selection) ? readJson<SelectionJson>(runDir, FILES.selection) : null;
  if (selection) checkArray(runDir, FILES.selection, 'candidates', selection.candidates);
  const evalDoc = has(FILES.eval) ? readJson<{ results: EvalResult[] }>(runDir, FILES.eval) : null;
  if (evalDoc) checkArray(runDir, FILES.eval, 'results', evalDoc.results);
  return {
    runDir,
    run,
    selection,
    candidates: has(FILES.candidates) ? await loadCandidates(runDir) : null,
    results: evalDoc?.results ?? [],
    responses: readJsonLines<ResponseRow>(runDir, FILES.responses),
    sweep: readOptional<SweepDoc>(runDir, OPTIONAL_FILES.sweep, 'scalpel-sweep/', ['points', 'baseline']),
    sweepResponses: readJsonLines<ResponseRow>(runDir, OPTIONAL_FILES.sweepResponses),
    ability: readOptional<AbilityDoc>(runDir, OPTIONAL_FILES.ability, 'scalpel-ability/', []),
    judge: readOptional<JudgeDoc>(runDir, OPTIONAL_FILES.judge, 'scalpel-judge/', ['rows']),
    pareto: readOptional<ParetoJson>(runDir, FILES.pareto, 'scalpel-pareto/', ['points', 'front']),
    stability: readOptional<StabilityJson>(runDir, OPTIONAL_FILES.stability, 'scalpel-stability/', ['studies']),
  };
}

function readOptional<T extends { format: string }>(
  runDir: string,
  file: string,
  formatPrefix: string,
  arrays: string[],
): T | null {
  if (!existsSync(join(runDir, file))) return null;
  const doc = readJson<T>(runDir, file);
  if (!doc || typeof doc !== 'object' || typeof doc.format !== 'string' || !doc.format.startsWith(formatPrefix))
    throw new ScalpelError(`${join(runDir, file)}: field "format" should start with ${formatPrefix}`);
  for (const field of arrays) checkArray(runDir, file, field, (doc as Record<string, unknown>)[field]);
  return doc;
}

function checkArray(runDir: string, file: string, field: string, value: unknown): void {
  if (!Array.isArray(value)) throw new ScalpelError(`${join(runDir, file)}: field "${field}" should be an array`);
}

/** A JSON-lines file as rows; missing is empty, a bad line is an error naming its line number. */
function readJsonLines<T>(runDir: string, file: string): T[] {
  const p = join(runDir, file);
  if (!existsSync(p)) return [];
  const rows: T[] = [];
  readFileSync(p, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (line.trim() === '') return;
      try {
        rows.push(JSON.parse(line) as T);
      } catch (e) {
        throw new ScalpelError(`${p}: line ${i + 1} is not valid JSON (${(e as Error).message})`);
      }
    });
  return rows;
}
