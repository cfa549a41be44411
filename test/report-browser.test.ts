// Issue 14's browser acceptance: a real headless Chromium (Debian's `chromium`, driven by puppeteer-core) opens the
// report of a run on the project's model made with the paper's datasets and a 5-point λ sweep. No console errors,
// no request other than the file itself (request interception fails anything not file: or data:), every figure
// present with marks, page screenshots at 1280 px and 390 px stored under test-artifacts/, the file under 3 MB.
// Printed (print media emulated at the A4 page's printable width): every section starts a page, no figure or table is
// wider than the page, and page.pdf() writes a PDF of several pages to test-artifacts/report.pdf.
// Skips with a message only when no chromium binary is installed (CI installs it in .ci/run).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import puppeteer from 'puppeteer-core';
import { ROOT, TINY_CHAT, runScalpel } from './support/cli.js';

const CHROMIUM = process.env['SCALPEL_CHROMIUM'] ?? '/usr/bin/chromium';
const DATA = path.join(ROOT, '../shared/datasets/raw');
const ARTIFACTS = path.join(ROOT, 'test-artifacts');
// Kept small for CI: 32 training and 16 validation prompts per set, 40 prompts of each evaluation set, 24 tokens.
const RUN_FLAGS = ['--n-train', '32', '--n-val', '16', '--max-new-tokens', '24'];
const EVAL_SETS = 'or-bench-hard-test:40,jbb-harmful:40';
const LAMBDAS = '0,0.25,0.5,0.75,1';
const FIGURES = [
  'headline',
  'lambda-curves',
  'alpha-lambda-grid',
  'ability-lambda',
  'refusal-heatmap',
  'kl-heatmap',
  'cosine',
];
// sweep --ability at a few items of each sample: the ability-against-λ figure, not the figures' precision.
const ABILITY_SIZES = ['--ability', '--n-mmlu', '4', '--n-arc', '4', '--n-ppl-docs', '1', '--n-kl', '8'];
const MAX_BYTES = 3 * 1024 * 1024;
// The page's @page rule: A4 (210 × 297 mm) with 12 mm side and 14 mm top/bottom margins, in CSS px (96 per inch).
const MM = 96 / 25.4;
const PRINT_WIDTH = (210 - 2 * 12) * MM;
const PRINT_HEIGHT = (297 - 2 * 14) * MM;

