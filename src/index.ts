// Scalpel's library API: what a TypeScript user calls to load a model, run the method or one stage of it, turn a
// run into an intervention, generate with it (the scheduler) and bake it into weights. The CLI is a thin layer over
// the same functions.

// Models: load a Hugging Face folder; its tokenizer and chat template.
export { type LoadedModel, type LoadModelOptions, loadEngineModel, loadModel } from './model/load.js';
export { readModelDir } from './model/files.js';
// A model given as a folder or as a Hub repo id (org/name[@revision]), downloaded into the Hugging Face cache.
export {
  type HubSource,
  hubSettings,
  type ResolvedModel,
  type ResolveOptions,
  resolveModel,
} from './hub/resolve.js';
export { TextTokenizer } from './tokenizer/tokenizer.js';
export { type ChatMessage, ChatTemplate, chatMessages, encodeChat, postInstructionSuffix } from './tokenizer/chat.js';
export {
  ARCHITECTURES,
  type Architecture,
  findArchitecture,
  parseConfig,
  SUPPORTED_MODEL_TYPES,
} from './arch/index.js';

// The engine: the forward pass, hooks, kernels, batch helpers and the generation scheduler.
export type { Activation, LayerArgs, ModelArgs, RopeSpec } from './engine/args.js';
export * from './engine/types.js';
export { type LayerWeights, Model, type Step, type Weights } from './engine/model.js';
export { KVCache } from './engine/cache.js';
export {
  DEFAULT_BATCH_SIZE,
  type GenerateOptions,
  greedyGenerate,
  lastLogits,
  pack,
  releaseCache,
  type RunOptions,
} from './engine/generate.js';
export {
  type FinishReason,
  Scheduler,
  SchedulerFullError,
  type SchedulerOptions,
  SequenceHandle,
  type SequenceRequest,
  type SequenceResult,
} from './engine/scheduler.js';
export { type SamplingParams, validateSampling } from './engine/sampling.js';
export { getKernels } from './engine/kernels/index.js';

// The method: settings, the pipeline and its stages, interventions, baking.
export { defaultConfig, type MethodConfig, validateConfig } from './method/config.js';
export { DATASETS, type DatasetSpec, loadPromptSet } from './method/datasets.js';
export { fetchDatasets, type FetchedFile } from './method/fetch.js';
export { FILE_SOURCES, type FileSource, datasetCacheDir } from './method/sources.js';
export type { Backend } from './method/backend.js';
export { engineBackend, loadEngineBackend } from './method/engine-backend.js';
export {
  type EvalResult,
  evaluateModel,
  evaluateRun,
  type ModelEvalOptions,
  type PipelineResult,
  type RunOptions as PipelineOptions,
  runPipeline,
  type SelectionJson,
  type Stage,
} from './method/pipeline.js';
export {
  type ActAdd,
  type Intervention,
  type InterventionRequest,
  type InterventionSettings,
  interventionFromRun,
  interventionHooks,
  type RunIntervention,
  validateIntervention,
} from './method/intervention.js';
export { type BakeOptions, type BakeResult, bakeAblation, bakeableDirection } from './method/bake.js';
export { readRunJson, type RunJson } from './method/rundir.js';
// `scalpel sweep`: a run evaluated at many settings in one shared generation pass (sweep.json).
export { runSweep, type SweepJson, type SweepPoint, type SweepRequest } from './method/sweep.js';

// Files and errors.
export { readSafetensors, readSafetensorsHeader, writeSafetensors } from './io/safetensors.js';
export { writeFileAtomic } from './io/atomic.js';
export type { Tensor, WeightDType } from './tensor.js';
export { ScalpelError } from './errors.js';

// The OpenAI-compatible server (`scalpel serve`).
export { createServer, type ScalpelServer, type ServeOptions } from './serve/server.js';
