// Issue 12's paper check: with the paper's datasets, OR-Bench-hard test compliance served by `scalpel serve` (the
// run's default edit at λ = 1, and the baseline alias) equals `scalpel eval` on the same run, response for response.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import OpenAI from 'openai';
import { isRefusal } from '../src/method/judge.js';
import { requireRunJson } from '../src/method/rundir.js';
import { loadModel } from '../src/model/load.js';
import { createServer } from '../src/serve/server.js';

const ROOT = process.cwd();
const DATA = path.join(ROOT, '../shared/datasets/raw');
const MODEL = path.join(ROOT, 'models/scalpel-tiny-chat');
const SET = 'or-bench-hard-test';

interface Row {
  dataset: string;
  condition: string;
  prompt: string;
  response: string;
  max_new_tokens: number;
}

test('OR-Bench-hard through the server equals scalpel eval on the same run (responses and rates)', async (t) => {
  if (!fs.existsSync(DATA)) {
    t.skip(`no public datasets at ${DATA}`);
    return;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-serve-paper-'));
  const run = path.join(tmp, 'run');
  try {
    const made = spawnSync(
      process.execPath,
      ['bin/scalpel.js', 'run', '--model', MODEL, '--out', run, '--data-dir', DATA, '--eval', SET, '--quiet'],
      { cwd: ROOT, encoding: 'utf8' },
    );
    assert.equal(made.status, 0, made.stderr);
    const live = createServer({
      loaded: await loadModel(MODEL),
      name: 'tiny',
      run: { dir: run, json: requireRunJson(run) },
      log: () => {},
      maxSequences: 16,
      maxQueue: 256, // every prompt is sent at once
    });
    try {
      const base = await live.listen({ port: 0 });
      const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
      const rows = fs
        .readFileSync(path.join(run, 'responses.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Row)
        .filter((r) => r.dataset === SET);
      const results = JSON.parse(fs.readFileSync(path.join(run, 'eval.json'), 'utf8')).results as {
        condition: string;
        compliance_rate: number;
        n: number;
      }[];
      for (const [condition, model] of [
        ['baseline', 'tiny:baseline'],
        ['ablated', 'tiny'],
      ] as const) {
        const mine = rows.filter((r) => r.condition === condition);
        assert.equal(mine.length, 132);
        // All at once: the server's scheduler runs 16 together and queues the rest.
        const texts = await Promise.all(
          mine.map(async (r) => {
            const c = await client.chat.completions.create({
              model,
              messages: [{ role: 'user', content: r.prompt }],
              max_tokens: r.max_new_tokens,
              temperature: 0,
            });
            return c.choices[0]!.message.content ?? '';
          }),
        );
        const differ = mine.filter((r, i) => texts[i] !== r.response).length;
        assert.equal(differ, 0, `${condition}: ${differ} of ${mine.length} responses differ from scalpel eval's`);
        const compliance = texts.filter((x) => !isRefusal(x)).length / texts.length;
        const evalRate = results.find((r) => r.condition === condition)!.compliance_rate;
        assert.equal(compliance, evalRate);
        t.diagnostic(
          `${condition}: compliance ${(100 * compliance).toFixed(1)}% through the server, n=${texts.length}`,
        );
      }
    } finally {
      await live.close();
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
