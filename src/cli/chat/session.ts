// The interactive loop of `scalpel chat`: reads lines from an input stream, keeps the conversation (system, user and
// assistant turns), renders it with the model's chat template and streams each answer to the output stream through
// the scheduler, as the baseline model or under a run's edit at some λ. Slash commands switch the mode, the system
// prompt and the history. Ctrl-C (readline's SIGINT, or interrupt()) stops the running answer; the interrupted turn
// (question and partial answer) is dropped from the history. Streams are parameters so tests can drive it with
// PassThrough streams; the command (commands/chat.ts) passes the terminal.
import * as readline from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { ANSWER_KEEPS, ScalpelError, escapeControls } from '../../errors.js';
import type { SamplingParams } from '../../engine/sampling.js';
import { Scheduler, type SequenceGate } from '../../engine/scheduler.js';
import type { HookMap } from '../../engine/types.js';
import type { Model } from '../../engine/model.js';
import { type ChatMessage, type ChatTemplate, encodeChat } from '../../tokenizer/chat.js';
import { TextStream } from '../../tokenizer/stream.js';
import type { TextTokenizer } from '../../tokenizer/tokenizer.js';
import { validateSettings } from '../../method/intervention.js';

/** A run's edit: its λ and the hooks at any λ (built by the method layer; cached here per λ). */
export interface ChatEdit {
  run: string;
  lambda: number;
  hooksAt: (lambda: number) => Promise<HookMap> | HookMap;
  /** `chat --gate`: the edit applies to an answer only when the run's gate clears the conversation's prompt. */
  gate?: SequenceGate;
}

export interface ChatSessionOptions {
  input: Readable;
  output: Writable;
  model: Model;
  tokenizer: TextTokenizer;
  chat: ChatTemplate;
  eosTokenIds: readonly number[];
  /** Shown in the status line. */
  modelLabel: string;
  edit?: ChatEdit;
  system?: string;
  maxNewTokens: number;
  sampling?: SamplingParams;
  /** Whether the input is a terminal (readline then handles keys, echo and Ctrl-C itself). */
  terminal?: boolean;
}

/** What answers: the model alone, or under the run's edit at λ. */
type Mode = { edited: false } | { edited: true; lambda: number };

const HELP = [
  '/lambda X    answer under the run’s edit at λ = X (0 ≤ X ≤ 1)',
  '/ablate      answer under the run’s edit at the current λ',
  '/baseline    answer with the model alone',
  '/system TEXT set the system prompt (/system alone clears it); keeps the history',
  '/reset       clear the history',
  '/compare     answer the last question again, by the baseline and by the edited model',
  '/help        this list',
  '/quit        leave (also Ctrl-D, or Ctrl-C at an empty prompt)',
  'Ctrl-C during an answer stops it; that question and its partial answer leave the history.',
].join('\n');

export class ChatSession {
  private readonly rl: readline.Interface;
  private readonly scheduler: Scheduler;
  private readonly decode: (ids: readonly number[]) => string;
  private readonly hooksCache = new Map<number, Promise<HookMap> | HookMap>();
  private readonly queue: string[] = [];
  private history: ChatMessage[] = [];
  private system: string | undefined;
  private mode: Mode;
  private lambda: number;
  private answering: AbortController | null = null;
  private busy = false;
  private closed = false;
  private quitting = false;
  private finish!: () => void;
  private readonly finished: Promise<void>;

  constructor(private readonly opts: ChatSessionOptions) {
    this.system = opts.system;
    this.lambda = opts.edit?.lambda ?? 1;
    this.mode = opts.edit ? { edited: true, lambda: this.lambda } : { edited: false };
    this.decode = (ids) => opts.tokenizer.decode(ids, { skipSpecialTokens: true });
    this.scheduler = new Scheduler(opts.model, { maxSequences: 1, decode: this.decode });
    this.finished = new Promise((resolve) => {
      this.finish = resolve;
    });
    this.rl = readline.createInterface({
      input: opts.input,
      output: opts.output,
      terminal: opts.terminal ?? false,
      prompt: '> ',
    });
    this.rl.on('line', (line) => {
      this.queue.push(line);
      void this.pump();
    });
    this.rl.on('SIGINT', () => this.interrupt());
    this.rl.on('close', () => {
      this.closed = true;
      void this.pump();
    });
  }

  /** The conversation so far (a copy). */
  get messages(): ChatMessage[] {
    return [...(this.system !== undefined ? [{ role: 'system', content: this.system }] : []), ...this.history];
  }

  /** Prints the status line and the first prompt; resolves when the chat ends (/quit, end of input, Ctrl-C). */
  run(): Promise<void> {
    this.print(
      `scalpel chat · model ${this.opts.modelLabel} · ${this.opts.edit ? `run ${this.opts.edit.run}` : 'no run'}`,
    );
    this.print(`${this.modeText()} · /help for commands`);
    this.rl.prompt();
    return this.finished;
  }

  /** Ctrl-C: stops the running answer; at an empty prompt, quits; otherwise clears the line being typed. */
  interrupt(): void {
    if (this.answering) {
      this.answering.abort();
      return;
    }
    if (this.busy) return;
    if (this.rl.line === '') {
      this.quit();
      return;
    }
    this.rl.write(null, { ctrl: true, name: 'e' });
    this.rl.write(null, { ctrl: true, name: 'u' });
  }

  private quit(): void {
    if (this.quitting) return;
    this.quitting = true;
    this.answering?.abort();
    this.rl.close();
    this.finish();
  }

  /** Every line shown here may carry the model's or the user's text: control characters as \xNN. */
  private print(line: string): void {
    this.opts.output.write(`${escapeControls(line, ANSWER_KEEPS)}\n`);
  }

