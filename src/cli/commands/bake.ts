// `scalpel bake`: writes a copy of the run's model with the chosen direction projected out of the weights, so the
// ablation costs nothing at inference and the result loads anywhere a Hugging Face model does.
import { existsSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ScalpelError } from '../../errors.js';
import { bakeAblation, bakeableDirection } from '../../method/bake.js';
import { writeControlVector } from '../../method/control-vector.js';
import { exportGguf, GGUF_DTYPES, GGUF_QUANTS, type GgufQuant } from '../../method/export-gguf.js';
import type { WeightDType } from '../../tensor.js';
import { interventionFromRun, inRunFile } from '../../method/intervention.js';
import { rankOneAdapter, writeGgufLora, writePeftAdapter } from '../../method/lora.js';
import { llamaCppArch } from '../../model/llamacpp.js';
import { FILES, type RunJson } from '../../method/rundir.js';
import { parseConfig } from '../../arch/index.js';
import { readJsonFile } from '../../io/json.js';
import { MODEL_HELP, lambdaFlag, openRun, strengthFlag } from '../options.js';
import { logger, progressFactory } from '../progress.js';

/** What `--format` can write; each is an exact form of the same edit (W' = W − λ·ŵŵᵀW) for another engine. */
export const BAKE_FORMATS = ['hf', 'gguf', 'peft-lora', 'gguf-lora', 'control-vector'] as const;
export type BakeFormat = (typeof BAKE_FORMATS)[number];

interface BakeFlags {
  run: string;
  out: string;
  format: string;
  model?: string;
  lambda?: string;
  strength?: string;
  dtype?: string;
  quant?: string;
  quiet?: boolean;
}

