// Throughput of `scalpel serve` (after `npm run build`): N concurrent greedy clients against one client alone, on the
// committed small chat model, over HTTP on 127.0.0.1. Every request generates exactly --tokens tokens (ignore_eos),
// so tokens/s compare like with like. Usage: node bench/serve.mjs [--clients 16] [--tokens 64] [--model DIR]
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../dist/src/model/load.js';
import { createServer } from '../dist/src/serve/server.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '16' },
    tokens: { type: 'string', default: '64' },
    model: { type: 'string', default: path.join(root, 'models', 'scalpel-tiny-chat') },
  },
});
const clients = Number(values.clients);
const tokens = Number(values.tokens);
const loaded = await loadModel(values.model);
const server = createServer({ loaded, name: 'bench', maxSequences: clients, log: () => {} });
const base = await server.listen({ port: 0 });

async function one(i) {
  const r = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'bench',
      prompt: `Story ${i}: once upon a time`,
      max_tokens: tokens,
      temperature: 0,
      ignore_eos: true,
    }),
  });
  const body = await r.json();
  return body.usage.completion_tokens;
}

async function timed(n) {
  const t0 = performance.now();
  const counts = await Promise.all(Array.from({ length: n }, (_, i) => one(i)));
  const s = (performance.now() - t0) / 1000;
  return counts.reduce((a, b) => a + b, 0) / s;
}

await timed(1); // warm-up
const alone = await timed(1);
const together = await timed(clients);
console.log(`1 client: ${alone.toFixed(1)} tok/s`);
console.log(`${clients} clients: ${together.toFixed(1)} tok/s`);
console.log(`ratio: ${(together / alone).toFixed(2)}×`);
await server.close();
