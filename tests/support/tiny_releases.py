"""Tiny audiocraft-format LM releases (a real released xp.cfg at small sizes, random weights), an independent
numpy-free reference forward (`reference_logits`), a tiny autoregressive model, and the copying loader that
lazy loading is measured against."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from magnet_lightning.checkpoint.audiocraft import read_audiocraft
from magnet_lightning.config import model_preset
from magnet_lightning.models.ar import ARTransformer
from magnet_lightning.models.registry import build_model
from support.audiocraft_files import lm_best_state, lm_state_dict_bin, tiny_xp_cfg

TINY = {"dim": 32, "num_heads": 4, "num_layers": 2}


def tiny_ar(delays=None, **overrides) -> ARTransformer:
    cfg = model_preset("tiny", dim=32, num_heads=4, ffn_dim=64, codebook_size=16, text_dim=8, subcodes_context=-1,
                       **overrides)
    return ARTransformer(cfg, delays).eval()


D, H, L, K, V, E, W = 32, 4, 2, 4, 2048, 768, 5  # the music configs' K, V, T5 width and window; tiny D, H, L


def xp_cfg(name: str = "magnet-small-10secs", **lm) -> str:
    """The real released config of `name` with tiny transformer sizes (and any transformer_lm overrides)."""
    return tiny_xp_cfg(name, dim=D, num_heads=H, num_layers=L, **lm)


def best_state(seed: int = 0, name: str = "magnet-small-10secs") -> dict:
    return lm_best_state(xp_cfg(name), seed)


def write(path, state, cfg=None):
    return lm_state_dict_bin(path, cfg or xp_cfg(), state)


# ---- an independent reading of audiocraft_checkpoint.md: loops, explicit softmax, nothing shared with our model ----
def ln(x, w, b):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * w + b


def attend(q_in, kv_in, w_in, w_out, allowed, heads=H):
    D = w_out.shape[0]
    q, k, v = q_in @ w_in[:D].T, kv_in @ w_in[D:2 * D].T, kv_in @ w_in[2 * D:].T
    hd = D // heads
    H = heads
    outs = []
    for h in range(H):
        sl = slice(h * hd, (h + 1) * hd)
        scores = q[:, sl] @ k[:, sl].T / math.sqrt(hd)
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        outs.append(torch.softmax(scores, -1) @ v[:, sl])
    return torch.cat(outs, -1) @ w_out.T


def reference_logits(s, codes, t5, t5_mask, stage, window=W, heads=H, causal=False):
    """MAGNeT's logits at `stage` (window for stages >= 1), or with causal=True a causal model's on a sequence."""
    B, _, T = codes.shape
    D = s["out_norm.weight"].shape[0]
    L = sum(1 for name in s if name.endswith(".norm1.weight"))
    out = []
    for b in range(B):
        x = sum(s[f"emb.{k}.weight"][codes[b, k]] for k in range(K))
        half = D // 2
        pos = torch.arange(T, dtype=torch.float64)[:, None]
        phase = pos / 10000 ** (torch.arange(half, dtype=torch.float64)[None] / (half - 1))
        x = x + torch.cat([torch.cos(phase), torch.sin(phase)], -1).float()
        proj = "condition_provider.conditioners.description.output_proj."
        text = (t5[b] @ s[proj + "weight"].T + s[proj + "bias"]) * t5_mask[b, :, None]
        t = torch.arange(T)
        allowed = None if stage == 0 else (t[:, None] - t[None, :]).abs() <= window
        if causal:
            allowed = t[:, None] >= t[None, :]
        for i in range(L):
            p = f"transformer.layers.{i}."
            y = ln(x, s[p + "norm1.weight"], s[p + "norm1.bias"])
            x = x + attend(y, y, s[p + "self_attn.in_proj_weight"], s[p + "self_attn.out_proj.weight"], allowed, heads)
            y = ln(x, s[p + "norm_cross.weight"], s[p + "norm_cross.bias"])
            x = x + attend(y, text, s[p + "cross_attention.in_proj_weight"],
                           s[p + "cross_attention.out_proj.weight"], None, heads)
            y = ln(x, s[p + "norm2.weight"], s[p + "norm2.bias"])
            hidden = y @ s[p + "linear1.weight"].T
            x = x + (0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))) @ s[p + "linear2.weight"].T
        x = ln(x, s["out_norm.weight"], s["out_norm.bias"])
        out.append(torch.stack([x @ s[f"linears.{k}.weight"].T for k in range(K)]))
    return torch.stack(out)  # [B, K, T, V]


def copying_load(path: Path) -> torch.nn.Module:
    """The loader before issue 18 (and audiocraft's path): whole file read, random init, load_state_dict copy."""
    ckpt = read_audiocraft(path, raw=torch.load(path, map_location="cpu", weights_only=True))
    model = build_model(ckpt.spec.family, ckpt.config, ckpt.spec.delays or None)
    model.load_state_dict(ckpt.state_dict)
    return model.eval()
