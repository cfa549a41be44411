// User-facing errors: one line naming the file, the field and what was expected. The CLI prints the message alone
// and exits 1; anything else that escapes is a bug and keeps its stack trace.
//
// Text from outside (a model folder, a prompt file, a request, a model's output) may hold terminal control
// sequences: ESC [31m recolours, ESC ]0;…BEL retitles, C1 CSI (U+009B) does both on some terminals. Such text is
// never written to a terminal raw: the helpers below show every control character as \xNN.

/** C0 controls, DEL, C1 controls, and the bidirectional overrides that reorder what a terminal shows. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is this regex's job.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

const hex = (ch: string): string => {
  const code = ch.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
};

/**
 * `text` with every control character shown as \xNN, except those in `keep` (e.g. '\n\t' for a model's answer,
 * which the user asked to read over several lines).
 */
export function escapeControls(text: string, keep = ''): string {
  return text.replace(CONTROL, (ch) => (keep.includes(ch) ? ch : hex(ch)));
}

/**
 * What a model's answer keeps when shown to the user who asked for it: its lines and tabs. Everything else a model
 * can emit (ESC included) is shown escaped.
 */
export const ANSWER_KEEPS = '\n\t';

/**
 * Untrusted text quoted for a message: in double quotes, backslashes and quotes escaped, control characters as
 * \xNN, cut to `max` characters (an error names the value, it need not repeat a whole file).
 */
export function quoteUntrusted(value: unknown, max = 200, quote: '"' | "'" = '"'): string {
  const text = typeof value === 'string' ? value : String(JSON.stringify(value) ?? value);
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  const escaped = cut.replace(/\\/g, '\\\\').replaceAll(quote, `\\${quote}`);
  return `${quote}${escapeControls(escaped)}${quote}`;
}

export class ScalpelError extends Error {
  override readonly name = 'ScalpelError';
  constructor(message: string) {
    // Messages quote files and flags; whatever they quote, the message stays one line with no control characters.
    super(escapeControls(message));
  }
}

/** Throws a ScalpelError when the condition fails. */
export function check(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new ScalpelError(typeof message === 'string' ? message : message());
}
