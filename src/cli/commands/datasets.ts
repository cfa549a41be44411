// scalpel datasets: the prompt sets Scalpel knows by name, with their sizes and sources.
import type { Command } from 'commander';
import { DATASETS, loadPromptSet, resolveDataDir } from '../../method/datasets.js';
import { ScalpelError } from '../../errors.js';

export function register(program: Command): void {
  program
    .command('datasets')
    .description('list the prompt sets known by name, with sizes (read from --data-dir / $SCALPEL_DATA) and sources')
    .option('--data-dir <dir>', 'folder of public prompt sets (default $SCALPEL_DATA)')
    .option('--json', 'print a JSON array')
    .action((opts: { dataDir?: string; json?: boolean }) => {
      const dataDir = resolveDataDir(opts.dataDir);
      const rows = DATASETS.map((d) => {
        let size: number | null = null;
        let note = '';
        if (d.builtin || dataDir !== undefined) {
          try {
            size = loadPromptSet(d.name, dataDir).prompts.length;
          } catch (e) {
            if (!(e instanceof ScalpelError)) throw e;
            note = 'missing';
          }
        } else note = 'needs --data-dir';
        return { name: d.name, size, source: d.source, file: d.builtin ? `data/prompts/${d.file}` : d.file, note };
      });
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ dataDir: dataDir ?? null, datasets: rows }, null, 2)}\n`);
        return;
      }
      const w = Math.max(...rows.map((r) => r.name.length));
      process.stdout.write(
        `data directory: ${dataDir ?? '(none: set --data-dir or SCALPEL_DATA; built-in sets only)'}\n`,
      );
      for (const r of rows) {
        const size = r.size === null ? r.note.padStart(6) : String(r.size).padStart(6);
        process.stdout.write(`${r.name.padEnd(w)}  ${size}  ${r.source}\n`);
      }
    });
}
