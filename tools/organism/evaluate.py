"""PyTorch evaluation of the model organism: greedy generation, refusal score, activations, directions, gates.

Mirrors the method issue: left-padded batches, resid_pre at post-instruction positions, difference in means,
directional ablation at every layer on the block input, attention output and MLP output.
"""
from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from .data import is_refusal


class Hooks:
    """Context manager: directional ablation (x <- x - (x.d)d) everywhere and/or addition of a vector at one layer."""

    def __init__(self, model, ablate=None, add=None, add_layer=None, capture=None, capture_last=0):
        self.model, self.ablate, self.add, self.add_layer = model, ablate, add, add_layer
        self.capture, self.capture_last = capture, capture_last
        self.handles = []

    @staticmethod
    def _proj_out(x, d):
        return x - (x @ d).unsqueeze(-1) * d

    def __enter__(self):
        layers = self.model.model.layers
        d = self.ablate
        for li, layer in enumerate(layers):
            def pre(mod, args, kwargs, li=li):
                if args:
                    hs = args[0]
                else:
                    hs = kwargs["hidden_states"]
                if self.add is not None and li == self.add_layer:
                    hs = hs + self.add
                if d is not None:
                    hs = self._proj_out(hs, d)
                if self.capture is not None:
                    self.capture[li].append(hs[:, -self.capture_last:, :].double().cpu())
                if args:
                    return (hs,) + tuple(args[1:]), kwargs
                kwargs["hidden_states"] = hs
                return args, kwargs

            self.handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
            if d is not None:
                def post_attn(mod, args, out):
                    if isinstance(out, tuple):
                        return (self._proj_out(out[0], d),) + tuple(out[1:])
                    return self._proj_out(out, d)

                def post_mlp(mod, args, out):
                    return self._proj_out(out, d)

                self.handles.append(layer.self_attn.register_forward_hook(post_attn))
                self.handles.append(layer.mlp.register_forward_hook(post_mlp))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles = []


def _left_pad(batch, pad_id):
    n = max(len(x) for x in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for i, x in enumerate(batch):
        ids[i, n - len(x):] = torch.tensor(x)
        mask[i, n - len(x):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


def _batches(prompts, bs):
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for s in range(0, len(order), bs):
        yield order[s:s + bs]


@torch.no_grad()
def last_logits(model, prompts, pad_id, bs=64, **hook_kw):
    out = [None] * len(prompts)
    with Hooks(model, **hook_kw):
        for idx in _batches(prompts, bs):
            ids, mask, pos = _left_pad([prompts[i] for i in idx], pad_id)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits[:, -1, :]
            for j, i in enumerate(idx):
                out[i] = logits[j].float()
    return torch.stack(out)


@torch.no_grad()
def capture_resid(model, prompts, pad_id, k, bs=64):
    """Mean resid_pre over prompts, per layer and per post-instruction position: [k, L, d] float64."""
    L = len(model.model.layers)
    store = [[] for _ in range(L)]
    with Hooks(model, capture=store, capture_last=k):
        for idx in _batches(prompts, bs):
            ids, mask, pos = _left_pad([prompts[i] for i in idx], pad_id)
            model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1)
    acts = torch.stack([torch.cat(s, 0) for s in store], 0)  # [L, n, k, d]
    return acts.permute(2, 0, 1, 3)  # [k, L, n, d]


@torch.no_grad()
def generate(model, prompts, pad_id, eos_ids, max_new=64, bs=64, **hook_kw):
    res = [None] * len(prompts)
    with Hooks(model, **hook_kw):
        for idx in _batches(prompts, bs):
            ids, mask, _ = _left_pad([prompts[i] for i in idx], pad_id)
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                                 eos_token_id=eos_ids, pad_token_id=pad_id)
            new = out[:, ids.shape[1]:]
            for j, i in enumerate(idx):
                toks = []
                for t in new[j].tolist():
                    if t in eos_ids:
                        break
                    toks.append(t)
                res[i] = toks
    return res


def refusal_score(logits, refusal_ids):
    p = torch.softmax(logits.double(), -1)[:, refusal_ids].sum(-1)
    return torch.log(p + 1e-8) - torch.log(1 - p + 1e-8)


def kl(base_logits, new_logits):
    lp = F.log_softmax(base_logits.double(), -1)
    lq = F.log_softmax(new_logits.double(), -1)
    return (lp.exp() * (lp - lq)).sum(-1)


def refusal_rate(texts):
    return sum(is_refusal(t) for t in texts) / max(1, len(texts))


def sample(xs, n, seed=1):
    rng = random.Random(seed)
    xs = list(xs)
    return rng.sample(xs, min(n, len(xs)))
