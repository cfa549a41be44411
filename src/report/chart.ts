// A figure is a Vega-Lite spec plus its data, drawn once to SVG when the report is built (vega's headless view:
// no canvas, no DOM, no network), so the page needs no script to show it. Fonts are generic families: the page
// must not fetch any, and vega measures text without a canvas by estimate, which generic sans-serif fits.
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { esc } from './html.js';

const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif';

/** The look shared by every chart: legible sizes at laptop width that still read when shrunk to a phone. */
const CONFIG = {
  font: FONT,
  background: 'white',
  padding: 4,
  view: { stroke: '#bbb' },
  axis: { labelFontSize: 12, titleFontSize: 12, titleFontWeight: 600, grid: true, gridColor: '#eee', labelLimit: 260 },
  legend: {
    labelFontSize: 12,
    titleFontSize: 12,
    orient: 'bottom',
    direction: 'horizontal',
    columns: 2,
    labelLimit: 260,
  },
  header: { labelFontSize: 12, titleFontSize: 12, labelFontWeight: 600 },
  title: { fontSize: 13, anchor: 'start' },
  range: {
    // Tableau 10, colour-blind friendlier than vega's default category order for lines that cross.
    category: ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f'],
  },
} as const;

/** Vega-Lite → SVG markup, with the report's look. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const full = { ...spec, config: { ...CONFIG, ...(spec.config ?? {}) } } as TopLevelSpec;
  const view = new vega.View(vega.parse(compile(full).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * A figure of the report: its SVG and caption. `id` names the figure (data-figure) so readers and the browser test
 * can find it; `alt` is the accessible one-line description.
 */
export async function figure(id: string, spec: TopLevelSpec, caption: string, alt: string): Promise<string> {
  const svg = (await renderSvg(spec)).replace('<svg ', `<svg role="img" aria-label="${esc(alt)}" `);
  return `<figure class="chart" data-figure="${esc(id)}"><div class="svg-wrap">${svg}</div><figcaption>${caption}</figcaption></figure>`;
}
