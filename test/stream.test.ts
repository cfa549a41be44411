// Streaming detokenization (src/tokenizer/stream.ts): what is shown as tokens arrive never has to be taken back,
// never shows a partial character or the start of a stop string, and ends right before a stop string.
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { TextTokenizer } from '../src/tokenizer/tokenizer.js';
import { TextStream } from '../src/tokenizer/stream.js';

const tok = TextTokenizer.load(path.join(process.cwd(), 'models/scalpel-tiny-chat'));
const decode = (ids: readonly number[]) => tok.decode(ids, { skipSpecialTokens: true });

/** Feeds the ids one at a time; returns every chunk shown and the rest given at the end. */
function feed(ids: number[], stops: string[] = []): { chunks: string[]; rest: string; stream: TextStream } {
  const stream = new TextStream(decode, stops);
  const chunks = ids.map((id) => stream.push(id));
  return { chunks, rest: stream.end(), stream };
}

test('one token at a time gives the whole decoded text, multi-byte characters whole', () => {
  for (const text of ['Plain words, then more.', 'Emoji 🙂 and accents: café, naïve — “quotes”.', '数字 and 日本語']) {
    const ids = tok.encode(text, { addSpecialTokens: false });
    const { chunks, rest } = feed(ids);
    assert.equal(chunks.join('') + rest, decode(ids));
    for (const c of chunks) assert.ok(!c.includes('\uFFFD'), `a partial character was shown: ${JSON.stringify(c)}`);
  }
});

test('a stop string is never shown, not even its start, and the text ends before it', () => {
  const text = 'First part. STOP here. Never shown.';
  const ids = tok.encode(text, { addSpecialTokens: false });
  const { chunks, rest, stream } = feed(ids, ['STOP']);
  assert.equal(chunks.join('') + rest, 'First part. ');
  assert.ok(stream.stoppedByString);
  for (let i = 1; i <= chunks.length; i++) assert.ok(!chunks.slice(0, i).join('').includes('S'));
  // A tail that only looks like the start of a stop string is shown at the end.
  const near = tok.encode('Ends with ST', { addSpecialTokens: false });
  const r = feed(near, ['STOP']);
  assert.ok(!r.chunks.join('').endsWith('ST'));
  assert.equal(r.chunks.join('') + r.rest, 'Ends with ST');
  assert.ok(!r.stream.stoppedByString);
});