test('the report of a paper-dataset run with a 5-point sweep in headless Chromium', {
  timeout: 1_200_000,
}, async (t) => {
  if (!fs.existsSync(CHROMIUM)) {
    t.skip(`no chromium at ${CHROMIUM} (apt-get install chromium, or set SCALPEL_CHROMIUM)`);
    return;
  }
  if (!fs.existsSync(DATA)) {
    t.skip(`no public datasets at ${DATA}`);
    return;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-report-browser-'));
  const run = path.join(tmp, 'run');
  const browser = await puppeteer.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless'] });
  try {
    const common = ['--data-dir', DATA, ...RUN_FLAGS, '--quiet'];
    runScalpel('run', '--model', TINY_CHAT, '--out', run, '--eval', EVAL_SETS, ...common);
    runScalpel('sweep', '--run', run, '--lambda', LAMBDAS, ...ABILITY_SIZES, '--quiet');
    runScalpel('report', run);
    const file = path.join(run, 'report.html');
    const bytes = fs.statSync(file).size;
    assert.ok(bytes < MAX_BYTES, `report is ${bytes} bytes, over 3 MB`);

    const page = await browser.newPage();
    const problems: string[] = [];
    const fileUrl = pathToFileURL(file).href;
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${String(e)}`));
    await page.setRequestInterception(true);
    page.on('request', (req) => {
      const url = req.url();
      if (url === fileUrl || url.startsWith('data:')) void req.continue();
      else {
        problems.push(`request: ${url}`);
        void req.abort();
      }
    });
    page.on('requestfailed', (req) => {
      if (req.url() === fileUrl) problems.push(`the report itself failed to load: ${req.failure()?.errorText}`);
    });
    await page.setViewport({ width: 1280, height: 900 });
    await page.goto(fileUrl, { waitUntil: 'load' });

    // Every figure is there, as an SVG with drawn data marks (vega's role-mark groups: rects, symbols, lines, rules;
    // axes and legends do not count).
    const marks = await page.evaluate((ids: string[]) => {
      const out: Record<string, { marks: number; width: number }> = {};
      for (const id of ids) {
        const svg = document.querySelector(`figure[data-figure="${id}"] svg`);
        out[id] = {
          marks: svg
            ? svg.querySelectorAll(
                'g.role-mark.mark-rect path, g.role-mark.mark-symbol path, g.role-mark.mark-line path, g.role-mark.mark-rule line',
              ).length
            : 0,
          width: svg ? svg.getBoundingClientRect().width : 0,
        };
      }
      return out;
    }, FIGURES);
    for (const id of FIGURES) {
      assert.ok(marks[id]!.marks > 0, `figure ${id}: no marks (${JSON.stringify(marks[id])})`);
      assert.ok(marks[id]!.width > 100, `figure ${id} is laid out (${marks[id]!.width} px wide)`);
    }
    // The sweep's five λ values: five points per dataset on the curves.
    const curvePoints = await page.evaluate(
      () => document.querySelectorAll('figure[data-figure="lambda-curves"] g.role-mark.mark-symbol path').length,
    );
    assert.equal(curvePoints, 5 * 2, 'five λ points for each of the two datasets');
    assert.equal(await page.$$eval('p.note', (n) => n.length), 2, 'only ability and judge are not measured');

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const shots: string[] = [];
    for (const width of [1280, 390]) {
      await page.setViewport({ width, height: 900 });
      // At phone width nothing may stick out sideways but the scrolling tables and charts inside their boxes.
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `page is ${overflow} px wider than a ${width} px window`);
      const shot = path.join(ARTIFACTS, `report-${width}.png`);
      await page.screenshot({ path: shot, fullPage: true });
      shots.push(shot);
    }

    // Print: laid out at the printable width under print media, nothing may be wider than the paper.
    await page.emulateMediaType('print');
    await page.setViewport({ width: Math.floor(PRINT_WIDTH), height: Math.floor(PRINT_HEIGHT) });
    const printed = await page.evaluate(() => {
      const box = (e: Element) => {
        const r = e.getBoundingClientRect();
        return { left: r.left, right: r.right, width: r.width, height: r.height };
      };
      return {
        figures: [...document.querySelectorAll('figure.chart svg')].map((e) => ({
          id: e.closest('figure')!.getAttribute('data-figure'),
          ...box(e),
        })),
        tables: [...document.querySelectorAll('table')].map((e) => ({
          section: e.closest('section')!.id,
          ...box(e),
          scroll: e.scrollWidth,
        })),
        breaks: [...document.querySelectorAll('section.report')].map((e) => getComputedStyle(e).breakBefore),
        navShown: getComputedStyle(document.querySelector('nav')!).display !== 'none',
      };
    });
    assert.ok(printed.figures.length >= FIGURES.length, `figures in print: ${printed.figures.length}`);
    for (const f of printed.figures) {
      assert.ok(f.width > 50, `figure ${f.id} is drawn in print (${f.width} px)`);
      assert.ok(f.left >= -0.5 && f.right <= PRINT_WIDTH + 0.5, `figure ${f.id} fits the page: ${JSON.stringify(f)}`);
      assert.ok(f.height <= PRINT_HEIGHT, `figure ${f.id} fits on one page: ${f.height} px`);
    }
    for (const tb of printed.tables)
      assert.ok(
        tb.right <= PRINT_WIDTH + 0.5 && tb.scroll <= tb.width + 1,
        `a table in ${tb.section} fits the page: ${JSON.stringify(tb)}`,
      );
    assert.ok(printed.breaks.length >= 7 && printed.breaks.every((b) => b === 'page'), `breaks: ${printed.breaks}`);
    assert.equal(printed.navShown, false, 'the navigation links are not printed');
    const pdfPath = path.join(ARTIFACTS, 'report.pdf');
    const pdf = Buffer.from(await page.pdf({ path: pdfPath, preferCSSPageSize: true, printBackground: true }));
    assert.equal(pdf.subarray(0, 5).toString('latin1'), '%PDF-');
    const pages = (pdf.toString('latin1').match(/\/Type\s*\/Page(?![a-zA-Z])/g) ?? []).length;
    assert.ok(
      pages >= printed.breaks.length,
      `the PDF has ${pages} pages, fewer than its ${printed.breaks.length} sections`,
    );
    assert.ok(pdf.length > 50_000, `the PDF is ${pdf.length} bytes`);

    assert.deepEqual(problems, []);
    t.diagnostic(
      `report ${bytes} bytes; screenshots: ${shots.join(', ')}; marks per figure: ${JSON.stringify(marks)}; PDF ${pdf.length} bytes, ${pages} pages`,
    );
    console.log(`report screenshots: ${shots.join(' ')} ${pdfPath}`);
  } finally {
    await browser.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
