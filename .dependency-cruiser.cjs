// Dependency rules for src/ (run by `npm run deps`, in CI and by test/layers.test.ts): the layers import only
// downwards, nothing is circular (type-only imports included) and the library never reaches into test/ or bench/.
// Paths are relative to the working directory, so the same file also checks the mirror tree in
// test/fixtures/layers-bad/, which must break the rules.

// The layers from the bottom up. A module may import from its own layer and the ones listed before it, never from a
// later one; a file under src/ that is in no layer may import nothing from src/ until it is given one.
const LAYERS = [
  {
    name: 'ground',
    path: '^src/(errors|tensor|rng)\\.ts$',
    job: 'the error type, the tensor data types, seeded randomness',
  },
  { name: 'io', path: '^src/io/', job: 'bytes on disk; knows nothing of models' },
  {
    name: 'hub',
    path: '^src/hub/',
    job: 'model references → local folders: the Hugging Face Hub and its cache; knows nothing of model contents',
  },
  { name: 'engine', path: '^src/engine/', job: 'the forward pass over ModelArgs and tensors, whoever built them' },
  { name: 'arch', path: '^src/arch/', job: 'per-architecture config.json → ModelArgs and tensor names' },
  { name: 'tokenizer', path: '^src/tokenizer/', job: 'text ↔ token ids and chat templates' },
  { name: 'model', path: '^src/model/', job: 'a model directory: files, weights and tokenizer put together' },
  { name: 'method', path: '^src/method/', job: 'the paper, over the Backend interface' },
  {
    name: 'report',
    path: '^src/report/',
    job: 'a run directory → one self-contained HTML report with inline SVG charts',
  },
  {
    name: 'serve',
    path: '^src/serve/',
    job: 'the OpenAI-compatible HTTP server over the scheduler and the method',
  },
  { name: 'cli', path: '^src/cli/', job: 'the scalpel command, a thin shell over the method' },
  { name: 'library', path: '^src/index\\.ts$', job: 'the public API, the top: it may export from any layer' },
];

const layerRules = LAYERS.map((layer, index) => ({
  name: `layer-${layer.name}`,
  comment: `${layer.name} (${layer.job}) may import only from: ${LAYERS.slice(0, index + 1)
    .map((below) => below.name)
    .join(', ')}`,
  severity: 'error',
  from: { path: layer.path },
  to: { path: '^src/', pathNot: LAYERS.slice(0, index + 1).map((below) => below.path) },
}));

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'src-outside-layers',
      comment: 'every file under src/ belongs to a layer (add it to LAYERS in .dependency-cruiser.cjs)',
      severity: 'error',
      from: { path: '^src/', pathNot: LAYERS.map((layer) => layer.path) },
      to: { path: '^src/' },
    },
    {
      name: 'no-circular',
      comment: 'no import cycles in src/, type-only imports included: a cycle means two modules are really one',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'no-test-or-bench-in-src',
      comment: 'the library must not depend on its tests or on the benchmark',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'no-unresolvable',
      comment: 'an import the checker cannot resolve is one it cannot check',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    // Type-only imports count: `import type` cycles are still cycles between modules.
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
    // Resolve packages through their package.json "exports" (vega-lite has no "main" or index.js to fall back on).
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'] },
  },
};
