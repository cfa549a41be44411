// `scalpel chat`: a terminal chat with a model, its answers streamed as they are generated, the conversation rendered
// with the model's chat template; with --run, slash commands switch between the model alone and the run's edit at
// any λ (the same run-time hooks eval and generate apply). The loop itself is ChatSession (../chat/session.ts).
import type { Command } from 'commander';
import { ScalpelError } from '../../errors.js';
import { loadModel } from '../../model/load.js';
import { loadGate } from '../../method/gate.js';
import { interventionFromRun, interventionHooks } from '../../method/intervention.js';
import { progressFactory } from '../progress.js';
import { MODEL_HELP, lambdaFlag, openRun, resolveModelFlag } from '../options.js';
import { ChatSession, type ChatEdit } from '../chat/session.js';
import { type SamplingFlags, samplingFlags } from './generate.js';

export const DEFAULT_CHAT_MAX_NEW_TOKENS = 256;

interface ChatFlags extends SamplingFlags {
  model?: string;
  run?: string;
  lambda?: string;
  system?: string;
  maxNewTokens: string;
  gate?: boolean;
}

export function register(program: Command): void {
  program
    .command('chat')
    .description('chat with a model in the terminal, with and without a run’s edit (/help inside for commands)')
    .option('--model <model>', `${MODEL_HELP}; with --run, default the run's`)
    .option('--run <dir>', 'a finished run whose edit /lambda, /ablate and /compare apply (the chat starts edited)')
    .option('--lambda <x>', "with --run: the starting λ in [0, 1] (default: the run's)")
    .option('--gate', "with --run: apply the edit only to prompts the run's gate clears (`scalpel gate`)")
    .option('--system <text>', 'system prompt')
    .option('--max-new-tokens <n>', 'longest answer, in tokens', String(DEFAULT_CHAT_MAX_NEW_TOKENS))
    .option('--temperature <x>', 'sample with this temperature (default 0: greedy)')
    .option('--top-p <x>', 'sample from the smallest set of tokens holding this much probability (default 1: all)')
    .option('--top-k <n>', 'sample from the k most likely tokens (default 0: all)')
    .option('--seed <n>', 'seed of the sampler (default: random)')
    .action(async (flags: ChatFlags) => {
      const maxNewTokens = Number(flags.maxNewTokens);
      if (!/^\d+$/.test(flags.maxNewTokens.trim()) || !Number.isSafeInteger(maxNewTokens) || maxNewTokens === 0)
        throw new ScalpelError(`--max-new-tokens: expected a positive integer, got '${flags.maxNewTokens}'`);
      const sampling = samplingFlags(flags);
      const lambda = lambdaFlag(flags.lambda);
      if (lambda !== undefined && flags.run === undefined) throw new ScalpelError('--lambda: only with --run RUN');
      if (flags.model === undefined && flags.run === undefined)
        throw new ScalpelError("required option '--model <model>' not specified");
      if (flags.gate && flags.run === undefined) throw new ScalpelError('--gate: only with --run RUN');
      const fromRun = flags.run !== undefined ? await openRun(flags.run, flags.model) : null;
      // Read the run's intervention before the weights, to fail fast; its λ is the starting one.
      const first = fromRun ? await interventionFromRun(fromRun.runDir, { run: fromRun.run, lambda }) : null;
      const modelDir = fromRun?.modelDir ?? (await resolveModelFlag(flags.model!)).dir;
      const bar = progressFactory()('loading weights (MB)', 1);
      const mb = (bytes: number) => Math.round(bytes / 1e6);
      const loaded = await loadModel(modelDir, {
        onProgress: (done, total) => bar.update(mb(done), mb(total)),
      }).finally(() => bar.stop());
      if (!loaded.chat)
        throw new ScalpelError(
          `${loaded.dir}: no chat template (tokenizer_config.json chat_template or chat_template.jinja); use scalpel generate`,
        );
      const numLayers = loaded.model.numLayers;
      const gate =
        fromRun && flags.gate
          ? (await loadGate(fromRun.runDir, loaded.model.width, fromRun.run.model.fingerprint)).gate
          : undefined;
      const edit: ChatEdit | undefined =
        fromRun && first
          ? {
              run: flags.run!,
              lambda: first.settings.lambda,
              hooksAt: async (x) =>
                interventionHooks(
                  x === first.settings.lambda
                    ? first.intervention
                    : (await interventionFromRun(fromRun.runDir, { run: fromRun.run, lambda: x })).intervention,
                  numLayers,
                ),
              ...(gate ? { gate } : {}),
            }
          : undefined;
      const session = new ChatSession({
        input: process.stdin,
        output: process.stdout,
        terminal: process.stdin.isTTY === true && process.stdout.isTTY === true,
        model: loaded.model,
        tokenizer: loaded.tokenizer,
        chat: loaded.chat,
        eosTokenIds: loaded.eosTokenIds,
        modelLabel: flags.model ?? modelDir,
        edit,
        system: flags.system,
        maxNewTokens,
        sampling,
      });
      await session.run();
    });
}
