// One part of the report: an anchor id, a heading for the table of contents, and its HTML body.
import { notMeasured } from '../html.js';

export interface Section {
  id: string;
  title: string;
  html: string;
}

/** What a section shows in place of its body when the run lacks its file: what is missing and the command that makes it. */
export interface NotMeasured {
  what: string;
  command: string;
}

/**
 * A section drawn from one optional input (ability.json, judge.json, …): its body when the run has the input, else
 * the note that it was not measured, naming the command that measures it.
 */
export function optionalSection<T>(
  id: string,
  title: string,
  input: T | null | undefined,
  missing: NotMeasured,
  body: (input: T) => string,
): Section {
  return { id, title, html: input ? body(input) : notMeasured(missing.what, missing.command) };
}
