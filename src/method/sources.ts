// Where the public prompt sets come from: for every file a named set reads, the Git repository and commit it is
// pinned to, its path there, its sha256 and size (as in the shared raw/ collection, checked by
// scripts/dataset-hashes.mjs), its licence and, when the pinned repository holds a copy, the canonical upstream.
// Also where downloads go (the cache) and where they come from (raw files of GitHub, or a test server).
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

interface Repo {
  /** owner/name on GitHub. */
  repo: string;
  commit: string;
}

// The letters of the shared collection's README (../shared/datasets/README.md), so the two can be compared.
const A: Repo = { repo: 'andyrdt/refusal_direction', commit: '9d852fae1a9121c78b29142de733cb1340770cc3' };
const B: Repo = { repo: 'mainlp/False-Refusal-Mitigation', commit: '916dcac6fb1c5fcccc9581471370645763c65ce6' };
const C: Repo = { repo: 'paul-rottger/exaggerated-safety', commit: 'd7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d' };
const D: Repo = { repo: 'InvokerStark/OverKill', commit: '9551a7ff7b2cb18d178e64fb5cc95e4684311b3b' };
const E: Repo = { repo: 'sebastianvne/supp_exp', commit: '4b8a74e37021d7a25cb13529b84d82137c6cb0a7' };
const F: Repo = { repo: 'allenai/noncompliance', commit: '25bf77cc668814360405cdb8197c4368205806c7' };
const H: Repo = { repo: 'Baisayan/hack', commit: '2b37da1c255e43e16a74ecd3e51c99ea992b5237' };
const I: Repo = { repo: 'HaeChan0305/MLILAB-FedLLM', commit: 'd92730e8bacd7b3a61e551e015e40588e10234b4' };
const J: Repo = { repo: 'yukangZhuu/basic_evaluator', commit: 'a85b6686ee9c716a69ca865ef77f408a29e3d5c2' };
const K: Repo = { repo: 'pytorch/examples', commit: '77f55b912142e11fcfdf5b530231fb9c52f181e8' };

export interface FileSource extends Repo {
  /** Path under a data directory (the raw/ layout), as in DatasetSpec.file. */
  file: string;
  /** Path of the file in `repo` at `commit`. */
  path: string;
  /** Lower-case hex sha256 of the file's bytes. */
  sha256: string;
  bytes: number;
  licence: string;
  /** The canonical source, when the pinned repository holds a copy (Hugging Face datasets are "HF owner/name"). */
  upstream?: string;
}

const RD_LICENCE =
  'Apache-2.0 (repository); its sources keep theirs: AdvBench, TDC 2023, HarmBench, JailbreakBench, StrongREJECT MIT, MaliciousInstruct none stated';
const ALPACA_LICENCE = 'CC BY-NC 4.0 (Alpaca instructions; repository Apache-2.0)';
const ORB_LICENCE = 'CC BY 4.0 (OR-Bench; repository Apache-2.0)';

