// The HTML page around the sections: one file, everything inline (styles, SVG charts), no script, no fonts, no
// links out; a Content-Security-Policy that forbids any fetch in case some text slipped through unescaped. Laid out
// for a laptop, reflowed for a 390 px phone, and printable (no sticky parts, sections kept whole where they fit).
import { esc } from './html.js';
import type { Section } from './sections/section.js';

const CSS = `
:root { color-scheme: light; --ink: #1d1d1f; --muted: #5f6368; --line: #dcdcdc; --accent: #d9480f; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: var(--ink); background: #fafafa; }
main { max-width: 1040px; margin: 0 auto; padding: 24px 28px 48px; background: white; }
header h1 { font-size: 1.55rem; margin: 0 0 4px; line-height: 1.25; overflow-wrap: anywhere; }
header p { margin: 0; color: var(--muted); }
nav { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 16px 0 8px; padding: 8px 0; border-top: 1px solid var(--line); border-bottom: 1px solid var(--line); }
nav a { color: var(--ink); white-space: nowrap; font-size: 0.92rem; }
section.report { margin-top: 28px; }
h2 { font-size: 1.25rem; border-bottom: 2px solid var(--ink); padding-bottom: 4px; margin: 0 0 12px; }
h3 { font-size: 1.05rem; margin: 22px 0 8px; overflow-wrap: anywhere; }
h4 { font-size: 0.95rem; margin: 14px 0 6px; color: var(--muted); }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace; font-size: 0.86rem; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; }
pre.command { background: #f3f3f3; padding: 10px 12px; border-radius: 4px; }
.small, figcaption { font-size: 0.86rem; color: var(--muted); }
.note { background: #fff8e6; border-left: 4px solid #e8b100; padding: 8px 12px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0 0 12px; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.table-wrap { overflow-x: auto; margin: 8px 0 12px; }
table { border-collapse: collapse; font-size: 0.88rem; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px 4px 0; text-align: left; vertical-align: top; }
th { font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
.ci { font-size: 0.8em; color: var(--muted); white-space: nowrap; }
figure.chart { margin: 16px 0; }
figure.chart .svg-wrap { overflow-x: auto; }
figure.chart svg { display: block; max-width: 100%; height: auto; }
figcaption { margin-top: 4px; max-width: 72ch; }
.example { border: 1px solid var(--line); border-radius: 4px; padding: 8px 10px; margin: 8px 0; break-inside: avoid; }
.example .prompt { margin-bottom: 6px; overflow-wrap: anywhere; }
.label { font-size: 0.78rem; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: 0.02em; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; }
.answer { padding: 6px 8px; border-radius: 3px; }
.answer.refused { background: #fdecea; }
.answer.complied { background: #e9f5ec; }
@media (max-width: 640px) {
  body { font-size: 14px; }
  main { padding: 14px 12px 32px; }
  .pair { grid-template-columns: 1fr; }
  dl.facts { grid-template-columns: 1fr; }
  dl.facts dd { margin-bottom: 6px; }
  th, td { padding-right: 8px; }
}
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { background: white; font-size: 10pt; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  /* One section per page: a chart or table never starts at the foot of another section's page. */
  section.report { break-before: page; margin-top: 0; }
  figure.chart, .example, tr { break-inside: avoid; }
  h2, h3, h4 { break-after: avoid; }
  /* Paper cannot scroll: charts shrink to the page (their SVGs keep a viewBox) and tables wrap inside it. */
  .table-wrap, figure.chart .svg-wrap { overflow: visible; }
  figure.chart svg { max-width: 100%; max-height: 240mm; height: auto; }
  table { width: 100%; font-size: 8.5pt; }
  thead { display: table-header-group; }
  th, td { padding: 2px 6px 2px 0; overflow-wrap: anywhere; }
  td.num, .ci { white-space: normal; }
  pre, code { font-size: 8pt; }
  .pair { grid-template-columns: 1fr 1fr; }
  a { color: inherit; text-decoration: none; }
}
`;

export function page(title: string, subtitle: string, sections: Section[]): string {
  const nav = sections.map((s) => `<a href="#${esc(s.id)}">${esc(s.title)}</a>`).join('');
  const body = sections
    .map((s) => `<section class="report" id="${esc(s.id)}"><h2>${esc(s.title)}</h2>${s.html}</section>`)
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<header><h1>${esc(title)}</h1><p>${esc(subtitle)}</p></header>
<nav>${nav}</nav>
${body}
</main>
</body>
</html>
`;
}
