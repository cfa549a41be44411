// The scalpel command line: a thin layer over the library. Each command lives in commands/<name>.ts.
import { Command, CommanderError } from 'commander';
import { ScalpelError, escapeControls } from '../errors.js';
import * as generate from './commands/generate.js';
import * as run from './commands/run.js';
import * as extract from './commands/extract.js';
import * as select from './commands/select.js';
import * as evaluate from './commands/eval.js';
import * as datasets from './commands/datasets.js';
import * as bake from './commands/bake.js';
import * as serve from './commands/serve.js';
import * as chat from './commands/chat.js';
import * as report from './commands/report.js';
import * as sweep from './commands/sweep.js';
import * as ability from './commands/ability.js';
import * as gate from './commands/gate.js';
import * as stability from './commands/stability.js';

const program = new Command('scalpel')
  .description('Remove false refusals from chat models by ablating a single direction, keeping true refusals.')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  // commander quotes the flags it rejects, and flags can carry pasted text: no control characters reach stderr raw.
  .configureOutput({ writeErr: (text) => process.stderr.write(escapeControls(text, '\n')) });

// A reader that stops early (`scalpel datasets | head`) closes the pipe: that is the end of the output, not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

for (const command of [run, extract, select, evaluate, bake, generate, serve, chat, datasets, ability])
  command.register(program);
report.register(program);
sweep.register(program);
gate.register(program);
stability.register(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // The last line of defence: whatever reaches stderr has its control characters shown as \xNN.
  if (err instanceof ScalpelError) {
    process.stderr.write(`scalpel: ${escapeControls(err.message)}\n`);
    process.exit(1);
  }
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 1);
  // A bug: its stack trace is kept (it is what gets reported), with its text escaped like everything else.
  process.stderr.write(`${escapeControls(err instanceof Error ? (err.stack ?? String(err)) : String(err), '\n')}\n`);
  process.exit(1);
}