export const FILE_SOURCES: readonly FileSource[] = [
  ...(
    [
      ['harmful_train', '8f5c0eac0efd2a7f99084bbe8d0de2c465e31b1997184783c917969d9de9ece1', 34613],
      ['harmful_val', '305f1d1e6dfa6c50a32d24a18ef815f42b5441eb83e6d7767d242107162fd9f4', 6763],
      ['harmful_test', '5e12ae102c3791dee083a69ab6269a78e033411c629bc3f66f75d2fde196d9ef', 115743],
      ['harmless_train', '86623b1f8a25aa35df153fc97a556dbcebb6a7c881538ae43ee479ca17f2e002', 2344466],
      ['harmless_val', '772010758e7d771ef4c7e5e4acdfd7598dcece1a6f383f20d382f640913a2a4d', 780532],
      ['harmless_test', '1b5930ce5e855ada758b3116ce7c4aaea9b9d05f8cdd77b385511d4c84173b19', 783466],
    ] as const
  ).map(([name, sha256, bytes]) => ({
    ...A,
    file: `refusal_direction_splits/${name}.json`,
    path: `dataset/splits/${name}.json`,
    sha256,
    bytes,
    licence: name.startsWith('harmless') ? ALPACA_LICENCE : RD_LICENCE,
  })),
  ...(
    [
      ['train', 'ff77215ebce83c5fe344c30de7b718f7294defa981ec50924635a3ee4ebf0f5a', 199194],
      ['val', 'd97030008c36c605ad4a33f679b1c3d6ea1966a6a296e1ef81b649f2f24871b5', 23372],
      ['test', 'a5a66718b1f5279b7a96a17d6ad0320f82150cdae03a94a46c60cf90aff0ba12', 24592],
    ] as const
  ).map(([split, sha256, bytes]) => ({
    ...B,
    file: `false_refusal_mitigation_splits/or_bench_hard_${split}.json`,
    path: `dataset/splits/or_bench_hard_${split}.json`,
    sha256,
    bytes,
    licence: ORB_LICENCE,
  })),
  {
    ...E,
    file: 'or-bench/or-bench-toxic.csv',
    path: 'datasets/or-bench/or-bench-toxic.csv',
    sha256: '30da2e73463df8a1d08be95ed84d4d3dc4f3bc07826c83fca97e6785110783ba',
    bytes: 64067,
    licence: 'CC BY 4.0 (OR-Bench, per its Hugging Face card; this copy states none)',
    upstream: 'HF bench-llm/or-bench (or-bench-toxic)',
  },
  {
    ...C,
    file: 'xstest/xstest_prompts.csv',
    path: 'xstest_prompts.csv',
    sha256: '11783fb294ed017473ee53c207d71f2161c7672c8d0b037501e78387f801cb5a',
    bytes: 38719,
    licence: 'CC BY 4.0',
  },
  {
    ...D,
    file: 'oktest/OKTest.csv',
    path: 'data/OKTest.csv',
    sha256: '1be3e8d3fe6b45a170653da63c8cf70dbf97508a48735e65db0713a44e158860',
    bytes: 22289,
    licence: 'none stated',
  },
  {
    ...A,
    file: 'jailbreakbench/jailbreakbench.csv',
    path: 'dataset/raw/jailbreakbench.csv',
    sha256: '45e9a8923b28f547bb372fbaa9af7df8b38c818a80ae50c3bab97704197ff516',
    bytes: 23111,
    licence: 'MIT (JBB-Behaviors)',
    upstream: 'JailbreakBench/jailbreakbench src/jailbreakbench/data/behaviors.csv; HF JailbreakBench/JBB-Behaviors',
  },
  {
    ...H,
    file: 'jailbreakbench/benign-behaviors.csv',
    path: 'data/benign-behaviors.csv',
    sha256: 'c0958ac974fb6629527aeff6c81c88154a877190d07313ac377d36951fde5d3e',
    bytes: 20570,
    licence: 'MIT (JBB-Behaviors; this copy states none)',
    upstream: 'HF JailbreakBench/JBB-Behaviors (benign)',
  },
  {
    ...A,
    file: 'harmbench/harmbench_test.csv',
    path: 'dataset/raw/harmbench_test.csv',
    sha256: '75d257b3e7428c52eb7b0154318f455af3e01b09a3794b5e2f3d36054f3c0e29',
    bytes: 160828,
    licence: 'MIT (HarmBench)',
    upstream: 'centerforaisafety/HarmBench data/behavior_datasets/harmbench_behaviors_text_test.csv',
  },
  {
    ...A,
    file: 'advbench/advbench.csv',
    path: 'dataset/raw/advbench.csv',
    sha256: '6cd1a5c63c07610d7eb67307772ee5606017ee950b5770ab288a2c487489d3e1',
    bytes: 82125,
    licence: 'MIT (AdvBench)',
    upstream: 'llm-attacks/llm-attacks data/advbench/harmful_behaviors.csv',
  },
  {
    ...A,
    file: 'strongreject/strongreject.csv',
    path: 'dataset/raw/strongreject.csv',
    sha256: '4dd70357e4ff8b5d0ba5ebafecab5d6dd5633ce8046e3dd1c8bd93e64de44381',
    bytes: 56359,
    licence: 'MIT (StrongREJECT)',
    upstream: 'alexandrasouly/strongreject strongreject_dataset/strongreject_dataset.csv',
  },
  // Two sources of the harmful validation pool (harmful-val-pool, datasets.ts); the shared collection's
  // malicious_instruct/MaliciousInstruct.txt is byte-identical to A's copy.
  {
    ...A,
    file: 'malicious_instruct/MaliciousInstruct.txt',
    path: 'dataset/raw/malicious_instruct.txt',
    sha256: 'a64d69dd1004aac4a23aaff3748fb8f17161893f74db36f45b8bc849eb1bcce5',
    bytes: 6269,
    licence: 'none stated (MaliciousInstruct)',
    upstream: 'Princeton-SysML/Jailbreak_LLM data/MaliciousInstruct.txt',
  },
  {
    ...A,
    file: 'tdc2023/tdc2023_dev_behaviors.json',
    path: 'dataset/raw/tdc2023_dev_behaviors.json',
    sha256: '9392c63ad0193f0510f33812593f0dc71d13ae8b2ad93f64d670e9795deee1b0',
    bytes: 4080,
    licence: 'MIT (TDC 2023)',
  },
  {
    ...F,
    file: 'coconot/coconot_contrast_eval.jsonl',
    path: 'data/coconot_contrast_eval.jsonl',
    sha256: '76dccec176743ed656279f2969c51abb68bda94e5fda8397e34ff5638e021d86',
    bytes: 69278,
    licence: 'MIT',
  },
  {
    ...F,
    file: 'coconot/coconot_eval.jsonl',
    path: 'data/coconot_eval.jsonl',
    sha256: 'df72466c477207f14a96c5940c3ef3b93b1b50c0d1e7ed7c5fb5dc6d6140c077',
    bytes: 209427,
    licence: 'MIT',
  },
  // General-ability samples (scalpel ability): MMLU's five sampled subjects, test questions and their 5-shot dev
  // questions; ARC-Challenge's test set; WikiText-2's test split.
  ...(
    [
      ['test/abstract_algebra_test', 'afdfc6f71eb42297a51f53bd221429671a4065a6425bd7631acb84fef011bfd4', 17406],
      ['test/global_facts_test', 'b80c9b31bc56727ebb3f1f980fbf40dbbd48565f609d1be9642ebe10a1c747a2', 16141],
      ['test/high_school_geography_test', '4c0c06e32b73ec3f5b55bdab2a124b3b9736e888d2edadc6f40d6172052f7507', 37238],
      ['test/machine_learning_test', '50d163266dbc8672b8097c32a4765ff4a5e8767ac4a8971e70ddccbd5b817bd3', 31636],
      ['test/world_religions_test', '203c71d35b4d667a4010b032ad57cc75a561209c94e2235eb5c549310bf23789', 21204],
      ['dev/abstract_algebra_dev', 'f5bc2f1c0e4098ddba357af2b02919269b1a0bbab9e7c11b31c1c20da36a3263', 767],
      ['dev/global_facts_dev', '6b3da0cce9ff48e7357783ad7390c488eb07bc26d00a3ceb42c81e2cd2e671b9', 1156],
      ['dev/high_school_geography_dev', '55d2bcd20524a0d0c8b39fb9b48aec36adfdb93ca2009271a58cc02d60fc89e3', 1316],
      ['dev/machine_learning_dev', '25b78353edd62f6b4d17fe6e2ea391018c23e61e2a0fe6e8807eb32cea2561af', 2242],
      ['dev/world_religions_dev', '13404d8d076006e6c4aa13cd05a7ff4691be0e59b7630bdf7e9826244464ecdd', 585],
    ] as const
  ).map(([name, sha256, bytes]) => ({
    ...I,
    file: `mmlu/${name}.csv`,
    path: `data/mmlu/${name}.csv`,
    sha256,
    bytes,
    licence: 'MIT (MMLU; repository Apache-2.0)',
    upstream: 'hendrycks/test (MMLU), HF-converted columns',
  })),
  {
    ...J,
    file: 'arc_challenge/arc_challenge_test.jsonl',
    path: 'data/arc_challenge_test.jsonl',
    sha256: 'bafb2fcb61ad7fdf85d3540d36a00d48228317298ae976ad2c0c0f24e247151c',
    bytes: 520912,
    licence: 'CC BY-SA 4.0 (ARC; this copy states none)',
    upstream: 'HF allenai/ai2_arc (ARC-Challenge test)',
  },
  {
    ...K,
    file: 'wikitext2/test.txt',
    path: 'word_language_model/data/wikitext-2/test.txt',
    sha256: 'd790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0',
    bytes: 1256449,
    licence: 'CC BY-SA (WikiText; repository BSD-3-Clause)',
    upstream: 'Salesforce WikiText-2 (tokenised variant, wikitext-2-v1)',
  },
];

