// `scalpel serve`: the OpenAI-compatible server (src/serve/) over one model, with a run's intervention when --run is
// given. Loads the weights, listens (127.0.0.1 by default), and on SIGTERM or SIGINT stops accepting, lets the
// requests in flight finish, then exits 0.
import * as path from 'node:path';
import type { Command } from 'commander';
import { ScalpelError, escapeControls } from '../../errors.js';
import { loadGate } from '../../method/gate.js';
import { loadModel } from '../../model/load.js';
import { createServer } from '../../serve/server.js';
import { MODEL_HELP, openRun, resolveModelFlag } from '../options.js';
import { progressFactory } from '../progress.js';

interface ServeFlags {
  model?: string;
  run?: string;
  host: string;
  port: string;
  apiKey?: string;
  maxSequences: string;
  maxQueue: string;
  gate?: boolean;
}

function intFlag(text: string, flag: string, min: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min)
    throw new ScalpelError(`--${flag} ${text}: expected an integer ≥ ${min}`);
  return n;
}

export function register(program: Command): void {
  program
    .command('serve')
    .description('serve a model (and a run’s edit) over an OpenAI-compatible HTTP API')
    .option('--model <model>', `${MODEL_HELP}; with --run, default the run's`)
    .option('--run <dir>', "serve this finished run's intervention as the default model (and λ variants)")
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0: any free port)', '8000')
    .option('--api-key <key>', 'require Authorization: Bearer KEY (default: $SCALPEL_API_KEY, else none)')
    .option('--max-sequences <n>', 'sequences generated at once, sharing each forward pass', '16')
    .option('--max-queue <n>', 'requests waiting for room; beyond it the server answers 429', '64')
    .option('--gate', "with --run: edit only the requests whose prompt the run's gate clears (`scalpel gate`)")
    .action(async (flags: ServeFlags) => {
      const port = intFlag(flags.port, 'port', 0);
      if (port > 65535) throw new ScalpelError(`--port ${flags.port}: expected a port number ≤ 65535`);
      const maxSequences = intFlag(flags.maxSequences, 'max-sequences', 1);
      const maxQueue = intFlag(flags.maxQueue, 'max-queue', 0);
      if (flags.model === undefined && flags.run === undefined)
        throw new ScalpelError("required option '--model <model>' not specified");
      if (flags.gate && flags.run === undefined) throw new ScalpelError('--gate: only with --run RUN');
      const fromRun = flags.run !== undefined ? await openRun(flags.run, flags.model) : null;
      const resolved = fromRun
        ? { dir: fromRun.modelDir, hub: fromRun.run.model.hub }
        : await resolveModelFlag(flags.model!);
      const modelDir = resolved.dir;
      const bar = progressFactory()('loading weights (MB)', 1);
      const mb = (bytes: number) => Math.round(bytes / 1e6);
      const loaded = await loadModel(modelDir, {
        onProgress: (done, total) => bar.update(mb(done), mb(total)),
      }).finally(() => bar.stop());
      const gate =
        fromRun && flags.gate
          ? (await loadGate(fromRun.runDir, loaded.model.width, fromRun.run.model.fingerprint)).gate
          : undefined;
      // A folder is served under its basename, a Hub id as it is.
      const name = resolved.hub?.repo ?? path.basename(modelDir);
      const server = createServer({
        loaded,
        name,
        run: fromRun ? { dir: fromRun.runDir, json: fromRun.run } : undefined,
        ...(gate ? { gate } : {}),
        apiKey: flags.apiKey ?? process.env['SCALPEL_API_KEY'],
        maxSequences,
        maxQueue,
      });
      const url = await server.listen({ host: flags.host, port });
      // The aliases carry the model's name, which is the user's folder or Hub id: shown escaped.
      const models = escapeControls(server.variants.aliases().join(', '));
      process.stderr.write(`scalpel serve: ${url}/v1 (models: ${models})\n`);
      let closing = false;
      const stop = (signal: string) => {
        if (closing) return;
        closing = true;
        process.stderr.write(`scalpel serve: ${signal}, finishing the requests in flight\n`);
        server.close().then(
          () => process.exit(0),
          (err: unknown) => {
            process.stderr.write(`scalpel serve: ${escapeControls(String(err))}\n`);
            process.exit(1);
          },
        );
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
}
