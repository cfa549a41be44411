// Shared building blocks of every architecture: the Architecture interface, a checked reader for config.json, RoPE
// variants and the sliding-window layer pattern. An architecture file (llama.ts, gemma2.ts, …) builds the engine's
// ModelArgs from these and states only where it differs (mlx-lm style).
import { ScalpelError, quoteUntrusted } from '../errors.js';
import type { Activation, LayerArgs, ModelArgs, RopeSpec, TensorMap } from '../engine/args.js';

// The engine owns these types (it runs on them); architecture files and arch/index.ts importers find them here too.
export type { Activation, LayerArgs, ModelArgs, RopeSpec, TensorMap } from '../engine/args.js';

/** One architecture: how its config.json becomes ModelArgs, and how its tensor names become the standard ones. */
export interface Architecture {
  name: string;
  /** config.json model_type values served. */
  modelTypes: string[];
  /** config.json architectures values served. */
  classes: string[];
  args(cfg: Config): ModelArgs;
  /** Which checkpoint tensors to read (default: all), e.g. to skip a vision tower. */
  keep?(name: string): boolean;
  /** Maps checkpoint tensors to the standard (Llama) names; defaults to the identity. */
  sanitize?(tensors: TensorMap, args: ModelArgs): TensorMap;
}

/** A config value as an error shows it: JSON, cut short (a field may hold a whole file's worth of text). */
const shortJson = (v: unknown): string => {
  const text = JSON.stringify(v) ?? 'undefined';
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
};

/** Checked access to config.json: absent keys take the architecture's default, wrong types are ScalpelErrors. */
export class Config {
  constructor(
    readonly raw: Record<string, unknown>,
    readonly file = 'config.json',
  ) {}

  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  private fail(key: string, expected: string): never {
    throw new ScalpelError(`${this.file}: field '${key}' must be ${expected}, got ${shortJson(this.raw[key])}`);
  }

  num(key: string, dflt?: number): number {
    const v = this.raw[key];
    if (v === undefined || v === null) {
      if (dflt === undefined) this.fail(key, 'a number');
      return dflt;
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(key, 'a number');
    return v;
  }

  int(key: string, dflt?: number): number {
    const v = this.raw[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) this.fail(key, 'a positive integer');
    return v;
  }

  /** A number or null (null and absent give the default, which may itself be null). */
  optNum(key: string, dflt: number | null): number | null {
    if (!(key in this.raw)) return dflt;
    const v = this.raw[key];
    if (v === null) return null;
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(key, 'a number or null');
    return v;
  }

  bool(key: string, dflt: boolean): boolean {
    const v = this.raw[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'boolean') this.fail(key, 'true or false');
    return v;
  }

  str(key: string, dflt: string): string {
    const v = this.raw[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'string') this.fail(key, 'a string');
    return v;
  }

  strList(key: string): string[] | null {
    const v = this.raw[key];
    if (v === undefined || v === null) return null;
    if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) this.fail(key, 'a list of strings');
    return v as string[];
  }
}

/** The fields shared by every decoder here, with the architecture's defaults for absent keys. */
export interface BaseDefaults {
  headDim?: number;
  normEps?: number;
  tieEmbeddings?: boolean;
  ropeTheta?: number;
  act?: string;
}

export function activation(cfg: Config, key: string, dflt: string): Activation {
  const name = cfg.str(key, dflt);
  if (name === 'silu' || name === 'swish') return 'silu';
  if (name === 'gelu_pytorch_tanh' || name === 'gelu_tanh') return 'gelu_tanh';
  throw new ScalpelError(
    `${cfg.file}: field '${key}' is ${quoteUntrusted(name, 80, "'")}; supported: silu, gelu_pytorch_tanh`,
  );
}