/** --dtype / --quant, checked before the run is opened (they apply to --format gguf only). */
function ggufFlags(flags: BakeFlags): { dtype?: WeightDType; quant?: GgufQuant } {
  for (const [flag, value, allowed] of [
    ['--dtype', flags.dtype, GGUF_DTYPES],
    ['--quant', flags.quant, GGUF_QUANTS],
  ] as const) {
    if (value === undefined) continue;
    if (flags.format !== 'gguf')
      throw new ScalpelError(`${flag} ${value}: only --format gguf takes ${flag}, not --format ${flags.format}`);
    if (!(allowed as readonly string[]).includes(value))
      throw new ScalpelError(`${flag}: expected one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
  }
  return { dtype: flags.dtype as WeightDType | undefined, quant: flags.quant as GgufQuant | undefined };
}

export function register(program: Command): void {
  program
    .command('bake')
    .description(
      "write a copy of the model with the run's chosen direction removed from its weights (no hooks needed at inference)",
    )
    .requiredOption('--run <dir>', 'run directory with a finished select stage')
    .requiredOption('--out <path>', 'what to write: a model directory (hf), a .gguf file, or an adapter directory')
    .option(
      '--format <format>',
      'hf (a Hugging Face model folder) | gguf (llama.cpp / Ollama) | peft-lora | gguf-lora | control-vector',
      'hf',
    )
    .option('--model <model>', `the model the run was made with: ${MODEL_HELP} (default: the run's)`)
    .option('--lambda <x>', "partial orthogonalization strength λ in [0, 1] (default: the run's)")
    .option('--strength <s>', "ablation strength in [0, 1], W − s·ŵŵᵀW (default: the run's)")
    .option('--dtype <dtype>', "gguf: storage of the weight matrices, f32 | f16 | bf16 (default: the model's)")
    .option('--quant <type>', 'gguf: quantize the weight matrices, q8_0 (norms and biases stay f32)')
    .option('--quiet', 'no progress bar or log lines')
    .option('--gate', 'refused: a gate is a run-time mode (eval, serve, chat)')
    .action(async (flags: BakeFlags & { gate?: boolean }) => {
      if (flags.gate)
        throw new ScalpelError(
          '--gate: cannot be baked: a weight edit applies to every prompt, and the gate decides per prompt from its activations at run time (use eval, serve or chat --gate)',
        );
      if (!(BAKE_FORMATS as readonly string[]).includes(flags.format))
        throw new ScalpelError(
          `--format: expected one of ${BAKE_FORMATS.join(', ')}, got ${JSON.stringify(flags.format)}`,
        );
      const gguf = ggufFlags(flags);
      const { runDir, run, modelDir } = await openRun(flags.run, flags.model, flags.quiet);
      if (flags.format === 'control-vector') return exportControlVector(flags, runDir, run, modelDir);
      // The run's ablation mode and α (bake has no flags for them, so errors name run.json's fields); λ may change.
      const request = { run, lambda: lambdaFlag(flags.lambda), strength: strengthFlag(flags.strength) };
      const { intervention, settings, selection: sel, chosen } = await interventionFromRun(runDir, request);
      const direction = bakeableDirection(intervention, modelDir, inRunFile(join(runDir, FILES.run)));
      const lambda = settings.lambda;
      const strength = settings.strength;
      const log = logger(flags.quiet);
      // Written into every format's metadata: where the edit came from.
      const provenance = {
        scalpel_source_model: modelDir,
        scalpel_run: runDir,
        scalpel_target: sel.target,
        scalpel_position: String(chosen.position),
        scalpel_layer: String(chosen.layer),
        scalpel_lambda: String(lambda),
        ...(strength !== 1 ? { scalpel_strength: String(strength) } : {}),
      };
      if (flags.format === 'peft-lora' || flags.format === 'gguf-lora') {
        const out = resolve(flags.out);
        const written = await writeAdapter(flags.format, modelDir, out, direction, provenance, strength);
        log(
          `wrote the ablation of position ${chosen.position}, layer ${chosen.layer} (λ = ${lambda}) as a rank-1 ${flags.format} adapter on ${written} tensors: ${out}`,
        );
        return;
      }
      const bar = progressFactory({ quiet: flags.quiet })('baking (MB)', 1);
      const mb = (bytes: number) => Math.round(bytes / 1e6);
      const common = {
        modelDir,
        direction,
        strength,
        provenance,
        onProgress: (done: number, total: number) => bar.update(mb(done), mb(total)),
      };
      const res =
        flags.format === 'gguf'
          ? await exportGguf({ ...common, outFile: flags.out, ...gguf }).finally(() => bar.stop())
          : await bakeAblation({ ...common, outDir: resolve(flags.out) }).finally(() => bar.stop());
      if ('alreadyBaked' in res && res.alreadyBaked) {
        log(
          `${res.outDir} already holds this bake (its scalpel_bake.json matches the run and settings); nothing to do`,
        );
        return;
      }
      const written = 'outFile' in res ? `${res.outFile} (and ${res.modelfile})` : res.outDir;
      log(
        `baked ${sel.target === 'true' ? 'the true-refusal direction' : `the false-refusal vector (λ = ${lambda})`} of position ${chosen.position}, layer ${chosen.layer} into ${res.changed.length} tensors${res.untied ? ' (the output head, tied before, keeps the original embedding)' : ''}: ${written}`,
      );
      if ('notes' in res) for (const note of res.notes) log(`note: ${note}`);
    });
}

/** peft-lora / gguf-lora: the bake as a rank-1 adapter; returns how many tensors it edits. */
async function writeAdapter(
  format: 'peft-lora' | 'gguf-lora',
  modelDir: string,
  out: string,
  direction: Float32Array,
  provenance: Record<string, string>,
  strength: number,
): Promise<number> {
  const adapter = await rankOneAdapter(modelDir, direction);
  const o = { baseModel: modelDir, provenance, direction, strength };
  if (format === 'peft-lora') await writePeftAdapter(adapter, out, o);
  else {
    checkFileTarget(out);
    await writeGgufLora(adapter, out, { ...o, configPath: join(modelDir, 'config.json') });
  }
  return adapter.edits.length;
}

/** control-vector: the run's activation addition α·r, at llama.cpp's numbering of its layer. */
async function exportControlVector(flags: BakeFlags, runDir: string, run: RunJson, modelDir: string): Promise<void> {
  const runFile = join(runDir, FILES.run);
  const { intervention, settings } = await interventionFromRun(runDir, { run });
  const add = intervention.add;
  if (!add || settings.alpha === 0)
    throw new ScalpelError(
      `${runFile}: config.alpha is 0, so the run adds no vector to export as a control vector; rerun select with --alpha`,
    );
  const configPath = join(modelDir, 'config.json');
  const config = readJsonFile(configPath);
  const { args } = parseConfig(config, configPath);
  const out = resolve(flags.out);
  checkFileTarget(out);
  const { tensor } = await writeControlVector(out, add, {
    numLayers: args.numLayers,
    modelHint: llamaCppArch(String(config['model_type']), configPath),
    where: runFile,
    provenance: { scalpel_source_model: modelDir, scalpel_run: runDir, scalpel_alpha: String(settings.alpha) },
  });
  logger(flags.quiet)(
    `wrote α·r (α = ${settings.alpha}) added at layer ${add.layer}'s input as llama.cpp control vector ${tensor}: ${out}`,
  );
}

/** A single-file format's --out: a new file or one to replace, never a directory. */
function checkFileTarget(out: string): void {
  if (existsSync(out) && statSync(out).isDirectory())
    throw new ScalpelError(`--out ${out}: is a directory; this format writes one file (e.g. ${basename(out)}.gguf)`);
}
