#!/usr/bin/env python3
"""Reference log-likelihoods for `scalpel ability`, with transformers as the independent reference.

    /work/venv/bin/python tools/make_ability_fixtures.py [--data-dir ../shared/datasets/raw]

Writes test/fixtures/expected/ability/<model>.json for the random-weight llama fixture and the project's own model
(read by test/ability.test.ts). Each file holds, built here from the public sample files and the prompt formats as
the README states them (not from Scalpel's code):

- mmlu: the first N_MMLU test questions taken in turn from the five subjects (abstract_algebra, global_facts,
  high_school_geography, machine_learning, world_religions), each in the 5-shot format of the original MMLU /
  lm-eval-harness `mmlu` (header "The following are multiple choice questions (with answers) about {subject}.",
  the subject's five dev questions with their answers, then the question ending "Answer:"), scored by the
  log-likelihood of the continuations " A", " B", " C", " D";
- arc: the first N_ARC ARC-Challenge test questions, "Question: {q}\\nAnswer:" with " {choice text}" as each
  continuation (lm-eval-harness `arc_challenge`, 0-shot);
- ppl: the first WikiText-2 test article (from its " = Title = " line to the next one, trimmed), tokenised without
  special tokens and cut into non-overlapping windows of 511 tokens, each preceded by BOS (EOS when the tokenizer
  has no BOS); every token's log-probability given its window.

Token ids follow lm-eval-harness: context ids = encode(context); a continuation's ids = encode(context +
continuation) after the context's ids; BOS (when the tokenizer has one) before the context; when a sequence would
exceed the model's max_position_embeddings, the context loses tokens from its left, after BOS.

The files record the token ids too, so a mismatch in formatting or tokenization shows as such, not only as a
different number. Log-likelihoods are float32 forward passes in float64 sums, stored with 9 significant digits.
Deterministic: two runs give identical bytes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import re
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "test" / "fixtures" / "expected" / "ability"
SUBJECTS = ["abstract_algebra", "global_facts", "high_school_geography", "machine_learning", "world_religions"]
LETTERS = ["A", "B", "C", "D"]
N_MMLU = 5
N_ARC = 6
PPL_WINDOW = 512
MODELS = {
    "llama": REPO / "test" / "fixtures" / "models" / "llama",
    "scalpel-tiny-chat": REPO / "models" / "scalpel-tiny-chat",
}


def f9(x: float) -> float:
    if not math.isfinite(x):
        raise ValueError(f"non-finite value {x}")
    return float(f"{x:.9g}")


def read_mmlu(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [
        {"question": r["question"], "choices": [r[f"choice{i}"] for i in range(4)], "answer": int(r["answer"])}
        for r in rows
    ]


def mmlu_block(q: dict) -> str:
    text = q["question"].strip() + "\n"
    for letter, choice in zip(LETTERS, q["choices"]):
        text += f"{letter}. {choice}\n"
    return text + "Answer:"


def mmlu_items(raw: Path) -> list[dict]:
    tests = {s: read_mmlu(raw / "mmlu" / "test" / f"{s}_test.csv") for s in SUBJECTS}
    items = []
    i = 0
    while len(items) < N_MMLU:
        for s in SUBJECTS:
            if i < len(tests[s]) and len(items) < N_MMLU:
                q = tests[s][i]
                shots = read_mmlu(raw / "mmlu" / "dev" / f"{s}_dev.csv")[:5]
                context = f"The following are multiple choice questions (with answers) about {s.replace('_', ' ')}.\n\n"
                for shot in shots:
                    context += f"{mmlu_block(shot)} {LETTERS[shot['answer']]}\n\n"
                context += mmlu_block(q)
                items.append({
                    "id": f"{s}/{i}",
                    "answer": q["answer"],
                    "context": context,
                    "continuations": [f" {l}" for l in LETTERS],
                })
        i += 1
    return items


def arc_items(raw: Path) -> list[dict]:
    lines = (raw / "arc_challenge" / "arc_challenge_test.jsonl").read_text(encoding="utf-8").splitlines()
    items = []
    for line in lines[:N_ARC]:
        d = json.loads(line)
        labels = [o["label"] for o in d["options"]]
        items.append({
            "id": d["id"],
            "answer": labels.index(d["answer"]),
            "context": f"Question: {d['question']}\nAnswer:",
            "continuations": [" " + o["text"] for o in d["options"]],
            "choice_chars": [len(o["text"]) for o in d["options"]],
        })
    return items


def first_article(raw: Path) -> tuple[str, str]:
    lines = (raw / "wikitext2" / "test.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    heads = [i for i, l in enumerate(lines) if re.fullmatch(r" = [^=].* = \n?", l)]
    title = re.fullmatch(r" = ([^=].*) = \n?", lines[heads[0]]).group(1)
    return title, "".join(lines[heads[0]:heads[1]]).strip()


@torch.no_grad()
def token_logprobs(model, ids: list[int], start: int) -> list[float]:
    """log p(ids[t] | ids[:t]) for t >= start, float32 model, float64 log-softmax."""
    logits = model(torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, dim=-1)
    return [lp[t - 1, ids[t]].item() for t in range(start, len(ids))]


def mc(model, tok, items: list[dict], max_len: int) -> list[dict]:
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    out = []
    for it in items:
        ctx_ids = enc(it["context"])
        conts = [enc(it["context"] + c)[len(ctx_ids):] for c in it["continuations"]]
        room = max_len - len(bos) - max(len(c) for c in conts)
        cut = max(0, len(ctx_ids) - max(1, room))
        context = bos + ctx_ids[cut:]
        lls = [sum(token_logprobs(model, context + c, len(context))) for c in conts]
        row = {
            "id": it["id"],
            "answer": it["answer"],
            "context_ids": context,
            "continuation_ids": conts,
            "truncated": cut,
            "loglik": [f9(x) for x in lls],
            "pred": max(range(len(lls)), key=lambda i: lls[i]),
        }
        if "choice_chars" in it:
            norm = [x / max(1, n) for x, n in zip(lls, it["choice_chars"])]
            row["pred_norm"] = max(range(len(norm)), key=lambda i: norm[i])
        out.append(row)
    return out


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make(name: str, model_dir: Path, raw: Path) -> None:
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    max_len = model.config.max_position_embeddings
    mmlu = mc(model, tok, mmlu_items(raw), max_len)
    arc = mc(model, tok, arc_items(raw), max_len)

    title, text = first_article(raw)
    doc = tok.encode(text, add_special_tokens=False)
    prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    window = min(max_len, PPL_WINDOW)
    windows = []
    for i in range(0, len(doc), window - 1):
        ids = [prefix] + doc[i:i + window - 1]
        lps = token_logprobs(model, ids, 1)
        windows.append({"start": i, "tokens": len(ids) - 1, "logprob_sum": f9(sum(lps))})
        if i == 0:
            first = {"ids": ids, "logprobs": [f9(x) for x in lps]}
    total = sum(w["logprob_sum"] for w in windows)
    fixture = {
        "model_dir": str(model_dir.relative_to(REPO)),
        "model_sha256": file_sha(model_dir / "model.safetensors"),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "dtype": "float32",
        "max_position_embeddings": max_len,
        "mmlu": mmlu,
        "mmlu_accuracy": f9(sum(r["pred"] == r["answer"] for r in mmlu) / len(mmlu)),
        "arc": arc,
        "arc_accuracy": f9(sum(r["pred"] == r["answer"] for r in arc) / len(arc)),
        "arc_acc_norm": f9(sum(r["pred_norm"] == r["answer"] for r in arc) / len(arc)),
        "ppl": {
            "title": title,
            "doc_tokens": len(doc),
            "window": window,
            "prefix_token": prefix,
            "first_window": first,
            "windows": windows,
            "perplexity": f9(math.exp(-total / len(doc))),
        },
    }
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(fixture, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    tmp.replace(path)
    print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size} bytes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "datasets" / "raw")
    ap.add_argument("--only", choices=sorted(MODELS))
    args = ap.parse_args()
    for name, model_dir in MODELS.items():
        if args.only in (None, name):
            make(name, model_dir, args.data_dir.resolve())


if __name__ == "__main__":
    main()
