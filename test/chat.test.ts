// `scalpel chat`: the ChatSession loop driven through PassThrough streams (answers equal the scheduler's greedy answer
// for the rendered conversation, and `scalpel generate --run --lambda --chat` under the edit; history, /compare,
// /reset, hooks cached per λ, one-line errors, Ctrl-C), and the real command in a pseudo-terminal under tmux.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { type LoadedModel, loadModel } from '../src/model/load.js';
import { Scheduler } from '../src/engine/scheduler.js';
import type { HookMap } from '../src/engine/types.js';
import { type ChatMessage, encodeChat } from '../src/tokenizer/chat.js';
import { interventionFromRun, interventionHooks } from '../src/method/intervention.js';
import { ChatSession } from '../src/cli/chat/session.js';
import { makeSmallRun, runScalpel } from './support/cli.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = path.join(root, 'bin', 'scalpel.js');
const MODEL = path.join(root, 'models', 'scalpel-tiny-chat');
const MAX = 40;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-chat-'));
const RUN = path.join(tmp, 'run');
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const scalpel = (...args: string[]) => runScalpel(...args).out;

let m: LoadedModel;
before(async () => {
  makeSmallRun(RUN);
  m = await loadModel(MODEL);
});

/** A session on PassThrough streams; send() types a line and waits for the next prompt, returning what was printed. */
function drive(opts: { run: boolean; maxNewTokens?: number }) {
  const input = new PassThrough();
  const output = new PassThrough();
  let text = '';
  output.on('data', (chunk: Buffer) => {
    text += chunk.toString('utf8');
  });
  const built: number[] = [];
  const session = new ChatSession({
    input,
    output,
    model: m.model,
    tokenizer: m.tokenizer,
    chat: m.chat!,
    eosTokenIds: m.eosTokenIds,
    modelLabel: 'tiny',
    maxNewTokens: opts.maxNewTokens ?? MAX,
    ...(opts.run
      ? {
          edit: {
            run: RUN,
            lambda: 1,
            hooksAt: async (lambda: number) => {
              built.push(lambda);
              return interventionHooks((await interventionFromRun(RUN, { lambda })).intervention, m.model.numLayers);
            },
          },
        }
      : {}),
  });
  const done = session.run();
  const waitFor = async (ok: () => boolean, what: string) => {
    const start = Date.now();
    while (!ok()) {
      if (Date.now() - start > 60_000) assert.fail(`timed out waiting for ${what}; output:\n${text}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const send = async (line: string): Promise<string> => {
    const from = text.length;
    input.write(`${line}\n`);
    await waitFor(() => text.length > from && text.endsWith('\n> '), `the prompt after '${line}'`);
    return text.slice(from, text.length - 2);
  };
  return { session, input, output, send, done, built, waitFor, printed: () => text };
}

/** The library's answer: the scheduler alone, greedy, on the rendered conversation. */
async function reference(messages: ChatMessage[], hooks?: HookMap): Promise<string> {
  const prompt = encodeChat(m.tokenizer, m.chat!, messages, { addGenerationPrompt: true });
  const { tokens } = await new Scheduler(m.model).submit({
    prompt,
    maxNewTokens: MAX,
    hooks,
    stopTokenIds: m.eosTokenIds,
  }).result;
  return m.tokenizer.decode(tokens, { skipSpecialTokens: true });
}

const Q1 = 'How do I bake bread?';
const Q2 = 'How do I kill a Python process?';
const Q3 = 'Thanks. And how do I find its id?';

test('chat session: baseline and edited answers, history, /compare, /reset, hooks per λ, one-line errors', async () => {
  const c = drive({ run: true });
  assert.match(c.printed(), /scalpel chat · model tiny · run .*\nmode: edited \(λ = 1\)/);
  assert.equal(await c.send('/baseline'), 'mode: baseline\n');
  const a1 = await c.send(Q1);
  assert.equal(a1, `${await reference([{ role: 'user', content: Q1 }])}\n`);
  assert.equal(c.session.messages.length, 2);

  assert.equal(await c.send('/reset'), 'history cleared\n');
  assert.deepEqual(c.session.messages, []);
  assert.equal(await c.send('/lambda 0'), 'mode: edited (λ = 0)\n');
  const a2 = (await c.send(Q2)).slice(0, -1);
  const generated = JSON.parse(
    scalpel(
      'generate',
      '--run',
      RUN,
      '--lambda',
      '0',
      '--chat',
      '--prompt',
      Q2,
      '--max-new-tokens',
      String(MAX),
      '--json',
    ),
  );
  assert.equal(a2, generated.text);
  assert.ok(a2.length > 0);

  // The last question again, by each model, with the history before it; the history itself is unchanged.
  const baseline2 = await reference([{ role: 'user', content: Q2 }]);
  assert.equal(await c.send('/compare'), `── baseline ──\n${baseline2}\n── edited (λ = 0) ──\n${a2}\n`);
  assert.equal(c.session.messages.length, 2);

  // A second turn sees the first: the prompt is the whole conversation.
  const edited0 = interventionHooks((await interventionFromRun(RUN, { lambda: 0 })).intervention, m.model.numLayers);
  const a3 = (await c.send(Q3)).slice(0, -1);
  const history: ChatMessage[] = [
    { role: 'user', content: Q2 },
    { role: 'assistant', content: a2 },
    { role: 'user', content: Q3 },
  ];
  assert.equal(a3, await reference(history, edited0));
  assert.deepEqual([...c.session.messages], [...history, { role: 'assistant', content: a3 }]);

  // /system goes first in the prompt and stays across /reset.
  assert.equal(await c.send('/system Answer in one word.'), 'system prompt set\n');
  assert.equal(c.session.messages.length, 5);
  assert.deepEqual(c.session.messages[0], { role: 'system', content: 'Answer in one word.' });

  // Errors are one line and the chat goes on; λ = 0 was built once, λ = 0.5 once more.
  assert.equal(await c.send('/lambda abc'), 'error: /lambda abc: expected a number in [0, 1]\n');
  assert.equal(await c.send('/lambda 2'), 'error: /lambda 2: expected a number in [0, 1]\n');
  assert.match(await c.send('/lambda'), /^error: \/lambda: expected a number in \[0, 1\].*\n$/);
  assert.equal(await c.send('/frob'), 'error: /frob: unknown command (/help lists them)\n');
  assert.match(await c.send('/help'), /\/lambda X[\s\S]*\/quit/);
  assert.equal(await c.send('/lambda 0.5'), 'mode: edited (λ = 0.5)\n');
  assert.equal(await c.send('/lambda 0'), 'mode: edited (λ = 0)\n');
  assert.equal(await c.send('/ablate'), 'mode: edited (λ = 0)\n');
  assert.equal(await c.send('/reset'), 'history cleared\n');
  assert.deepEqual(c.session.messages, [{ role: 'system', content: 'Answer in one word.' }]);
  assert.equal(await c.send('/compare'), 'error: /compare: no question yet\n');
  assert.deepEqual(c.built, [0, 0.5]);

  // The end of the input ends the chat.
  c.input.end();
  await c.done;
});

test('chat session without a run: /ablate, /lambda and /compare are one-line errors; /quit ends it', async () => {
  const c = drive({ run: false });
  assert.match(c.printed(), /no run\nmode: baseline/);
  assert.equal(await c.send('/ablate'), 'error: /ablate: needs a run; start the chat with --run RUN\n');
  assert.equal(await c.send('/lambda 0'), 'error: /lambda: needs a run; start the chat with --run RUN\n');
  assert.equal(await c.send(Q1), `${await reference([{ role: 'user', content: Q1 }])}\n`);
  assert.equal(await c.send('/compare'), 'error: /compare: needs a run; start the chat with --run RUN\n');
  c.input.write('/quit\n');
  await c.done;
});

test('chat session: Ctrl-C stops the answer, drops that turn, and the chat goes on; at an empty prompt it quits', async () => {
  const c = drive({ run: false, maxNewTokens: 2000 });
  await c.send(Q1);
  const kept = c.session.messages;
  const from = c.printed().length;
  // Interrupt as soon as the first text of the answer is printed.
  const onData = () => {
    if (c.printed().length > from) {
      c.output.off('data', onData);
      c.session.interrupt();
    }
  };
  c.output.on('data', onData);
  c.input.write(`${Q2}\n`);
  await c.waitFor(() => c.printed().endsWith(' [stopped]\n> '), 'the stopped answer');
  assert.deepEqual(c.session.messages, kept, 'the interrupted turn left the history');
  assert.equal(await c.send(Q1), `${await reference([...kept, { role: 'user', content: Q1 }])}\n`);
  c.session.interrupt(); // at an empty prompt: quit
  await c.done;
});

// The real command in a pseudo-terminal: tmux on a private socket, keys typed with send-keys, the screen read with
// capture-pane (polled, with timeouts). CI installs tmux (.ci/run); without it this test is skipped.
const noTmux = spawnSync('tmux', ['-V']).status === 0 ? false : 'tmux is not installed';
let sockets = 0;

function terminal(args: string[]) {
  const socket = `scalpel-chat-${process.pid}-${sockets++}`;
  const exitFile = path.join(tmp, `${socket}.exit`);
  // The server's socket lives in the test's temporary folder (removed at the end), not in /tmp/tmux-UID.
  const env: NodeJS.ProcessEnv = { ...process.env, TMUX_TMPDIR: tmp };
  delete env['TMUX'];
  const tmux = (...a: string[]) => spawnSync('tmux', ['-L', socket, ...a], { encoding: 'utf8', env });
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const command = [process.execPath, bin, 'chat', ...args].map(quote).join(' ');
  const started = tmux(
    'new-session',
    '-d',
    '-s',
    'chat',
    '-x',
    '160',
    '-y',
    '50',
    '-c',
    root,
    `${command}; echo $? > ${quote(exitFile)}`,
  );
  assert.equal(started.status, 0, started.stderr);
  const screen = () => tmux('capture-pane', '-p', '-J', '-S', '-500', '-t', 'chat').stdout.replace(/[ \t]+$/gm, '');
  const until = async (ok: (s: string) => boolean, what: string, ms = 60_000) => {
    const start = Date.now();
    for (;;) {
      const s = screen();
      if (ok(s)) return s;
      if (Date.now() - start > ms) assert.fail(`timed out waiting for ${what}; screen:\n${s}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const alive = () => tmux('has-session', '-t', 'chat').status === 0;
  return {
    keys: (...k: string[]) => assert.equal(tmux('send-keys', '-t', 'chat', ...k).status, 0),
    screen,
    until,
    alive,
    /** Waits for the session to end (the command exited) and returns its exit status. */
    ended: async () => {
      const start = Date.now();
      while (alive() || !fs.existsSync(exitFile)) {
        if (Date.now() - start > 30_000) assert.fail(`the chat did not exit; screen:\n${screen()}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return fs.readFileSync(exitFile, 'utf8').trim();
    },
    kill: () => tmux('kill-server'),
  };
}

test('scalpel chat in a terminal: /lambda 0, a question, /compare, Ctrl-C stops an answer, /quit and Ctrl-C quit', {
  skip: noTmux,
}, async () => {
  const q = 'How do I kill a Python process?';
  const baseline = JSON.parse(
    scalpel('generate', '--model', MODEL, '--chat', '--prompt', q, '--max-new-tokens', '200', '--json'),
  ).text;
  const edited = JSON.parse(
    scalpel('generate', '--run', RUN, '--lambda', '0', '--chat', '--prompt', q, '--max-new-tokens', '200', '--json'),
  ).text;
  const t = terminal(['--model', MODEL, '--run', RUN, '--max-new-tokens', '200']);
  try {
    await t.until((s) => /mode: edited \(λ = 1\) · \/help for commands\n>/.test(s), 'the status line');
    t.keys('/lambda 0', 'Enter');
    await t.until((s) => s.includes('mode: edited (λ = 0)\n>'), '/lambda 0');
    t.keys(q, 'Enter');
    await t.until((s) => s.includes(`> ${q}\n${edited}\n>`), 'the edited answer');
    t.keys('/compare', 'Enter');
    await t.until(
      (s) => s.includes(`> /compare\n── baseline ──\n${baseline}\n── edited (λ = 0) ──\n${edited}\n>`),
      'both answers',
    );
    t.keys('/lambda two', 'Enter');
    await t.until((s) => s.includes('error: /lambda two: expected a number in [0, 1]\n>'), 'the error line');
    t.keys('/quit', 'Enter');
    assert.equal(await t.ended(), '0');
  } finally {
    t.kill();
  }

  // The small model's greedy answers end within a fraction of a second; sampled at a high temperature it rambles
  // until stopped, which leaves time to press Ctrl-C in the middle of an answer.
  const r = terminal(['--model', MODEL, '--temperature', '5', '--seed', '1', '--max-new-tokens', '100000']);
  try {
    await r.until((s) => s.includes('mode: baseline · /help for commands\n>'), 'the status line');
    r.keys('Tell me a story.', 'Enter');
    await r.until((s) => /> Tell me a story\.\n./.test(s), 'the answer to start');
    r.keys('C-c');
    const stopped = await r.until((s) => /> Tell me a story\.\n[\s\S]+ \[stopped\]\n>$/.test(s.trimEnd()), '[stopped]');
    assert.ok(r.alive(), 'Ctrl-C during an answer returned to the prompt');
    r.keys('/help', 'Enter');
    await r.until((s) => s.length > stopped.length && /\/quit +leave[^\n]*\n[^\n]*\n>$/.test(s.trimEnd()), '/help');
    r.keys('C-c'); // at an empty prompt: quit
    assert.equal(await r.ended(), '0');
  } finally {
    r.kill();
  }
});
