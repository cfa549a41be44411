// `scalpel eval --endpoint URL`: the flags that make evaluation generate through an OpenAI-compatible server
// (src/method/endpoint-backend.ts) instead of the local engine.
import { ScalpelError } from '../errors.js';
import type { Backend } from '../method/backend.js';
import { openEndpointBackend } from '../method/endpoint-backend.js';
import { apiKeyFrom, checkBaseUrl } from '../method/openai-endpoint.js';
import { countFlag } from './judge.js';
import type { CommonOpts } from './options.js';

export const ENDPOINT_OPTIONS: [string, string][] = [
  [
    '--endpoint <url>',
    "without --run: generate through an OpenAI-compatible server at this base URL (http://HOST:PORT/v1; vLLM, TGI, llama.cpp's server, Ollama, scalpel serve) instead of loading a model; greedy (temperature 0), the server's chat template",
  ],
  ['--endpoint-model <name>', 'the model id on the endpoint (default: the first one its /models lists)'],
  ['--endpoint-key-env <name>', "environment variable holding the endpoint's API key (default OPENAI_API_KEY)"],
  ['--endpoint-concurrency <n>', 'requests in flight at once (default 4)'],
];

export const ENDPOINT_FLAG_NAMES = ['endpoint', 'endpointModel', 'endpointKeyEnv', 'endpointConcurrency'] as const;

/** The endpoint the flags ask for, checked before anything runs; null without --endpoint. */
export function endpointFlags(
  opts: CommonOpts,
): null | { open(system: string | undefined, log: (line: string) => void): Promise<Backend> } {
  if (opts['endpoint'] === undefined) {
    for (const name of ENDPOINT_FLAG_NAMES.slice(1))
      if (opts[name] !== undefined)
        throw new ScalpelError(`--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: only with --endpoint URL`);
    return null;
  }
  const label = `--endpoint ${String(opts['endpoint'])}`;
  const baseUrl = checkBaseUrl(String(opts['endpoint']), label);
  const concurrency = countFlag(opts['endpointConcurrency'], '--endpoint-concurrency', 4);
  const apiKey = apiKeyFrom(opts['endpointKeyEnv'] as string | undefined, '--endpoint-key-env');
  const model = opts['endpointModel'] as string | undefined;
  return {
    async open(system, log) {
      const b = await openEndpointBackend({
        baseUrl,
        label,
        concurrency,
        ...(apiKey !== undefined ? { apiKey } : {}),
        ...(model !== undefined ? { model } : {}),
        ...(system !== undefined ? { system } : {}),
        onRetry: (why, ms) => log(`endpoint: ${why}; retrying in ${(ms / 1000).toFixed(1)} s`),
      });
      log(`endpoint: ${baseUrl}, model ${JSON.stringify(b.model)}`);
      return b;
    },
  };
}
