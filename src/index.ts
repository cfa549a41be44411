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
export { type ScoredSequence, sequenceLogProbs } from './engine/logprobs.js';
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
// A second judge and evaluation through any OpenAI-compatible server.
export { type EndpointBackend, type EndpointBackendOptions, openEndpointBackend } from './method/endpoint-backend.js';
export { type JudgeLabel, parseJudgeLabel, RUBRIC_VERSION, rubricMessages } from './method/judge-rubric.js';
export {
  connectJudge,
  type JudgeJson,
  type JudgeOptions,
  type JudgeRow,
  type JudgeSpec,
  judgeRates,
  judgeRows,
  parseJudgeSpec,
  writeJudgeJson,
} from './method/llm-judge.js';
export { type EndpointOptions, OpenAIEndpoint } from './method/openai-endpoint.js';
export { type GgufExportOptions, type GgufExportResult, exportGguf } from './method/export-gguf.js';
export { type ModelGgufOptions, writeModelGguf } from './model/gguf-export.js';
export { type RankOneAdapter, rankOneAdapter, writeGgufLora, writePeftAdapter } from './method/lora.js';
export { writeControlVector } from './method/control-vector.js';
export { readRunJson, type RunJson } from './method/rundir.js';
// `scalpel sweep`: a run evaluated at many settings in one shared generation pass (sweep.json).
export { runSweep, type SweepJson, type SweepPoint, type SweepRequest } from './method/sweep.js';
export {
  type Ability,
  type AbilityJson,
  firstTokenKl,
  measureAbility,
  prepareAbility,
} from './method/ability.js';
export { type AbilityRunOptions, runAbility } from './method/ability-run.js';
// `scalpel report`: a run directory as one self-contained HTML page; the statistics its headline uses.
export { buildReport, writeReport } from './report/build.js';
export { mcnemarExact, wilsonInterval } from './method/stats.js';
// Conditional ablation (`scalpel gate`, --gate): the harmfulness gate and the scheduler's per-sequence switch.
export { type GateJson, fitGate, loadGate } from './method/gate.js';
export { fitRunGate } from './method/gate-run.js';
export type { GateDecision, SequenceGate } from './engine/scheduler.js';
export { type LinearProbe, fitLogistic } from './method/probe.js';

// Files and errors.
export { readSafetensors, readSafetensorsHeader, writeSafetensors } from './io/safetensors.js';
export { writeFileAtomic } from './io/atomic.js';
export type { Tensor, WeightDType } from './tensor.js';
export { ScalpelError } from './errors.js';

// The OpenAI-compatible server (`scalpel serve`).
export { createServer, type ScalpelServer, type ServeOptions } from './serve/server.js';
