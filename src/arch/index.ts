// The architecture registry: config.json's model_type (or, failing that, its architectures list) picks the module.
import { ScalpelError, quoteUntrusted } from '../errors.js';
import { Config, type Architecture, type ModelArgs } from './base.js';
import { llama } from './llama.js';
import { mistral } from './mistral.js';
import { qwen2 } from './qwen2.js';
import { qwen3 } from './qwen3.js';
import { gemma2 } from './gemma2.js';
import { gemma3 } from './gemma3.js';
import { phi3 } from './phi3.js';

export * from './base.js';

export const ARCHITECTURES: readonly Architecture[] = [llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3];

/** The supported model_type values, for error messages and docs. */
export const SUPPORTED_MODEL_TYPES: readonly string[] = ARCHITECTURES.flatMap((a) => a.modelTypes);

/** Finds the architecture of a config.json; unsupported ones get an error listing what is supported. */
export function findArchitecture(raw: Record<string, unknown>, file = 'config.json'): Architecture {
  const modelType = raw['model_type'];
  const classes = Array.isArray(raw['architectures']) ? (raw['architectures'] as unknown[]).map(String) : [];
  const byType = ARCHITECTURES.find((a) => typeof modelType === 'string' && a.modelTypes.includes(modelType));
  if (byType) return byType;
  const byClass = ARCHITECTURES.find((a) => classes.some((c) => a.classes.includes(c)));
  if (byClass && (modelType === undefined || modelType === null)) return byClass;
  const what =
    typeof modelType === 'string'
      ? `model_type ${quoteUntrusted(modelType, 80, "'")}`
      : classes.length
        ? `architectures ${quoteUntrusted(JSON.stringify(classes), 120)}`
        : 'no model_type';
  throw new ScalpelError(
    `${file}: ${what} is not supported; supported model_type values: ${SUPPORTED_MODEL_TYPES.join(', ')}`,
  );
}

/** config.json → the architecture and its ModelArgs. */
export function parseConfig(
  raw: Record<string, unknown>,
  file = 'config.json',
): { arch: Architecture; args: ModelArgs } {
  const arch = findArchitecture(raw, file);
  return { arch, args: arch.args(new Config(raw, file)) };
}
