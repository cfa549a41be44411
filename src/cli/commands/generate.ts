// `scalpel generate`: greedy continuation of one prompt, plain (tokenized like transformers' tokenizer(text)) or as a
// chat turn (template rendered with the generation prompt, tokenized without adding special tokens again); with
// --run, under that run's intervention (run-time hooks, the same ones eval applies).
import type { Command } from 'commander';
import { ScalpelError } from '../../errors.js';
import { loadModel } from '../../model/load.js';
import { greedyGenerate } from '../../engine/generate.js';
import { chatMessages, encodeChat } from '../../tokenizer/chat.js';
import { progressFactory } from '../progress.js';
import { lambdaFlag, openRun } from '../options.js';
import { interventionFromRun, interventionHooks } from '../../method/intervention.js';
import type { HookMap } from '../../engine/types.js';

export const DEFAULT_MAX_NEW_TOKENS = 64;

interface GenerateFlags {
  model?: string;
  run?: string;
  lambda?: string;
  prompt: string;
  chat?: boolean;
  system?: string;
  maxNewTokens: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('generate')
    .description('greedy-decode a continuation of one prompt with a Hugging Face model directory')
    .option(
      '--model <dir>',
      "model directory (config.json, *.safetensors, tokenizer.json); with --run, default the run's",
    )
    .option(
      '--run <dir>',
      "apply a finished run's intervention (its ablation, and activation addition if the run has α ≠ 0)",
    )
    .option('--lambda <x>', "with --run: partial orthogonalization strength λ in [0, 1] (default: the run's)")
    .requiredOption('--prompt <text>', 'the prompt text')
    .option('--chat', "render the prompt as a user turn with the model's chat template")
    .option('--system <text>', 'system prompt for the chat turn (implies --chat)')
    .option('--max-new-tokens <n>', 'stop after this many new tokens', String(DEFAULT_MAX_NEW_TOKENS))
    .option('--json', 'print {"prompt_tokens": [...], "tokens": [...], "text": "..."}')
    .action(async (flags: GenerateFlags) => {
      const maxNewTokens = Number(flags.maxNewTokens);
      if (!/^\d+$/.test(flags.maxNewTokens.trim()) || !Number.isSafeInteger(maxNewTokens))
        throw new ScalpelError(`--max-new-tokens: expected a non-negative integer, got '${flags.maxNewTokens}'`);
      if (flags.lambda !== undefined && flags.run === undefined)
        throw new ScalpelError('--lambda: only with --run RUN');
      if (flags.model === undefined && flags.run === undefined)
        throw new ScalpelError("required option '--model <dir>' not specified");
      const fromRun = flags.run !== undefined ? openRun(flags.run, flags.model) : null;
      // The run's own ablation mode and α; λ from the flag, else the run's. Read before the weights, to fail fast.
      const applied = fromRun
        ? await interventionFromRun(fromRun.runDir, { run: fromRun.run, lambda: lambdaFlag(flags.lambda) })
        : null;
      const bar = progressFactory()('loading weights (MB)', 1);
      const mb = (bytes: number) => Math.round(bytes / 1e6);
      const { tokenizer, chat, model, eosTokenIds, dir } = await loadModel(fromRun?.modelDir ?? flags.model!, {
        onProgress: (done, total) => bar.update(mb(done), mb(total)),
      }).finally(() => bar.stop());
      const useChat = flags.chat === true || flags.system !== undefined;
      let promptTokens: number[];
      if (useChat) {
        if (!chat)
          throw new ScalpelError(
            `${dir}: no chat template (tokenizer_config.json chat_template or chat_template.jinja); run without --chat`,
          );
        promptTokens = encodeChat(tokenizer, chat, chatMessages(flags.prompt, flags.system), {
          addGenerationPrompt: true,
        });
      } else {
        promptTokens = tokenizer.encode(flags.prompt);
      }
      if (promptTokens.length === 0) throw new ScalpelError('--prompt: the prompt tokenizes to no tokens');
      const hooks: HookMap | undefined = applied ? interventionHooks(applied.intervention, model.numLayers) : undefined;
      const [tokens] = greedyGenerate(model, [promptTokens], { maxNewTokens, eosTokenIds, hooks });
      const text = tokenizer.decode(tokens!, { skipSpecialTokens: true });
      if (flags.json) process.stdout.write(`${JSON.stringify({ prompt_tokens: promptTokens, tokens, text })}\n`);
      else process.stdout.write(`${text}\n`);
    });
}
