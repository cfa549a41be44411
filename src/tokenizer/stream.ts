// Streaming detokenization: turns a growing list of generated token ids into text that can be shown as it comes.
// Text is held back while it could still change: an incomplete UTF-8 character at the end (the decoder shows it as
// U+FFFD until its last byte arrives) and any tail that could be the start of a stop string, which must never be
// shown. Once a stop string appears, the text ends right before it (as OpenAI-compatible servers do).

export class TextStream {
  private readonly tokens: number[] = [];
  private shown = '';
  private stopped = false;

  constructor(
    private readonly decode: (ids: readonly number[]) => string,
    private readonly stopStrings: readonly string[] = [],
  ) {}

  /** The text shown so far. */
  get text(): string {
    return this.shown;
  }

  /** Whether a stop string has appeared (the text is final). */
  get stoppedByString(): boolean {
    return this.stopped;
  }

  /** Adds tokens; returns the text that became safe to show (possibly empty). */
  push(...ids: number[]): string {
    if (this.stopped) return '';
    this.tokens.push(...ids);
    return this.advance(false);
  }

  /** The generation ended: returns the rest of the text (up to a stop string, if one appeared). */
  end(): string {
    return this.stopped ? '' : this.advance(true);
  }

  private advance(final: boolean): string {
    const full = this.decode(this.tokens);
    let visible = full;
    const cut = firstStop(full, this.stopStrings);
    if (cut >= 0) {
      visible = full.slice(0, cut);
      this.stopped = true;
    } else if (!final) {
      visible = full.slice(0, full.length - heldTail(full, this.stopStrings));
    }
    // Decoding more tokens only appends, except where held text settles; never take back what was shown.
    if (!visible.startsWith(this.shown)) return '';
    const fresh = visible.slice(this.shown.length);
    this.shown = visible;
    return fresh;
  }
}

/** Index of the earliest stop string in `text`, or −1. */
function firstStop(text: string, stops: readonly string[]): number {
  let at = -1;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && (at < 0 || i < at)) at = i;
  }
  return at;
}

/** How many characters at the end of `text` must wait: an unfinished character, or the start of a stop string. */
function heldTail(text: string, stops: readonly string[]): number {
  let held = 0;
  for (const s of stops)
    for (let n = Math.min(s.length - 1, text.length); n > held; n--)
      if (text.endsWith(s.slice(0, n))) {
        held = n;
        break;
      }
  let partial = 0;
  while (partial < text.length && text[text.length - 1 - partial] === '\uFFFD') partial++;
  return Math.max(held, partial);
}
