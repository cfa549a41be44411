// Rendering a chat template within a budget. A template comes with the model folder, so it is untrusted code: a
// loop over range(10**9), a macro that calls itself twice per call, or a string doubled in a loop would otherwise
// hold the CPU for minutes or fill the memory. @huggingface/jinja has no limits of its own, so its interpreter is
// run here with three: the number of evaluation steps (bounds time), the length of any one string or list a step
// produces (bounds memory), and range() refusing to build a list longer than that before it builds it.
import { Environment, Interpreter, type Template } from '@huggingface/jinja';

/**
 * Evaluation steps one render may take: a base, plus an allowance per message (a template's real work grows with
 * the conversation). Measured on the fixture models' templates (Llama, Qwen2/3, Gemma 2/3, Mistral, Phi-3 and the
 * project model): 60–180 steps for one message, at most 45 per message for 100 messages; a runaway recursion
 * of macros spends the base in about 0.3 s.
 */
export const RENDER_STEPS_BASE = 20_000;
export const RENDER_STEPS_PER_MESSAGE = 100;
/** Longest list range() or any step may produce. */
export const MAX_RENDER_ITEMS = 100_000;
/** Longest string a step may produce, beyond the size of the messages themselves. */
export const MAX_RENDER_CHARS = 4 * 1024 * 1024;

/** Thrown when a render goes over its budget (the caller turns it into a ScalpelError naming the file). */
export class RenderBudgetError extends Error {}

interface Counted {
  type: string;
  value: unknown;
}

// The package's type declarations import './runtime' without an extension, which NodeNext cannot follow: the two
// classes are described here by the members used.
interface JinjaInterpreter {
  evaluate(statement: unknown, environment: unknown): unknown;
  run(program: unknown): unknown;
  evaluateArguments(args: unknown, environment: unknown): [Counted[], Map<string, Counted>];
}
const InterpreterBase = Interpreter as unknown as new (env: unknown) => JinjaInterpreter;
const EnvironmentClass = Environment as unknown as new () => { set(name: string, value: unknown): unknown };

/** Nodes that build a new value (a list from range() or a filter, a longer string): they pay for its size. */
const BUILDERS = new Set(['CallExpression', 'FilterExpression', 'BinaryExpression']);

class BudgetedInterpreter extends InterpreterBase {
  private cost = 0;

  constructor(
    env: unknown,
    private readonly maxChars: number,
    private readonly maxSteps: number,
  ) {
    super(env);
  }

  /** One unit per evaluation step, plus one per item of every list a step builds (a loop over it costs that). */
  private spend(units: number): void {
    this.cost += units;
    if (this.cost > this.maxSteps)
      throw new RenderBudgetError(`it took more than ${this.maxSteps} evaluation steps (a runaway loop?)`);
  }

  override evaluate(statement: unknown, environment: unknown): unknown {
    this.spend(1);
    const result = super.evaluate(statement, environment);
    const r = result as Counted;
    if (r.type === 'StringValue' && (r.value as string).length > this.maxChars)
      throw new RenderBudgetError(`it built a string of more than ${this.maxChars} characters`);
    if (r.type === 'ArrayValue') {
      const n = (r.value as unknown[]).length;
      if (n > MAX_RENDER_ITEMS) throw new RenderBudgetError(`it built a list of more than ${MAX_RENDER_ITEMS} items`);
      if (BUILDERS.has((statement as { type?: string })?.type ?? '')) this.spend(n);
    }
    return result;
  }

  /**
   * Filters and functions take widths and counts (indent, center, tojson's indent, wordwrap, batch): one over the
   * item budget would build a string or list too large in a single step, before any check on its result could run.
   */
  override evaluateArguments(args: unknown, environment: unknown): [Counted[], Map<string, Counted>] {
    const out = super.evaluateArguments(args, environment);
    for (const v of [...out[0], ...out[1].values()])
      if ((v.type === 'IntegerValue' || v.type === 'FloatValue') && Math.abs(v.value as number) > MAX_RENDER_ITEMS)
        throw new RenderBudgetError(`an argument of ${v.value} is over the limit of ${MAX_RENDER_ITEMS}`);
    return out;
  }
}

/** Python's range(), refusing lists longer than the budget before building them. */
function boundedRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  for (const v of [start, stop, step])
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new Error('range() takes integers');
  if (step === 0) throw new Error('range() step must not be zero');
  const count = Math.max(0, Math.ceil((stop - start) / step));
  if (count > MAX_RENDER_ITEMS) throw new RenderBudgetError(`range() of ${count} items is over ${MAX_RENDER_ITEMS}`);
  return Array.from({ length: count }, (_, i) => start + i * step);
}

/** strftime_now(format) as @huggingface/jinja has it (Llama 3.x templates print today's date with it). */
function strftimeNow(format: string): string {
  const now = new Date();
  const pad2 = (n: number) => String(n).padStart(2, '0');
  const month = (style: 'long' | 'short') => new Intl.DateTimeFormat(undefined, { month: style }).format(now);
  return String(format).replace(/%[YmdbBHM%]/g, (token) => {
    switch (token) {
      case '%Y':
        return String(now.getFullYear());
      case '%m':
        return pad2(now.getMonth() + 1);
      case '%d':
        return pad2(now.getDate());
      case '%b':
        return month('short');
      case '%B':
        return month('long');
      case '%H':
        return pad2(now.getHours());
      case '%M':
        return pad2(now.getMinutes());
      default:
        return '%';
    }
  });
}

/**
 * Renders a parsed template with `variables`, as Template.render does (the same globals), within the budget. The
 * size of the input (`inputChars`, `messages`) widens the limits, so long conversations still render.
 */
export function renderWithinBudget(
  template: Template,
  variables: Record<string, unknown>,
  input: { chars: number; messages: number },
): string {
  const env = new EnvironmentClass();
  const globals: Record<string, unknown> = {
    false: false,
    true: true,
    none: null,
    False: false,
    True: true,
    None: null,
    raise_exception: (message: unknown) => {
      throw new Error(String(message));
    },
    range: boundedRange,
    strftime_now: strftimeNow,
  };
  for (const [key, value] of Object.entries({ ...globals, ...variables })) env.set(key, value);
  const interpreter = new BudgetedInterpreter(
    env,
    MAX_RENDER_CHARS + 4 * input.chars,
    RENDER_STEPS_BASE + RENDER_STEPS_PER_MESSAGE * input.messages,
  );
  const result = interpreter.run(template.parsed) as Counted;
  return result.value as string;
}
