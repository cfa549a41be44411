// Tokenizer and chat-template parity with transformers, on every fixture that tools/make_fixtures.py wrote.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TextTokenizer } from '../src/tokenizer/tokenizer.js';
import { ChatTemplate, encodeChat, postInstructionSuffix, type ChatMessage } from '../src/tokenizer/chat.js';

interface TokenizerFixture {
  tokenizer_dir: string;
  plain: { text: string; ids: number[] }[];
  chat: { messages: ChatMessage[]; add_generation_prompt: boolean; text: string; ids: number[] }[];
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const folder = path.join(root, 'test/fixtures/tokenizers');
const files = fs.existsSync(folder)
  ? fs
      .readdirSync(folder)
      .filter((f) => f.endsWith('.json'))
      .sort()
  : [];

test('tokenizer fixtures are present (the fixture tokenizers and at least two real ones)', () => {
  assert.ok(files.length >= 3, `expected at least 3 tokenizer fixtures in ${folder}, found ${files.length}`);
});

for (const name of files) {
  test(`tokenizer parity with transformers: ${name}`, () => {
    const fx = JSON.parse(fs.readFileSync(path.join(folder, name), 'utf8')) as TokenizerFixture;
    const dir = path.join(root, fx.tokenizer_dir);
    const tok = TextTokenizer.load(dir);
    assert.ok(fx.plain.length > 0);
    for (const c of fx.plain) assert.deepEqual(tok.encode(c.text), c.ids, `plain ${JSON.stringify(c.text)}`);
    if (fx.chat.length === 0) return;
    const tmpl = ChatTemplate.require(dir);
    for (const c of fx.chat) {
      const opts = { addGenerationPrompt: c.add_generation_prompt };
      assert.equal(tmpl.render(c.messages, opts), c.text, `chat text ${JSON.stringify(c.messages)}`);
      assert.deepEqual(encodeChat(tok, tmpl, c.messages, opts), c.ids, `chat ids ${JSON.stringify(c.messages)}`);
    }
    // The post-instruction tokens are the tail of every generation-prompt fixture whose last message is the user's.
    const single = fx.chat.filter((c) => c.add_generation_prompt && c.messages.at(-1)?.role === 'user');
    for (const c of single) {
      const system =
        c.messages.length === 2 && c.messages[0]!.role === 'system' ? (c.messages[0]!.content as string) : undefined;
      if (c.messages.length > (system === undefined ? 1 : 2)) continue;
      const suffix = postInstructionSuffix(tok, tmpl, { system });
      assert.ok(suffix.length > 0);
      assert.deepEqual(c.ids.slice(-suffix.length), suffix, `post-instruction tokens of ${JSON.stringify(c.messages)}`);
    }
  });
}

// The prompts of the engine fixtures must tokenize to the very ids transformers fed the model.
interface ModelFixture {
  model_dir: string;
  cases: { kind: 'plain' | 'chat'; text?: string; messages?: ChatMessage[]; rendered?: string; input_ids: number[] }[];
}
const expectedFolder = path.join(root, 'test/fixtures/expected');
const modelFixtures = fs.existsSync(expectedFolder)
  ? fs
      .readdirSync(expectedFolder)
      .filter((f) => f.endsWith('.json'))
      .sort()
  : [];
for (const name of modelFixtures) {
  test(`engine fixture prompts tokenize like transformers: ${name}`, () => {
    const fx = JSON.parse(fs.readFileSync(path.join(expectedFolder, name), 'utf8')) as ModelFixture;
    const dir = path.join(root, fx.model_dir);
    const tok = TextTokenizer.load(dir);
    const tmpl = ChatTemplate.load(dir);
    for (const c of fx.cases) {
      if (c.kind === 'plain') {
        assert.deepEqual(tok.encode(c.text!), c.input_ids, `plain ${JSON.stringify(c.text)}`);
      } else {
        assert.ok(tmpl, `${dir} has a chat template`);
        if (c.rendered !== undefined) assert.equal(tmpl.render(c.messages!), c.rendered);
        assert.deepEqual(encodeChat(tok, tmpl, c.messages!), c.input_ids, `chat ${JSON.stringify(c.messages)}`);
      }
    }
  });
}
