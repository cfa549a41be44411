// How the run was made, so it can be made again: timings and forward passes per stage, the model's identity, the
// Scalpel version, every setting in run.json, and the commands that repeat the run (and its sweep).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULTS } from '../../method/config.js';
import { packageRoot } from '../../method/datasets.js';
import { esc, table } from '../html.js';
import type { ReportInputs } from '../inputs.js';
import type { Section } from './section.js';

/** The installed Scalpel's version (package.json), or "unknown" if it cannot be read. */
export function scalpelVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** A word for a POSIX shell: bare when it is plainly safe, else single-quoted. */
export function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

// Settings whose flag is not the kebab-case of their run.json name, or that have no flag.
const FLAG_NAMES: Record<string, string | null> = {
  prunePercent: 'prune',
  evalDatasets: 'eval',
  judgeSubstrings: 'refusal-substrings',
  refusalTokenMinShare: null,
};
const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** `scalpel run` with every setting of run.json spelled out as its flag (defaults included, so nothing drifts). */
export function repeatCommand(inputs: ReportInputs): { command: string; notes: string[] } {
  const run = inputs.run;
  const words = ['scalpel', 'run', '--model'];
  words.push(run.model.hub ? `${run.model.hub.repo}@${run.model.hub.commit}` : run.model.dir, '--out', inputs.runDir);
  const notes: string[] = [];
  for (const [key, value] of Object.entries(run.config)) {
    if (value === null || value === undefined) continue;
    const flag = key in FLAG_NAMES ? FLAG_NAMES[key] : kebab(key);
    if (flag === null) {
      if (JSON.stringify(value) !== JSON.stringify((DEFAULTS as unknown as Record<string, unknown>)[key]))
        notes.push(`${key} = ${JSON.stringify(value)} has no flag (the default is used)`);
      continue;
    }
    if (typeof value === 'boolean') {
      // The boolean settings are on by default and have --no-… flags.
      if (!value) words.push(`--no-${flag}`);
    } else if (key === 'judgeSubstrings') {
      if (JSON.stringify(value) !== JSON.stringify(DEFAULTS.judgeSubstrings)) {
        words.push(`--${flag}`, 'PHRASES.txt');
        notes.push('PHRASES.txt: the judge phrases listed under settings, one per line');
      }
    } else if (Array.isArray(value)) words.push(`--${flag}`, value.join(','));
    else words.push(`--${flag}`, String(value));
  }
  // One flag per line (with its value), continued with backslashes: readable, and still pastes into a shell.
  const quoted = words.map(shellWord);
  const head = quoted.slice(0, 6).join(' ');
  const flags: string[] = [];
  for (const w of quoted.slice(6)) {
    if (w.startsWith('--') || flags.length === 0) flags.push(w);
    else flags[flags.length - 1] += ` ${w}`;
  }
  const lines = [[head, ...flags].join(' \\\n  ')];
  const sweep = inputs.sweep;
  if (sweep && sweep.points.length > 0) {
    const uniq = (xs: number[]) => [...new Set(xs)].join(',');
    const sw = ['scalpel', 'sweep', '--run', inputs.runDir, '--lambda', uniq(sweep.points.map((p) => p.lambda))];
    const alphas = uniq(sweep.points.map((p) => p.alpha));
    if (alphas !== '0') sw.push('--alpha', alphas);
    if (sweep.points.some((p) => p.reselect)) sw.push('--reselect');
    lines.push(sw.map(shellWord).join(' '));
  }
  if (inputs.ability) lines.push(['scalpel', 'ability', '--run', inputs.runDir].map(shellWord).join(' '));
  return { command: lines.join('\n'), notes };
}

export function provenanceSection(inputs: ReportInputs): Section {
  const run = inputs.run;
  const stages = (['extract', 'select', 'eval'] as const).flatMap((s) => {
    const st = run.stages[s];
    return st
      ? [[s, st.seconds.toFixed(1), st.forward_passes, st.prompt_prefills, st.decode_steps, st.finished_at]]
      : [];
  });
  const sweep = inputs.sweep;
  if (sweep && sweep.points.length > 0) {
    const seconds = sweep.points.reduce((a, p) => a + p.seconds, 0);
    stages.push([
      `sweep (${sweep.points.length} points)`,
      seconds.toFixed(1),
      sweep.cost?.forward_passes ?? sweep.points.reduce((a, p) => a + p.forward_passes, 0),
      '–',
      '–',
      '–',
    ]);
  }
  const timings =
    stages.length > 0
      ? table(
          ['stage', 'seconds', 'forward passes', 'prompt prefills', 'decode steps', 'finished'],
          stages,
          [1, 2, 3, 4],
        )
      : '<p class="note">No stage has finished.</p>';
  const load = typeof run['model_load_seconds'] === 'number' ? `model load ${run['model_load_seconds']} s. ` : '';
  const m = run.model;
  const identity: [string, string][] = [
    ['model folder', m.dir],
    ...(m.hub ? ([['Hub', `${m.hub.repo} @ ${m.hub.revision} (commit ${m.hub.commit})`]] as [string, string][]) : []),
    ['fingerprint', m.fingerprint],
    ['shape', `${m.num_layers ?? '?'} layers, width ${m.width ?? '?'}, vocabulary ${m.vocab_size ?? '?'}`],
    ['Scalpel', scalpelVersion()],
    ['seeds', `${run.seeds.sample} (${run.seeds.rng})`],
    ...(run.refusal_tokens
      ? ([
          [
            'refusal tokens',
            `${run.refusal_tokens.text.map((t) => JSON.stringify(t)).join(', ')} — ${run.refusal_tokens.rule}`,
          ],
        ] as [string, string][])
      : []),
  ];
  const settings = Object.entries(run.config).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : JSON.stringify(v)]);
  const data = Object.entries(run.data ?? {}).map(([role, d]) => [
    role,
    d.ref,
    d.source,
    d.available,
    d.sampled,
    d.kept ?? '–',
  ]);
  const { command, notes } = repeatCommand(inputs);
  return {
    id: 'provenance',
    title: 'Timings and provenance',
    html: `<h3>Timings</h3><p class="small">${esc(load)}Wall-clock seconds on the machine that made the run.</p>${timings}<h3>Model and version</h3><dl class="facts">${identity.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl>${
      data.length > 0
        ? `<h3>Prompt sets</h3>${table(['role', 'set', 'source', 'available', 'sampled', 'kept'], data, [3, 4, 5])}`
        : ''
    }<h3>Every setting (run.json)</h3>${table(['setting', 'value'], settings)}<h3>Repeat this run</h3><pre class="command">${esc(command)}</pre>${notes.map((n) => `<p class="small">${esc(n)}</p>`).join('')}`,
  };
}
