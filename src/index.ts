// Scalpel's library API. The CLI is a thin layer over what is exported here.
export * from './engine/types.js';
export { ScalpelError } from './errors.js';
export { loadModel, loadEngineModel, type LoadedModel, type LoadModelOptions } from './model/load.js';
export { Model, type Step, type Weights, type LayerWeights } from './engine/model.js';
export {
  lastLogits,
  greedyGenerate,
  releaseCache,
  pack,
  DEFAULT_BATCH_SIZE,
  type RunOptions,
  type GenerateOptions,
} from './engine/generate.js';
export { KVCache } from './engine/cache.js';
export {
  ARCHITECTURES,
  SUPPORTED_MODEL_TYPES,
  parseConfig,
  findArchitecture,
  type ModelArgs,
  type Architecture,
} from './arch/index.js';
export { getKernels } from './engine/kernels/index.js';
export { readSafetensors, readSafetensorsHeader, writeSafetensors } from './io/safetensors.js';
export { writeFileAtomic } from './io/atomic.js';
export { readModelDir } from './model/files.js';
export { TextTokenizer } from './tokenizer/tokenizer.js';
export { ChatTemplate, encodeChat, postInstructionSuffix } from './tokenizer/chat.js';
