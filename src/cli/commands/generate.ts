// `scalpel generate`: continuation of one prompt, greedy or sampled, plain (tokenized like transformers'
// tokenizer(text)) or as a chat turn (template rendered with the generation prompt, tokenized without adding special
// tokens again); with --run, under that run's intervention (run-time hooks, the same ones eval applies). The text is
// printed as it is generated, through the scheduler.
import type { Command } from 'commander';
import { ANSWER_KEEPS, ScalpelError, escapeControls } from '../../errors.js';
import { loadModel } from '../../model/load.js';
import { Scheduler, contextMessage } from '../../engine/scheduler.js';
import { type SamplingParams, validateSampling } from '../../engine/sampling.js';
import { TextStream } from '../../tokenizer/stream.js';
import { chatMessages, encodeChat } from '../../tokenizer/chat.js';
import { progressFactory } from '../progress.js';
import { MODEL_HELP, lambdaFlag, openRun, resolveModelFlag } from '../options.js';
import { interventionFromRun, interventionHooks } from '../../method/intervention.js';
import type { HookMap } from '../../engine/types.js';

export const DEFAULT_MAX_NEW_TOKENS = 64;

/** The sampling flags, shared with `scalpel chat`. */
export interface SamplingFlags {
  temperature?: string;
  topP?: string;
  topK?: string;
  seed?: string;
}

interface GenerateFlags extends SamplingFlags {
  model?: string;
  run?: string;
  lambda?: string;
  prompt: string;
  chat?: boolean;
  system?: string;
  maxNewTokens: string;
  temperature?: string;
  topP?: string;
  topK?: string;
  seed?: string;
  stop?: string[];
  json?: boolean;
}

/** A number flag, or undefined when absent; anything but a finite number is a one-line error. */
export function numberFlag(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n)) throw new ScalpelError(`--${flag} ${text}: expected a number`);
  return n;
}

/** --temperature, --top-p, --top-k and --seed as sampling settings (checked by the scheduler at submit). */
export function samplingFlags(flags: SamplingFlags): SamplingParams {
  const sampling: SamplingParams = {
    temperature: numberFlag(flags.temperature, 'temperature') ?? 0,
    topP: numberFlag(flags.topP, 'top-p') ?? 1,
    topK: numberFlag(flags.topK, 'top-k') ?? 0,
    ...(flags.seed !== undefined ? { seed: numberFlag(flags.seed, 'seed') } : {}),
  };
  const flag = { temperature: '--temperature', topP: '--top-p', topK: '--top-k', seed: '--seed' } as const;
  validateSampling(sampling, (field) => flag[field]);
  return sampling;
}

export function register(program: Command): void {
  program
    .command('generate')
    .description('continue one prompt (greedy, or sampled with --temperature) with a Hugging Face model directory')
    .option('--model <model>', `${MODEL_HELP}; with --run, default the run's`)
    .option(
      '--run <dir>',
      "apply a finished run's intervention (its ablation, and activation addition if the run has α ≠ 0)",
    )
    .option('--lambda <x>', "with --run: partial orthogonalization strength λ in [0, 1] (default: the run's)")
    .requiredOption('--prompt <text>', 'the prompt text')
    .option('--chat', "render the prompt as a user turn with the model's chat template")
    .option('--system <text>', 'system prompt for the chat turn (implies --chat)')
    .option('--max-new-tokens <n>', 'stop after this many new tokens', String(DEFAULT_MAX_NEW_TOKENS))
    .option('--temperature <x>', 'sample with this temperature (default 0: greedy)')
    .option('--top-p <x>', 'sample from the smallest set of tokens holding this much probability (default 1: all)')
    .option('--top-k <n>', 'sample from the k most likely tokens (default 0: all)')
    .option('--seed <n>', 'seed of the sampler, for the same sample every time (default: random)')
    .option('--stop <text...>', 'end the text before the first of these strings')
    .option(
      '--json',
      'print {"prompt_tokens": [...], "tokens": [...], "text": "...", "finish_reason": "..."} at the end',
    )
    .action(async (flags: GenerateFlags) => {
      const maxNewTokens = Number(flags.maxNewTokens);
      if (!/^\d+$/.test(flags.maxNewTokens.trim()) || !Number.isSafeInteger(maxNewTokens))
        throw new ScalpelError(`--max-new-tokens: expected a non-negative integer, got '${flags.maxNewTokens}'`);
      const sampling = samplingFlags(flags);
      if (flags.lambda !== undefined && flags.run === undefined)
        throw new ScalpelError('--lambda: only with --run RUN');
      if (flags.model === undefined && flags.run === undefined)
        throw new ScalpelError("required option '--model <model>' not specified");
      const fromRun = flags.run !== undefined ? await openRun(flags.run, flags.model) : null;
      // The run's own ablation mode and α; λ from the flag, else the run's. Read before the weights, to fail fast.
      const applied = fromRun
        ? await interventionFromRun(fromRun.runDir, { run: fromRun.run, lambda: lambdaFlag(flags.lambda) })
        : null;
      const modelDir = fromRun?.modelDir ?? (await resolveModelFlag(flags.model!)).dir;
      const bar = progressFactory()('loading weights (MB)', 1);
      const mb = (bytes: number) => Math.round(bytes / 1e6);
      const { tokenizer, chat, model, eosTokenIds, dir } = await loadModel(modelDir, {
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
      const context = model.args.contextLength;
      if (context !== undefined && maxNewTokens >= context)
        throw new ScalpelError(
          `--max-new-tokens ${maxNewTokens}: the model's context is ${context} positions (max_position_embeddings in ${dir}/config.json), and the prompt needs at least one`,
        );
      if (context !== undefined && promptTokens.length + maxNewTokens > context)
        throw new ScalpelError(
          `--prompt: ${contextMessage(promptTokens.length, maxNewTokens, context, '--max-new-tokens')}`,
        );
      const hooks: HookMap | undefined = applied ? interventionHooks(applied.intervention, model.numLayers) : undefined;
      const decode = (ids: readonly number[]) => tokenizer.decode(ids, { skipSpecialTokens: true });
      const stopStrings = flags.stop ?? [];
      const scheduler = new Scheduler(model, { maxSequences: 1, decode });
      const handle = scheduler.submit({
        prompt: promptTokens,
        maxNewTokens,
        hooks,
        sampling,
        stopTokenIds: eosTokenIds,
        stopStrings,
      });
      // Text is shown as it settles: never a partial character, never the start of a stop string.
      const stream = new TextStream(decode, stopStrings);
      for await (const token of handle) {
        const fresh = stream.push(token);
        if (!flags.json && fresh) process.stdout.write(escapeControls(fresh, ANSWER_KEEPS));
      }
      const result = await handle.result;
      const rest = stream.end();
      if (flags.json) {
        const out = { prompt_tokens: promptTokens, tokens: result.tokens, text: stream.text };
        process.stdout.write(`${JSON.stringify({ ...out, finish_reason: result.finishReason })}\n`);
      } else process.stdout.write(`${escapeControls(rest, ANSWER_KEEPS)}\n`);
    });
}