/** Llama-shaped ModelArgs; architectures override the fields where they differ. */
export function baseArgs(arch: string, cfg: Config, d: BaseDefaults = {}): ModelArgs {
  const width = cfg.int('hidden_size');
  const numHeads = cfg.int('num_attention_heads');
  const numKvHeads = cfg.int('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0)
    throw new ScalpelError(
      `${cfg.file}: num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`,
    );
  const headDim = cfg.int('head_dim', d.headDim ?? Math.floor(width / numHeads));
  const numLayers = cfg.int('num_hidden_layers');
  return {
    arch,
    modelType: cfg.str('model_type', arch),
    vocabSize: cfg.int('vocab_size'),
    width,
    intermediate: cfg.int('intermediate_size'),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    normEps: cfg.num('rms_norm_eps', d.normEps ?? 1e-6),
    normOffset: 0,
    act: activation(cfg, 'hidden_act', d.act ?? 'silu'),
    embedScale: 1,
    attnScale: 1 / Math.sqrt(headDim),
    attnSoftcap: null,
    finalSoftcap: null,
    qkvBias: false,
    oBias: false,
    mlpBias: false,
    qkNorm: false,
    sandwichNorms: false,
    tieEmbeddings: cfg.bool('tie_word_embeddings', d.tieEmbeddings ?? false),
    contextLength:
      cfg.optNum('max_position_embeddings', null) === null ? undefined : cfg.int('max_position_embeddings'),
    layers: [],
  };
}

/** Every layer with the same window and rope. */
export function uniformLayers(n: number, window: number | null, rope: RopeSpec): LayerArgs[] {
  return Array.from({ length: n }, () => ({ window, rope }));
}

/** config.json layer_types (transformers ≥ 4.54), or the given default pattern. */
export function layerTypes(cfg: Config, numLayers: number, dflt: (i: number) => string): string[] {
  const types = cfg.strList('layer_types') ?? Array.from({ length: numLayers }, (_, i) => dflt(i));
  if (types.length !== numLayers)
    throw new ScalpelError(
      `${cfg.file}: layer_types has ${types.length} entries, expected num_hidden_layers = ${numLayers}`,
    );
  for (const t of types)
    if (t !== 'full_attention' && t !== 'sliding_attention')
      throw new ScalpelError(
        `${cfg.file}: layer_types entry ${quoteUntrusted(t, 80, "'")} is not full_attention or sliding_attention`,
      );
  return types;
}

// ---- RoPE ----------------------------------------------------------------------------------------------------

type RopeParams = Record<string, unknown>;

/**
 * The rope parameters of config.json in transformers' standard form: `rope_parameters` (flat, or per layer type
 * when `layerType` is given), else the legacy `rope_theta` + `rope_scaling` (+ `partial_rotary_factor`).
 */
export function ropeParams(
  cfg: Config,
  dfltTheta: number,
  layerType?: string,
  legacyThetaKey = 'rope_theta',
): RopeParams {
  const rp = cfg.raw['rope_parameters'];
  if (rp && typeof rp === 'object') {
    const nested = layerType !== undefined && (rp as Record<string, unknown>)[layerType];
    const p = { ...((nested && typeof nested === 'object' ? nested : rp) as RopeParams) };
    p['rope_theta'] ??= dfltTheta;
    return p;
  }
  const scaling = cfg.raw['rope_scaling'];
  const p: RopeParams = scaling && typeof scaling === 'object' ? { ...(scaling as RopeParams) } : {};
  p['rope_type'] ??= p['type'] ?? 'default';
  p['rope_theta'] = cfg.num(legacyThetaKey, dfltTheta);
  if (cfg.has('partial_rotary_factor')) p['partial_rotary_factor'] ??= cfg.num('partial_rotary_factor');
  return p;
}

const fr = Math.fround;

/** 1 / theta^(2i/dim) for i < dim/2, rounded like torch's f32 arithmetic. */
function defaultInvFreq(theta: number, dim: number): Float32Array {
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) out[i] = fr(1 / fr(theta ** fr((2 * i) / dim)));
  return out;
}

function pnum(p: RopeParams, key: string, file: string, dflt?: number): number {
  const v = p[key];
  if (v === undefined || v === null) {
    if (dflt !== undefined) return dflt;
    throw new ScalpelError(`${file}: rope parameter '${key}' is missing for rope_type '${String(p['rope_type'])}'`);
  }
  if (typeof v !== 'number') throw new ScalpelError(`${file}: rope parameter '${key}' must be a number`);
  return v;
}

