"""Reference verdict for `scalpel bake --format control-vector` (test/control-vector.test.ts).

Makes the same small run the test makes (the project's model, built-in sets, --alpha 1), exports its control vector
with the built CLI, reads the file back with llama.cpp's own `gguf` Python package and checks it against the rules
of llama.cpp's control-vector loader (common/common.cpp, llama_control_vector_load_one, and
llama_adapter_cvec::apply): every tensor is named direction.N with an integer N >= 1 (direction.0 is refused;
N >= n_layer is never applied), is F32, one-dimensional, of length n_embd. Writes what it found and its verdict to
test/fixtures/control-vector/scalpel-tiny-chat.json.

Run from the repository root after `npm run build`:  /work/venv/bin/python tools/check_control_vector.py
"""

import json
import os
import subprocess
import sys
import tempfile
from importlib.metadata import version

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "models/scalpel-tiny-chat"
OUT = os.path.join(ROOT, "test", "fixtures", "control-vector", "scalpel-tiny-chat.json")
# Keep in step with test/control-vector.test.ts.
RUN_FLAGS = ["--n-train", "16", "--n-val", "8", "--quiet"]


def scalpel(*args: str) -> None:
    subprocess.run(["node", "bin/scalpel.js", *args], cwd=ROOT, check=True)


def field_value(reader: GGUFReader, key: str):
    f = reader.fields[key]
    return f.contents()


def main() -> None:
    config = json.load(open(os.path.join(ROOT, MODEL, "config.json")))
    n_embd, n_layer = config["hidden_size"], config["num_hidden_layers"]
    with tempfile.TemporaryDirectory() as tmp:
        run = os.path.join(tmp, "run")
        scalpel("extract", "--model", MODEL, "--out", run, *RUN_FLAGS)
        scalpel("select", "--run", run, "--alpha", "1", *RUN_FLAGS)
        cv = os.path.join(tmp, "cv.gguf")
        scalpel("bake", "--run", run, "--out", cv, "--format", "control-vector", "--quiet")
        reader = GGUFReader(cv)
        problems = []
        tensors = []
        for t in reader.tensors:
            prefix, _, index = t.name.partition(".")
            layer = int(index) if prefix == "direction" and index.isdigit() else -1
            if layer < 0:
                problems.append(f"{t.name}: not direction.N")
            elif layer == 0:
                problems.append(f"{t.name}: llama.cpp refuses layer 0")
            elif layer >= n_layer:
                problems.append(f"{t.name}: layer {layer} >= n_layer {n_layer} is never applied")
            if t.tensor_type != GGMLQuantizationType.F32:
                problems.append(f"{t.name}: type {t.tensor_type.name}, expected F32")
            shape = [int(x) for x in t.shape]
            if len(shape) != 1 or shape[0] != n_embd:
                problems.append(f"{t.name}: shape {shape}, expected [{n_embd}]")
            data = np.asarray(t.data, dtype=np.float32)
            tensors.append(
                {
                    "name": t.name,
                    "type": t.tensor_type.name,
                    "shape": shape,
                    "norm": float(np.linalg.norm(data)),
                    "finite": bool(np.isfinite(data).all()),
                }
            )
        if not tensors:
            problems.append("no direction tensors")
        verdict = {
            "made_by": "tools/check_control_vector.py",
            "gguf_py_version": version("gguf"),
            "model_dir": MODEL,
            "run_flags": RUN_FLAGS + ["--alpha", "1"],
            "n_embd": n_embd,
            "n_layer": n_layer,
            "metadata": {
                k: field_value(reader, k)
                for k in ("general.architecture", "controlvector.model_hint", "controlvector.layer_count")
            },
            "tensors": tensors,
            "problems": problems,
            "accepted": not problems,
        }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(verdict, f, indent=1)
        f.write("\n")
    print(json.dumps(verdict, indent=1))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
