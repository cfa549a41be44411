// `scalpel report`: a run directory → one self-contained HTML file. Reads the run's files once (inputs.ts), pairs
// baseline and edited answers (paired.ts), builds each section (sections/) and wraps them in the page (page.ts).
// Charts are drawn to SVG here, so the file opens with no script and no network.
import { resolve } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { readReportInputs } from './inputs.js';
import { page } from './page.js';
import { pairDatasets } from './paired.js';
import { abilitySection } from './sections/ability.js';
import { candidatesSection } from './sections/candidates.js';
import { examplesSection } from './sections/examples.js';
import { describeSite, headlineSection, modelName } from './sections/headline.js';
import { judgeSection } from './sections/judge.js';
import { paretoSection } from './sections/pareto.js';
import { provenanceSection } from './sections/provenance.js';
import { stabilitySection } from './sections/stability.js';
import { sweepSection } from './sections/sweep.js';

export const REPORT_FILE = 'report.html';

/** The report of the run in `runDir`, as an HTML string. */
export async function buildReport(runDir: string): Promise<string> {
  const inputs = await readReportInputs(resolve(runDir));
  const paired = pairDatasets(inputs.results, inputs.responses);
  const sections = [
    await headlineSection(inputs, paired),
    await sweepSection(inputs),
    stabilitySection(inputs),
    await candidatesSection(inputs),
    ...[await paretoSection(inputs)].filter((s) => s !== null),
    examplesSection(inputs, paired),
    abilitySection(inputs),
    judgeSection(inputs),
    provenanceSection(inputs),
  ].filter((s) => s !== null);
  const made = inputs.run.stages.eval?.finished_at ?? inputs.run.stages.select?.finished_at;
  return page(
    `Scalpel report: ${modelName(inputs)}`,
    `Chosen site: ${describeSite(inputs)}. Run ${inputs.runDir}${made ? `, finished ${made}` : ''}.`,
    sections,
  );
}

/** Builds the report and writes it atomically to `out` (default RUN/report.html); returns the path and size. */
export async function writeReport(runDir: string, out?: string): Promise<{ path: string; bytes: number }> {
  const html = await buildReport(runDir);
  const path = resolve(out ?? resolve(runDir, REPORT_FILE));
  await writeFileAtomic(path, html);
  return { path, bytes: Buffer.byteLength(html) };
}