function factorList(p: RopeParams, key: string, n: number, file: string): Float32Array {
  const v = p[key];
  if (!Array.isArray(v) || v.length !== n || v.some((x) => typeof x !== 'number'))
    throw new ScalpelError(`${file}: rope parameter '${key}' must be a list of ${n} numbers`);
  return Float32Array.from(v as number[]);
}

/** Builds the RoPE of one layer type from standardized rope parameters (see ropeParams). */
export function makeRope(cfg: Config, p: RopeParams, headDim: number): RopeSpec {
  const file = cfg.file;
  const type = String(p['rope_type'] ?? p['type'] ?? 'default');
  const theta = pnum(p, 'rope_theta', file);
  const partial = pnum(p, 'partial_rotary_factor', file, 1);
  const rotaryDim = Math.floor(headDim * partial);
  if (rotaryDim % 2 !== 0 || rotaryDim <= 0)
    throw new ScalpelError(`${file}: rotary dimension ${rotaryDim} must be even`);
  const inv = defaultInvFreq(theta, rotaryDim);
  switch (type) {
    case 'default':
      return { type, rotaryDim, invFreq: inv, scaling: 1 };
    case 'linear': {
      const factor = pnum(p, 'factor', file);
      return { type, rotaryDim, invFreq: inv.map((f) => fr(f / factor)), scaling: 1 };
    }
    case 'llama3': {
      // Llama 3.1: long wavelengths are divided by factor, short ones kept, the band between interpolated.
      const factor = pnum(p, 'factor', file);
      const lowFf = pnum(p, 'low_freq_factor', file);
      const highFf = pnum(p, 'high_freq_factor', file);
      const oldCtx = pnum(p, 'original_max_position_embeddings', file);
      const lowWl = oldCtx / lowFf;
      const highWl = oldCtx / highFf;
      const out = new Float32Array(inv.length);
      for (let i = 0; i < inv.length; i++) {
        const f = inv[i]!;
        const wl = fr((2 * Math.PI) / f);
        const scaled = wl > lowWl ? fr(f / factor) : f;
        if (wl < highWl || wl > lowWl) out[i] = scaled;
        else {
          const smooth = fr((oldCtx / wl - lowFf) / (highFf - lowFf));
          out[i] = fr(fr(fr((1 - smooth) * scaled) / factor) + fr(smooth * scaled));
        }
      }
      return { type, rotaryDim, invFreq: out, scaling: 1 };
    }
    case 'longrope':
    case 'su': {
      // Phi-3 LongRoPE: per-frequency divisors (short below original_max_position_embeddings, long above) and a
      // cos/sin scaling sqrt(1 + ln(factor) / ln(original_max)).
      const originalMax = pnum(
        p,
        'original_max_position_embeddings',
        file,
        cfg.num('original_max_position_embeddings', 0) || undefined,
      );
      const factor = pnum(p, 'factor', file, cfg.num('max_position_embeddings') / originalMax);
      let scaling =
        p['attention_factor'] === undefined || p['attention_factor'] === null ? NaN : pnum(p, 'attention_factor', file);
      if (Number.isNaN(scaling)) scaling = factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(originalMax));
      const n = rotaryDim / 2;
      const short = factorList(p, 'short_factor', n, file);
      const long = factorList(p, 'long_factor', n, file);
      const scale = (ext: Float32Array) =>
        inv.map((_, i) => fr(1 / fr(ext[i]! * fr(theta ** fr((2 * i) / rotaryDim)))));
      return {
        type: 'longrope',
        rotaryDim,
        invFreq: scale(short),
        scaling: fr(scaling),
        long: { invFreq: scale(long), originalMax },
      };
    }
    default:
      throw new ScalpelError(
        `${file}: rope_type ${quoteUntrusted(type, 80, "'")} is not supported; supported: default, linear, llama3, longrope`,
      );
  }
}
