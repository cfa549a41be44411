// `scalpel gate --run RUN`: fits the conditional ablation's gate for a run (src/method/gate.ts): a harmfulness
// probe on training activations of harmful vs pseudo-harmful prompts from several sources, its layer, positions and
// threshold chosen on validation prompts. Writes gate.json and gate.safetensors; `eval`, `serve`, `chat` and `run`
// apply it with --gate.
import type { Command } from 'commander';
import { ScalpelError } from '../../errors.js';
import type { GateJson } from '../../method/gate.js';
import { DEFAULT_FLAGGED } from '../../method/gate.js';
import { fitRunGate } from '../../method/gate-run.js';
import { runOptions } from '../config.js';
import { MODEL_HELP, openRun, type CommonOpts } from '../options.js';

export function register(program: Command): void {
  const cmd = program
    .command('gate')
    .description(
      "fit a harmfulness gate for a run's edit (applied with eval/serve/chat/run --gate): the edit then applies only to prompts the gate clears",
    )
    .requiredOption('--run <dir>', 'run directory (its model and evaluation sets)')
    .option('--model <model>', `${MODEL_HELP}; default the run's`)
    .option('--data-dir <dir>', "the public prompt sets' raw/ folder (default: the run's, $SCALPEL_DATA)")
    .option(
      '--flagged <share>',
      `share of every harmful validation source the gate must keep flagged (edit not applied) (default ${DEFAULT_FLAGGED})`,
    )
    .option('--seed <n>', "seed of the held-out validation split (default: the run's)")
    .option('--batch-size <n>', 'prompts per forward pass')
    .option('--json', 'print gate.json')
    .option('--quiet', 'no progress bars or log lines');
  cmd.action(async (opts: CommonOpts) => {
    const flagged = opts['flagged'] === undefined ? undefined : Number(opts['flagged']);
    if (flagged !== undefined && !(flagged > 0 && flagged <= 1))
      throw new ScalpelError(`--flagged ${String(opts['flagged'])}: expected a share in (0, 1]`);
    const { runDir, run, modelDir } = await openRun(String(opts['run']), opts.model, opts.quiet);
    const o = await runOptions(cmd, { ...opts, model: modelDir }, runDir, run.config);
    const json = await fitRunGate(o, { flagged });
    process.stdout.write(opts.json ? `${JSON.stringify(json, null, 2)}\n` : `${formatGate(json)}\n`);
  });
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** What the gate read, where it stands, and how it does on each validation source. */
export function formatGate(g: GateJson): string {
  const cos = g.cos_refusal_direction === undefined ? '' : `, cos with r ${g.cos_refusal_direction.toFixed(3)}`;
  const lines = [
    `gate: ${g.point}, mean of the last ${g.positions} prompt tokens, L2 ${g.l2}${cos}; edit applies when score < ${g.threshold.toFixed(3)}`,
    'validation source                        train   val  dropped  figure',
  ];
  const row = (label: string, s: { train: number; val: number; dropped: number }, figure: string) =>
    `${label.padEnd(40)} ${String(s.train).padStart(5)} ${String(s.val).padStart(5)} ${String(s.dropped).padStart(8)}  ${figure}`;
  for (const s of g.sources.harmful) lines.push(row(s.label, s, `${pct(s.val_flagged)} flagged`));
  for (const s of g.sources.pseudo) lines.push(row(s.label, s, `${pct(s.val_cleared)} cleared`));
  if (g.sources.missing.length > 0) lines.push(`not in the data directory: ${g.sources.missing.join(', ')}`);
  return lines.join('\n');
}
