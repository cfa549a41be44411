// `scalpel gate --run RUN` as a library call: the run's model, its evaluation sets kept out of the gate's data, and
// the gate fitted and written beside the run's other files (gate.ts).
import type { Backend } from './backend.js';
import { loadEvalSets } from './datasets.js';
import { fitGate, type GateJson } from './gate.js';
import { type RunOptions, stageProgress } from './pipeline.js';
import { checkSameModel, modelFingerprint, requireRunJson } from './rundir.js';

export async function fitRunGate(o: RunOptions, opts: { flagged?: number; seed?: number } = {}): Promise<GateJson> {
  const run = requireRunJson(o.runDir);
  const fingerprint = modelFingerprint(o.modelDir);
  checkSameModel(run, o.runDir, o.modelDir, fingerprint);
  // The run's own evaluation sets (which may be user files) are kept out of the gate's data as well.
  const evalRows = loadEvalSets(o.config, o.dataDir).map((s) => s.prompts);
  const backend: Backend = typeof o.backend === 'function' ? await o.backend() : o.backend;
  const log = o.log ?? (() => {});
  const t0 = performance.now();
  const json = await fitGate({
    backend,
    runDir: o.runDir,
    fingerprint,
    dataDir: o.dataDir,
    seed: opts.seed ?? o.config.seed,
    flagged: opts.flagged,
    evalRows,
    progress: (label, total) => stageProgress(o.progress, label, total),
    log,
  });
  log(`gate: ${Math.round(performance.now() - t0) / 1000}s`);
  return json;
}
