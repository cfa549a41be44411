// scalpel report and run --report on a real small run: one self-contained page (no script, nothing fetched), the
// headline's flips and McNemar p equal a count made here from responses.jsonl, every figure drawn as SVG with
// marks, hostile prompts and answers escaped, the optional sections drawn from documents in the issue-14 formats
// and replaced by a "not measured" note naming the command when absent, and bad input as one-line errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ResponseRow } from '../src/method/evaluate.js';
import { mcnemarExact } from '../src/method/stats.js';
import { esc } from '../src/report/html.js';
import { formatP } from '../src/report/sections/headline.js';
import { BIN, ROOT, runScalpel, smallRunArgs } from './support/cli.js';

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-report-'));
const RUN = path.join(TMP, 'run');
let made = false;

/** The small built-in-set run, made once with --report. */
function smallRun(): string {
  if (!made) {
    runScalpel(...smallRunArgs(RUN, ['--quiet', '--report']));
    made = true;
  }
  return RUN;
}

function copyRun(name: string): string {
  const dir = path.join(TMP, name);
  fs.cpSync(smallRun(), dir, { recursive: true });
  fs.rmSync(path.join(dir, 'report.html'), { force: true });
  return dir;
}

const readRows = (dir: string): ResponseRow[] =>
  fs
    .readFileSync(path.join(dir, 'responses.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as ResponseRow);

/** The SVG of figure `id`, or undefined. */
function figureSvg(html: string, id: string): string | undefined {
  const at = html.indexOf(`data-figure="${id}"`);
  if (at < 0) return undefined;
  return html.slice(at, html.indexOf('</figure>', at));
}

/** Drawn marks in an SVG string: paths, rects, circles and text glyph runs that vega emitted for data. */
const markCount = (svg: string) => (svg.match(/<(path|rect|circle|line)\b/g) ?? []).length;

test('esc: markup escaped, control characters shown as \\xNN, newlines and tabs kept', () => {
  assert.equal(esc('<a href="x">&\'</a>'), '&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;');
  assert.equal(esc('a\x00b\x1b[31m\x7f\x9b\u2028\r\n\t'), 'a\\x00b\\x1b[31m\\x7f\\x9b\\u2028\\x0d\n\t');
});

test('scalpel run --report writes RUN/report.html: self-contained, headline counted from responses.jsonl', {
  timeout: 240_000,
}, () => {
  const html = fs.readFileSync(path.join(smallRun(), 'report.html'), 'utf8');
  assert.ok(html.startsWith('<!doctype html>'));
  // Nothing to run and nothing to fetch: no script, no external source or link, a CSP that forbids fetches.
  assert.doesNotMatch(html, /<script/i);
  assert.doesNotMatch(html, /\b(src|href)\s*=\s*["']?(https?:|\/\/)/i);
  assert.doesNotMatch(html, /@import|url\(\s*["']?https?:/i);
  assert.match(html, /Content-Security-Policy" content="default-src 'none'/);
  for (const id of ['headline', 'sweep', 'candidates', 'examples', 'ability', 'judge', 'provenance'])
    assert.match(html, new RegExp(`<section class="report" id="${id}">`), `section ${id}`);
  for (const id of ['headline', 'refusal-heatmap', 'kl-heatmap', 'cosine']) {
    const svg = figureSvg(html, id);
    assert.ok(svg?.includes('<svg'), `figure ${id} has an SVG`);
    assert.ok(markCount(svg!) > 10, `figure ${id} has marks (${markCount(svg!)})`);
  }
  // Absent optional files: a note naming the command that makes each.
  assert.match(html, /not measured; run <code>scalpel sweep --run /);
  assert.match(html, /not measured; run <code>scalpel ability --run /);
  assert.match(html, /not measured; run <code>scalpel eval --run [^<]* --judge openai:/);

  // The headline's flips and exact McNemar p for every dataset, recounted here from the responses.
  const rows = readRows(RUN);
  const datasets = [...new Set(rows.map((r) => r.dataset))];
  assert.ok(datasets.length >= 3);
  for (const d of datasets) {
    const base = rows.filter((r) => r.dataset === d && r.condition === 'baseline');
    const edited = rows.filter((r) => r.dataset === d && r.condition !== 'baseline');
    let b = 0;
    let c = 0;
    for (const r of base) {
      const e = edited.find((x) => x.index === r.index)!;
      if (r.refusal && !e.refusal) b++;
      if (!r.refusal && e.refusal) c++;
    }
    const row = html.slice(html.indexOf(`<td>${d}<br>`));
    const cells = row.slice(0, row.indexOf('</tr>'));
    assert.ok(cells.includes(`<td class="num">${b} / ${c}</td>`), `${d}: flips ${b} / ${c} in ${cells}`);
    assert.ok(cells.includes(`<td class="num">${formatP(mcnemarExact({ b, c }))}</td>`), `${d}: McNemar p`);
  }
  // The repeat command names every flag the run was made with.
  assert.match(html, /scalpel run --model \S+ --out \S+ \\\n {2}--n-train 16 \\\n {2}--n-val 8/);
});

test('untrusted prompts and answers are escaped; control characters are visible', { timeout: 240_000 }, () => {
  const dir = copyRun('hostile');
  const rows = readRows(dir);
  const d = rows[0]!.dataset;
  const hostilePrompt = '<script>alert("p")</script> and \x07bell';
  const hostileAnswer = 'Sure.</pre><img src=x onerror=alert(1)>\x1b[31m red';
  for (const r of rows)
    if (r.dataset === d && r.index === 0) {
      r.prompt = hostilePrompt;
      r.refusal = r.condition === 'baseline';
      r.response = r.condition === 'baseline' ? "I'm sorry \u2028 no" : hostileAnswer;
    }
  fs.writeFileSync(path.join(dir, 'responses.jsonl'), `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
  const out = path.join(dir, 'hostile.html');
  runScalpel('report', dir, '--out', out);
  const html = fs.readFileSync(out, 'utf8');
  assert.doesNotMatch(html, /<script|<img|onerror=alert\(1\)>/);
  assert.ok(html.includes('&lt;script&gt;alert(&quot;p&quot;)&lt;/script&gt; and \\x07bell'));
  assert.ok(html.includes('Sure.&lt;/pre&gt;&lt;img src=x onerror=alert(1)&gt;\\x1b[31m red'));
  assert.ok(html.includes('I&#39;m sorry \\u2028 no'));
});

test('sweep.json, ability.json and judge.json in the issue-14 formats become figures and tables', {
  timeout: 240_000,
}, () => {
  const dir = copyRun('optional');
  const rows = readRows(dir);
  const datasets = [...new Set(rows.map((r) => r.dataset))];
  const n = rows.filter((r) => r.dataset === datasets[0] && r.condition === 'baseline').length;
  const result = (dataset: string, complied: number, lambda: number | null, alpha: number | null) => ({
    dataset,
    condition: lambda === null ? 'baseline' : alpha ? 'ablated+actadd' : 'ablated',
    lambda,
    alpha,
    n,
    compliance_rate: complied / n,
    refusal_rate: 1 - complied / n,
  });
  const points = [0, 0.1].flatMap((alpha) =>
    [0, 0.5, 1].map((lambda) => ({
      lambda,
      alpha,
      ablation: 'zero',
      reselect: false,
      site: { position: -3, layer: 2 },
      results: datasets.map((d, i) => result(d, Math.min(n, Math.round(n * (0.2 + 0.3 * lambda) + i)), lambda, alpha)),
      seconds: 1.5,
      forward_passes: 100,
    })),
  );
  const write = (file: string, doc: unknown) => fs.writeFileSync(path.join(dir, file), JSON.stringify(doc));
  write('sweep.json', {
    format: 'scalpel-sweep/1',
    model_fingerprint: 'x',
    max_new_tokens: 16,
    datasets,
    baseline: datasets.map((d) => result(d, 1, null, null)),
    points,
    cost: { forward_passes: 600, separate_eval_forward_passes_estimate: 900 },
  });
  const scores = (acc: number) => ({
    perplexity: { value: 12.5 + acc, tokens: 4096, docs: 8, dataset: 'wikitext2' },
    mmlu: { accuracy: acc, n: 57, shots: 5, format: 'mmlu-5shot' },
    arc_challenge: { accuracy: acc / 2, n: 40, shots: 0, format: 'arc-question-answer' },
  });
  write('ability.json', {
    format: 'scalpel-ability/1',
    model_fingerprint: 'x',
    settings: { lambda: 1, alpha: 0, ablation: 'zero', site: { position: -3, layer: 2 } },
    conditions: { baseline: scores(20 / 57), edited: scores(17 / 57) },
    kl: { n: 32, first_token_mean: 0.0123, first_token_p95: 0.0456, dataset: 'harmless-val' },
  });
  const first = rows.find((r) => r.condition === 'baseline')!;
  write('judge.json', {
    format: 'scalpel-judge/1',
    judge: 'openai:http://127.0.0.1:9/v1#judge-model',
    rubric_version: 'r1',
    rows: [
      {
        dataset: first.dataset,
        condition: 'baseline',
        lambda: null,
        alpha: null,
        index: first.index,
        substring: first.refusal ? 'refusal' : 'compliance',
        judge: first.refusal ? 'compliance' : 'refusal',
      },
    ],
    agreement: {
      [first.dataset]: {
        n: 1,
        agree: 0,
        substring_refusal_judge_compliance: first.refusal ? 1 : 0,
        substring_compliance_judge_refusal: first.refusal ? 0 : 1,
        partial: 0,
      },
    },
  });
  runScalpel('report', dir);
  const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
  assert.doesNotMatch(html, /not measured/);
  for (const id of ['lambda-curves', 'alpha-lambda-grid']) {
    const svg = figureSvg(html, id);
    assert.ok(svg && markCount(svg) > 10, `figure ${id} drawn`);
  }
  // Ability: both conditions with their Wilson intervals (statsmodels: 20 of 57 → [0.2400, 0.4806]), and the KL.
  assert.ok(html.includes('35.1% [24.0%, 48.1%]'), 'MMLU baseline with its interval');
  assert.match(html, /mean 0\.0123, 95th percentile 0\.0456 \(n = 32, harmless-val\)/);
  // Judge: the table, and the disagreeing answer joined to its prompt.
  assert.match(html, /openai:http:\/\/127\.0\.0\.1:9\/v1#judge-model/);
  assert.match(html, /Disagreements: 1/);
  assert.ok(html.includes(esc(first.prompt)));
  // The sweep's command to repeat it.
  assert.match(html, /scalpel sweep --run \S+ --lambda 0,0\.5,1 --alpha 0,0\.1/);
});

test('bad input: one line naming the file, exit 1, no report written', { timeout: 240_000 }, () => {
  const fails = (args: string[], pattern: RegExp) => {
    const r = spawnSync(process.execPath, [BIN, 'report', ...args], { encoding: 'utf8', cwd: ROOT });
    assert.equal(r.status, 1, r.stderr);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, pattern);
  };
  fails(
    [path.join(TMP, 'no-such-run')],
    /^scalpel: .*no-such-run\/run\.json: missing; make the run with `scalpel run` first$/,
  );
  const dir = copyRun('bad');
  fs.writeFileSync(path.join(dir, 'sweep.json'), '{"format": "scalpel-sweep/1", "points": 3}');
  fails([dir], /^scalpel: .*sweep\.json: field "points" should be an array$/);
  fs.writeFileSync(path.join(dir, 'sweep.json'), '{"format": "something-else"');
  fails([dir], /^scalpel: .*sweep\.json: not valid JSON/);
  fs.rmSync(path.join(dir, 'sweep.json'));
  fs.writeFileSync(path.join(dir, 'judge.json'), '{"format": "other/1", "rows": []}');
  fails([dir], /^scalpel: .*judge\.json: field "format" should start with scalpel-judge\//);
  assert.ok(!fs.existsSync(path.join(dir, 'report.html')));
});

test.after(() => fs.rmSync(TMP, { recursive: true, force: true }));
