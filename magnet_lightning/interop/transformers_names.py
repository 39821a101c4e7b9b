"""How our trunk's parameters are named in transformers' MusicGen (`MusicgenForConditionalGeneration`), both ways.

Same maths, other names and one other layout: transformers keeps separate q / k / v projections where we (and
audiocraft) keep one fused `in_proj_weight` [3D, D]; the K embedding tables and K heads are K modules each. Per layer:

- norm1, self_attn.in_proj_weight (q, k, v rows), self_attn.out_proj -> self_attn_layer_norm,
  self_attn.{q,k,v}_proj, self_attn.out_proj;
- norm_cross, cross_attention.in_proj_weight, cross_attention.out_proj -> encoder_attn_layer_norm,
  encoder_attn.{q,k,v}_proj, encoder_attn.out_proj;
- norm2, linear1, linear2 -> final_layer_norm, fc1, fc2;

and outside the layers `emb[k]` = `decoder.model.decoder.embed_tokens.k`, `out_norm` = `decoder.model.decoder.
layer_norm`, `heads[k]` = `decoder.lm_heads.k`, `text_proj` = `enc_to_dec_proj`. Imports nothing heavy.
"""

from __future__ import annotations

import re

import torch

DECODER = "decoder.model.decoder."
"""Prefix of the decoder stack inside MusicgenForConditionalGeneration."""
_LINEARS = {"norm1": "self_attn_layer_norm", "norm_cross": "encoder_attn_layer_norm", "norm2": "final_layer_norm",
            "linear1": "fc1", "linear2": "fc2", "self_attn.out_proj": "self_attn.out_proj",
            "cross_attention.out_proj": "encoder_attn.out_proj"}
_FUSED = {"self_attn": "self_attn", "cross_attention": "encoder_attn"}
_LAYER = re.compile(r"transformer\.layers\.(\d+)\.(.+)\.(weight|bias)$")
_IN_PROJ = re.compile(r"transformer\.layers\.(\d+)\.(self_attn|cross_attention)\.in_proj_weight$")


def projection_name(target: str) -> str:
    """One of our LoRA projections under a layer ('self_attn.q', 'cross_attention.v', 'linear1', ...) -> the
    transformers module under a `MusicgenDecoderLayer` ('self_attn.q_proj', 'encoder_attn.v_proj', 'fc1', ...)."""
    module, _, part = target.rpartition(".")
    if module in _FUSED and part in ("q", "k", "v"):
        return f"{_FUSED[module]}.{part}_proj"
    return _LINEARS[target]


def to_transformers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our model's state dict -> MusicgenForConditionalGeneration's names (decoder and enc_to_dec_proj only)."""
    out: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        match, fused = _LAYER.match(name), _IN_PROJ.match(name)
        if name == "emb":
            out.update({f"{DECODER}embed_tokens.{k}.weight": t for k, t in enumerate(value)})
        elif name == "heads":
            out.update({f"decoder.lm_heads.{k}.weight": t for k, t in enumerate(value)})
        elif name.startswith("out_norm."):
            out[DECODER + "layer_norm." + name.removeprefix("out_norm.")] = value
        elif name.startswith("text_proj."):
            out["enc_to_dec_proj." + name.removeprefix("text_proj.")] = value
        elif fused:
            for part, rows in zip("qkv", value.chunk(3), strict=True):
                out[f"{DECODER}layers.{fused.group(1)}.{_FUSED[fused.group(2)]}.{part}_proj.weight"] = rows
        elif match:
            out[f"{DECODER}layers.{match.group(1)}.{_LINEARS[match.group(2)]}.{match.group(3)}"] = value
        else:
            raise KeyError(f"{name}: no transformers MusicGen parameter")
    return out


def from_transformers(state: dict[str, torch.Tensor], num_layers: int, num_codebooks: int) -> dict[str, torch.Tensor]:
    """MusicgenForConditionalGeneration's decoder and enc_to_dec_proj weights -> our model's state dict; raises
    KeyError naming a missing parameter."""
    out = {"emb": torch.stack([state[f"{DECODER}embed_tokens.{k}.weight"] for k in range(num_codebooks)]),
           "heads": torch.stack([state[f"decoder.lm_heads.{k}.weight"] for k in range(num_codebooks)])}
    for suffix in ("weight", "bias"):
        out[f"out_norm.{suffix}"] = state[f"{DECODER}layer_norm.{suffix}"]
        out[f"text_proj.{suffix}"] = state[f"enc_to_dec_proj.{suffix}"]
    for layer in range(num_layers):
        ours, theirs = f"transformer.layers.{layer}.", f"{DECODER}layers.{layer}."
        for fused, module in _FUSED.items():
            out[f"{ours}{fused}.in_proj_weight"] = torch.cat(
                [state[f"{theirs}{module}.{part}_proj.weight"] for part in "qkv"])
        for name, other in _LINEARS.items():
            suffixes = ("weight", "bias") if name.startswith("norm") else ("weight",)
            out.update({f"{ours}{name}.{s}": state[f"{theirs}{other}.{s}"] for s in suffixes})
    return out
