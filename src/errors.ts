// User-facing errors: one line naming the file, the field and what was expected. The CLI prints the message alone
// and exits 1; anything else that escapes is a bug and keeps its stack trace.
export class ScalpelError extends Error {
  override readonly name = 'ScalpelError';
  constructor(message: string) {
    super(message);
  }
}

/** Throws a ScalpelError when the condition fails. */
export function check(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new ScalpelError(typeof message === 'string' ? message : message());
}
