// What the pipeline (pipeline.ts) hands each stage (extract.ts, select.ts, evaluate.ts). The pipeline owns the
// bookkeeping: it loads the model once, counts forward passes and time per stage, and writes run.json when a stage
// finishes. A stage does the method's work, writes its own files and records what it found in `run`.
import type { Backend, OnProgress } from './backend.js';
import type { MethodConfig } from './config.js';
import type { RunJson } from './rundir.js';

export interface StageProgress {
  /** For the backend's onProgress. */
  cb: OnProgress;
  /** One more unit done. */
  bump(): void;
  stop(): void;
}

export interface StageContext {
  config: MethodConfig;
  /** The model, with every call counted towards the stage's forward passes. */
  backend: Backend;
  runDir: string;
  /** The model's fingerprint, stamped into the files a stage writes. */
  fingerprint: string;
  /** run.json in memory; the pipeline writes it when the stage finishes. */
  run: RunJson;
  progress(label: string, total: number): StageProgress;
  log(line: string): void;
}
