"""Reference outputs of Python's own `random` module for Scalpel's reimplementation (src/rng.ts, PythonRandom).

`scalpel run --paper` must draw exactly the prompts the paper's code draws: it calls `random.seed(cfg.random_seed)`
and then `random.sample(split, n)` once per prompt set, in a fixed order, from that one generator. This script records
what CPython returns for the calls Scalpel mirrors (seed with small and multi-word integers, getrandbits, random,
sample on both of CPython's code paths: the pool path for small populations, the set path for large ones), so the
test compares against the interpreter itself, not against a second reading of its source.

    python tools/make_python_random_fixture.py > test/fixtures/python-random.json
"""

import json
import random
import sys

SEEDS = [0, 1, 2, 42, 12345, 2**32 - 1, 2**32, 2**40 + 5, 2**64 + 3]
# (population size, k): small populations take CPython's pool path, large ones (n > setsize) its set path.
SAMPLES = [(1, 1), (5, 0), (5, 5), (10, 3), (21, 6), (50, 32), (128, 128), (300, 128), (1000, 5), (1000, 32),
           (5000, 128), (70000, 200), (2**20, 7)]


def main() -> None:
    out = {"python": sys.version.split()[0], "seeds": []}
    for seed in SEEDS:
        r = random.Random(seed)
        bits32 = [r.getrandbits(32) for _ in range(8)]
        bits = [[k, r.getrandbits(k)] for k in (1, 5, 17, 31, 32)]
        floats = [r.random() for _ in range(4)]
        samples = []
        for n, k in SAMPLES:
            samples.append({"n": n, "k": k, "result": r.sample(range(n), k)})
        # Calls in the paper's order from one generator, as its load_and_sample_datasets makes them.
        paper = random.Random(seed)
        paper_order = [paper.sample(range(n), k) for n, k in [(1000, 128), (18793, 128), (260, 128), (200, 32), (5000, 32), (41, 32)]]
        out["seeds"].append({"seed": str(seed), "getrandbits32": bits32, "getrandbits": bits, "random": floats,
                             "samples": samples, "paper_order": paper_order})
    json.dump(out, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
