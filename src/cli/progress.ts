// Progress bars with an ETA for long stages (cli-progress), on stderr. Silent when stderr is not a terminal or
// with --quiet, so logs and pipes stay clean.
import cliProgress from 'cli-progress';
import { escapeControls } from '../errors.js';

export interface Progress {
  update(done: number, total?: number): void;
  stop(): void;
}

export type ProgressFactory = (label: string, total: number) => Progress;

const SILENT: Progress = { update() {}, stop() {} };

/** A progress-bar factory; `quiet` (or a non-TTY stderr) gives bars that draw nothing. */
export function progressFactory(opts: { quiet?: boolean; stream?: NodeJS.WriteStream } = {}): ProgressFactory {
  const stream = opts.stream ?? process.stderr;
  if (opts.quiet || !stream.isTTY) return () => SILENT;
  return (rawLabel, total) => {
    // Labels name datasets and models, which come from the user or a download: shown escaped. cli-progress also
    // reads {name} placeholders in the format, so braces in a label are taken out of its way.
    const label = escapeControls(rawLabel).replace(/[{}]/g, (b) => (b === '{' ? '(' : ')'));
    const bar = new cliProgress.SingleBar(
      {
        stream,
        format: `${label} [{bar}] {value}/{total} {percentage}% | {duration_formatted} elapsed | ETA {eta_formatted}`,
        hideCursor: true,
        clearOnComplete: false,
        etaBuffer: 20,
        synchronousUpdate: true,
        fps: 5,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(Math.max(1, total), 0);
    let stopped = false;
    return {
      update(done, t) {
        if (stopped) return;
        if (t !== undefined && t !== bar.getTotal()) bar.setTotal(Math.max(1, t));
        // synchronousUpdate redraws here (throttled), since the engine's synchronous work starves the bar's timer.
        bar.update(done);
      },
      stop() {
        if (!stopped) bar.stop();
        stopped = true;
      },
    };
  };
}

/** A line logger on stderr, silent with --quiet. */
export function logger(quiet?: boolean): (line: string) => void {
  return quiet ? () => {} : (line) => process.stderr.write(`${escapeControls(line, '\n')}\n`);
}
