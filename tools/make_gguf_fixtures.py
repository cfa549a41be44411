"""Reference fixture for Scalpel's Q8_0 quantizer (src/io/ggml-quant.ts): the bytes that llama.cpp's own Python
package (gguf-py, whose Q8_0 is bit-exact with ggml's quantize_row_q8_0_ref) writes for a fixed set of f32 values.

    /work/venv/bin/python tools/make_gguf_fixtures.py   # writes test/fixtures/gguf/q8_0.json
"""
import json
from pathlib import Path

import gguf
import numpy as np
from gguf.quants import quantize

OUT = Path(__file__).resolve().parent.parent / "test" / "fixtures" / "gguf" / "q8_0.json"


def main() -> None:
    rng = np.random.default_rng(13)
    rows = [
        rng.normal(0, 0.02, 32 * 6),  # weight-like values
        rng.normal(0, 3.0, 32 * 4) * (rng.random(32 * 4) < 0.3),  # sparse, large
        np.zeros(32),  # a zero block: scale 0, all q 0
        np.concatenate([[127.0], np.arange(-31, 31, 2, dtype=np.float64)[:31] + 0.5]),  # exact halves: ties
        np.full(32, -1e-3),  # one value repeated: q = -127 everywhere
    ]
    values = np.concatenate(rows).astype(np.float32).reshape(-1, 32)
    q = quantize(values, gguf.GGMLQuantizationType.Q8_0)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "made_by": "tools/make_gguf_fixtures.py",
                "gguf_py_version": getattr(gguf, "__version__", "unknown"),
                "values": [float(v) for v in values.reshape(-1)],
                "q8_0_hex": q.tobytes().hex(),
            }
        )
        + "\n"
    )
    print(f"{OUT}: {values.size} values, {q.nbytes} bytes")


if __name__ == "__main__":
    main()