  private modeText(): string {
    return this.mode.edited ? `mode: edited (λ = ${this.mode.lambda})` : 'mode: baseline';
  }

  /** Handles queued lines one at a time (answers stream asynchronously; lines typed meanwhile wait). */
  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length > 0 && !this.quitting) {
        const line = this.queue.shift()!;
        try {
          await this.handle(line.trim());
        } catch (err) {
          if (!(err instanceof ScalpelError)) throw err;
          this.print(`error: ${err.message}`);
        }
        if (!this.quitting && !this.closed) this.rl.prompt();
      }
    } finally {
      this.busy = false;
    }
    if (this.closed && this.queue.length === 0) this.quit();
  }

  private async handle(line: string): Promise<void> {
    if (line === '') return;
    if (!line.startsWith('/')) {
      await this.ask(line);
      return;
    }
    const space = line.search(/\s/);
    const command = space < 0 ? line : line.slice(0, space);
    const arg = space < 0 ? '' : line.slice(space + 1).trim();
    switch (command) {
      case '/help':
        this.print(HELP);
        return;
      case '/quit':
      case '/exit':
        this.quit();
        return;
      case '/reset':
        this.history = [];
        this.print('history cleared');
        return;
      case '/system':
        this.system = arg === '' ? undefined : arg;
        this.print(this.system === undefined ? 'system prompt cleared' : 'system prompt set');
        return;
      case '/baseline':
        this.mode = { edited: false };
        this.print(this.modeText());
        return;
      case '/ablate':
        this.requireRun('/ablate');
        this.mode = { edited: true, lambda: this.lambda };
        this.print(this.modeText());
        return;
      case '/lambda': {
        this.requireRun('/lambda');
        if (arg === '') throw new ScalpelError('/lambda: expected a number in [0, 1], e.g. /lambda 0.5');
        const lambda = Number(arg);
        validateSettings({ lambda }, () => `/lambda ${arg}`);
        await this.hooks(lambda); // fail here, not at the next question
        this.lambda = lambda;
        this.mode = { edited: true, lambda };
        this.print(this.modeText());
        return;
      }
      case '/compare':
        await this.compare();
        return;
      default:
        throw new ScalpelError(`${command}: unknown command (/help lists them)`);
    }
  }

  private requireRun(command: string): void {
    if (!this.opts.edit) throw new ScalpelError(`${command}: needs a run; start the chat with --run RUN`);
  }

  /** The run's hooks at λ, built once per λ. */
  private hooks(lambda: number): Promise<HookMap> {
    const edit = this.opts.edit!;
    let cached = this.hooksCache.get(lambda);
    if (cached === undefined) {
      cached = Promise.resolve(edit.hooksAt(lambda));
      this.hooksCache.set(lambda, cached);
      cached.catch(() => this.hooksCache.delete(lambda));
    }
    return Promise.resolve(cached);
  }

  private async hooksOf(mode: Mode): Promise<HookMap | undefined> {
    return mode.edited ? this.hooks(mode.lambda) : undefined;
  }

  /** A user turn: answered in the current mode and kept in the history (unless interrupted). */
  private async ask(question: string): Promise<void> {
    const turn: ChatMessage = { role: 'user', content: question };
    const answer = await this.answer([...this.messages, turn], this.mode);
    if (answer === null) return;
    this.history.push(turn, { role: 'assistant', content: answer });
  }

  /** The last question again, by the baseline and the edited model, with the history before it; history unchanged. */
  private async compare(): Promise<void> {
    this.requireRun('/compare');
    const last = this.history.map((m) => m.role).lastIndexOf('user');
    if (last < 0) throw new ScalpelError('/compare: no question yet');
    const messages = this.messages;
    const conversation = messages.slice(0, messages.length - this.history.length + last + 1);
    for (const mode of [{ edited: false }, { edited: true, lambda: this.lambda }] as Mode[]) {
      this.print(mode.edited ? `── edited (λ = ${mode.lambda}) ──` : '── baseline ──');
      if ((await this.answer(conversation, mode)) === null) return;
    }
  }

  /** Streams one answer to the output; its text, or null when Ctrl-C stopped it. */
  private async answer(messages: ChatMessage[], mode: Mode): Promise<string | null> {
    const prompt = encodeChat(this.opts.tokenizer, this.opts.chat, messages, { addGenerationPrompt: true });
    // An answer may run to the end of the model's context, not past it (positions never trained give noise).
    const context = this.opts.model.args.contextLength ?? Number.POSITIVE_INFINITY;
    if (prompt.length >= context)
      throw new ScalpelError(
        `the conversation's ${prompt.length} tokens fill the model's context of ${context} (max_position_embeddings); /reset to start over`,
      );
    const hooks = await this.hooksOf(mode);
    const controller = new AbortController();
    this.answering = controller;
    try {
      const handle = this.scheduler.submit({
        prompt,
        maxNewTokens: Math.min(this.opts.maxNewTokens, context - prompt.length),
        hooks,
        ...(hooks && this.opts.edit?.gate ? { gate: this.opts.edit.gate } : {}),
        sampling: this.opts.sampling,
        stopTokenIds: [...this.opts.eosTokenIds],
        signal: controller.signal,
      });
      const stream = new TextStream(this.decode);
      for await (const token of handle) {
        const fresh = stream.push(token);
        if (fresh) this.opts.output.write(escapeControls(fresh, ANSWER_KEEPS));
      }
      const result = await handle.result;
      if (result.finishReason === 'abort') {
        this.print(' [stopped]');
        return null;
      }
      this.print(stream.end());
      if (result.gate)
        this.print(
          `(gate: score ${result.gate.score.toFixed(2)}, the edit ${result.gate.apply ? 'applied' : 'did not apply'})`,
        );
      return stream.text;
    } finally {
      this.answering = null;
    }
  }
}
