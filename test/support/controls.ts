// The test's own check for raw terminal control characters (written apart from src/errors.ts, so that tests do not
// judge the escaping with the code under test): C0 controls, DEL and C1 controls, except those in `keep`.
export function hasRawControls(text: string, keep = ''): boolean {
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    if ((code < 0x20 || (code >= 0x7f && code <= 0x9f)) && !keep.includes(ch)) return true;
  }
  return false;
}
