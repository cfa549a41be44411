// Text into HTML, safely. Prompts and model outputs are untrusted: every piece of text goes through `esc`, which
// escapes markup and shows control characters (other than newline and tab) as \xNN so nothing invisible hides in
// an example. Small builders for the tables and notes every section uses.

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** HTML-escapes text and makes control characters visible (C0 except \n and \t, DEL, C1, and the line/paragraph separators). */
export function esc(text: unknown): string {
  return String(text)
    .replace(/[&<>"']/g, (c) => ENTITIES[c]!)
    .replace(/\p{Cc}|[\u2028\u2029]/gu, (c) => {
      if (c === '\n' || c === '\t') return c;
      const code = c.charCodeAt(0);
      return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16)}`;
    });
}

/** A raw HTML fragment, built only by the helpers here or from `esc`: it is not escaped again. */
export interface Html {
  readonly html: string;
}

export const raw = (html: string): Html => ({ html });

/** Text or an already-built fragment, as HTML. */
export function cell(v: string | number | Html | null | undefined): string {
  if (v === null || v === undefined) return '–';
  return typeof v === 'object' ? v.html : esc(v);
}

/** A table with a header row; `numeric` columns are right-aligned. Wide tables scroll inside their box. */
export function table(head: string[], rows: (string | number | Html | null)[][], numeric: number[] = []): string {
  const cls = (i: number) => (numeric.includes(i) ? ' class="num"' : '');
  return `<div class="table-wrap"><table><thead><tr>${head.map((h, i) => `<th${cls(i)}>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((v, i) => `<td${cls(i)}>${cell(v)}</td>`).join('')}</tr>`)
    .join('')}</tbody></table></div>`;
}

/** The note a section shows in place of what it cannot draw: why, and the command that makes it. */
export function notMeasured(what: string, command: string): string {
  return `<p class="note">${esc(what)}: not measured; run <code>${esc(command)}</code></p>`;
}

export const pct = (x: number, digits = 1) => `${(100 * x).toFixed(digits)}%`;

/** A number for a table: fixed digits, or – when absent. */
export const fixed = (x: number | null | undefined, digits = 3) =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits);