export function fileSource(file: string): FileSource | undefined {
  return FILE_SOURCES.find((s) => s.file === file);
}

/** Where raw files are downloaded from: the public raw-file host, or $SCALPEL_DATASETS_ENDPOINT (tests, mirrors). */
export const DEFAULT_DATASETS_ENDPOINT = 'https://raw.githubusercontent.com';

export function datasetsEndpoint(): string {
  const env = process.env['SCALPEL_DATASETS_ENDPOINT'];
  return (env === undefined || env === '' ? DEFAULT_DATASETS_ENDPOINT : env).replace(/\/+$/, '');
}

/** The raw-file URL of a pinned file: {endpoint}/{owner}/{repo}/{commit}/{path}. */
export function sourceUrl(s: FileSource, endpoint = datasetsEndpoint()): string {
  const path = s.path.split('/').map(encodeURIComponent).join('/');
  return `${endpoint}/${s.repo}/${s.commit}/${path}`;
}

/** The download cache, laid out as the raw/ folder: $SCALPEL_CACHE/datasets, else ~/.cache/scalpel/datasets. */
export function datasetCacheDir(): string {
  const env = process.env['SCALPEL_CACHE'];
  return env === undefined || env === '' ? join(homedir(), '.cache', 'scalpel', 'datasets') : resolve(env, 'datasets');
}
