"""Reference fixtures for `scalpel bake --format peft-lora` (test/lora.test.ts).

For each model: a seeded unit direction; Scalpel (the built dist/, through node) writes its PEFT adapter for it;
PEFT loads that adapter onto the base model in transformers (float32) and gives the last-position logits of a few
token sequences. Independently of the adapter, PyTorch bakes the same direction into a second copy of the weights
(W <- W - d d^T W on the embedding, every o_proj and down_proj; a tied output head is untied first, keeping the
original embedding, as `scalpel bake` does) and gives the same logits. The tool asserts both agree within 1e-5 of
the logit spread and stores both, with the adapter's sha256, in test/fixtures/lora/NAME.json.

Run from the repository root after `npm run build`:  /work/venv/bin/python tools/make_lora_fixtures.py
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import peft
import torch
import transformers
from peft import PeftModel
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "lora")
MODELS = {
    "llama": "test/fixtures/models/llama",
    "llama-tied": "test/fixtures/models/llama-tied",
    "qwen2": "test/fixtures/models/qwen2",  # f16 weights, read as float32 here and by the test
    "scalpel-tiny-chat": "models/scalpel-tiny-chat",
}
SEQS = [
    [1, 17, 42, 99, 3, 250, 8],
    [5, 6, 7],
    [200, 13, 13, 77, 31, 64, 2, 9, 128, 11],
    [100, 101, 102, 103, 104, 105],
]
WRITE_ADAPTER = """
import { rankOneAdapter, writePeftAdapter } from './dist/src/method/lora.js';
const [modelDir, dirFile, out] = process.argv.slice(1);
const direction = JSON.parse((await import('node:fs')).readFileSync(dirFile, 'utf8'));
const ad = await rankOneAdapter(modelDir, direction);
await writePeftAdapter(ad, out, { baseModel: modelDir, provenance: {}, direction });
"""


def seeded_direction(width: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(width)
    return (v / np.linalg.norm(v)).astype(np.float32)


def last_logits(model, seqs):
    with torch.no_grad():
        return [model(torch.tensor([s])).logits[0, -1].float().numpy() for s in seqs]


def independent_bake(model_dir: str, d: np.ndarray):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    dt = torch.tensor(d, dtype=torch.float64)
    emb = model.model.embed_tokens.weight
    if model.lm_head.weight.data_ptr() == emb.data_ptr():
        model.lm_head.weight = torch.nn.Parameter(emb.detach().clone())  # the head keeps the original
    with torch.no_grad():
        e = emb.double()
        emb.copy_((e - torch.outer(e @ dt, dt)).float())
        for layer in model.model.layers:
            for w in (layer.self_attn.o_proj.weight, layer.mlp.down_proj.weight):
                x = w.double()
                w.copy_((x - torch.outer(dt, dt @ x)).float())
    return model


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    for seed, (name, rel) in enumerate(MODELS.items()):
        model_dir = os.path.join(ROOT, rel)
        width = json.load(open(os.path.join(model_dir, "config.json")))["hidden_size"]
        d = seeded_direction(width, 1000 + seed)
        with tempfile.TemporaryDirectory() as tmp:
            dir_file = os.path.join(tmp, "direction.json")
            json.dump([float(x) for x in d], open(dir_file, "w"))
            adapter = os.path.join(tmp, "adapter")
            subprocess.run(
                ["node", "--input-type=module", "-e", WRITE_ADAPTER, model_dir, dir_file, adapter],
                cwd=ROOT,
                check=True,
            )
            sha = hashlib.sha256(open(os.path.join(adapter, "adapter_model.safetensors"), "rb").read()).hexdigest()
            base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
            before = last_logits(base, SEQS)
            peft_model = PeftModel.from_pretrained(base, adapter).eval()
            with_peft = last_logits(peft_model, SEQS)
            merged = last_logits(peft_model.merge_and_unload(), SEQS)
        baked = last_logits(independent_bake(model_dir, d), SEQS)
        spread = max(float(x.max() - x.min()) for x in baked)
        err = max(float(np.abs(a - b).max()) for a, b in zip(with_peft, baked))
        merged_err = max(float(np.abs(a - b).max()) for a, b in zip(merged, baked))
        effect = max(float(np.abs(a - b).max()) for a, b in zip(before, baked))
        print(f"{name}: |peft - torch bake| {err:.3g}, merged {merged_err:.3g}, edit effect {effect:.3g}, spread {spread:.3g}")
        assert err <= 1e-5 * spread, f"{name}: PEFT's adapter logits differ from the PyTorch bake by {err}"
        fixture = {
            "model_dir": rel,
            "made_by": "tools/make_lora_fixtures.py",
            "peft_version": peft.__version__,
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "adapter_sha256": sha,
            "direction": [float(x) for x in d],
            "max_abs_peft_vs_torch_bake": err,
            "max_abs_merged_vs_torch_bake": merged_err,
            "max_abs_edit_effect": effect,
            "cases": [
                {"input_ids": s, "peft_logits": p.tolist(), "torch_bake_logits": b.tolist()}
                for s, p, b in zip(SEQS, with_peft, baked)
            ],
        }
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(fixture, f)
            f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
