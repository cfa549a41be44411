// The scalpel command line: a thin layer over the library. Each command lives in commands/<name>.ts.
import { Command, CommanderError } from 'commander';
import { ScalpelError } from '../errors.js';
import * as generate from './commands/generate.js';
import * as run from './commands/run.js';
import * as extract from './commands/extract.js';
import * as select from './commands/select.js';
import * as evaluate from './commands/eval.js';
import * as datasets from './commands/datasets.js';
import * as bake from './commands/bake.js';
import * as serve from './commands/serve.js';
import * as chat from './commands/chat.js';
import * as sweep from './commands/sweep.js';

const program = new Command('scalpel')
  .description('Remove false refusals from chat models by ablating a single direction, keeping true refusals.')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)');

// A reader that stops early (`scalpel datasets | head`) closes the pipe: that is the end of the output, not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

for (const command of [run, extract, select, evaluate, bake, generate, serve, chat, datasets])
  command.register(program);
sweep.register(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof ScalpelError) {
    process.stderr.write(`scalpel: ${err.message}\n`);
    process.exit(1);
  }
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 1);
  throw err;
}
