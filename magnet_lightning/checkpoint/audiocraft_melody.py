"""How an audiocraft xp.cfg conditions its LM, by audiocraft's rules: the text ('description', a T5) reaches the model
by cross-attention or prepended to the input, and a melody ('self_wav', a `chroma_stem` conditioner: MusicGen-melody)
is prepended (`fuser.prepend: [self_wav, description]` in the release). The fuser applies the text conditions before
the waveform ones whatever `fuser.prepend` lists first (`ConditioningProvider.tokenize` collates text, then wavs), so
the input is [chroma, text, codes]. Keys read here are listed in `CONDITIONING_KEYS` (used) and `IGNORED` (why not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from magnet_lightning.config import MelodyConfig


class ConditioningError(ValueError):
    """A conditioning setup this project cannot run (the message names the key)."""


@dataclass(frozen=True)
class Conditioning:
    text_fuse: str
    """'cross' or 'prepend' (ModelConfig.text_fuse)."""
    melody: MelodyConfig | None
    """The chroma settings of a `self_wav` chroma_stem conditioner, None without one."""
    chroma_fuse: str = "prepend"


CONDITIONING_KEYS = (
    "fuser.cross", "fuser.sum", "fuser.prepend", "fuser.input_interpolate", "fuser.cross_attention_pos_emb",
    "conditioners.self_wav.model", "conditioners.self_wav.chroma_stem.sample_rate",
    "conditioners.self_wav.chroma_stem.n_chroma", "conditioners.self_wav.chroma_stem.radix2_exp",
    "conditioners.self_wav.chroma_stem.argmax", "conditioners.self_wav.chroma_stem.eval_wavs",
    "attribute_dropout.wav.self_wav",
)
IGNORED = (
    ("conditioners.self_wav.chroma_stem.match_len_on_eval",
     "audiocraft's MusicGen.get_pretrained sets it for inference (chroma tiled or cut to the segment)"),
    ("conditioners.self_wav.chroma_stem.n_eval_wavs", "only used with eval_wavs"),
    ("conditioners.self_wav.chroma_stem.cache_path", "a training cache; audiocraft's loader deletes it"),
    ("conditioners.args.*", "training-time text merging; audiocraft's loader deletes it"),
)


def _get(cfg: dict, dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _fused(cfg: dict) -> dict[str, list[str]]:
    return {method: list(_get(cfg, f"fuser.{method}", []) or []) for method in
            ("cross", "prepend", "sum", "input_interpolate")}


def _text_fuse(fused: dict[str, list[str]]) -> str:
    where = [method for method, names in fused.items() if "description" in names]
    if where not in (["cross"], ["prepend"]):
        raise ConditioningError(f"unsupported config: the 'description' text conditioner is fused by {where or 'none'}"
                                " (fuser.cross or fuser.prepend, one of them)")
    return where[0]


def _melody(cfg: dict, fused: dict[str, list[str]]) -> MelodyConfig:
    model = _get(cfg, "conditioners.self_wav.model")
    if model != "chroma_stem":
        raise ConditioningError(f"unsupported config: conditioners.self_wav.model={model!r} (only the melody "
                                "conditioner chroma_stem, MusicGen-melody's)")
    where = [method for method, names in fused.items() if "self_wav" in names]
    if where != ["prepend"]:
        raise ConditioningError(f"unsupported config: the chroma conditioner self_wav is fused by {where or 'none'} "
                                "(MusicGen-melody prepends it: fuser.prepend)")
    if _get(cfg, "conditioners.self_wav.chroma_stem.eval_wavs") is not None:
        raise ConditioningError("unsupported config: conditioners.self_wav.chroma_stem.eval_wavs is set (evaluation "
                                "melodies replacing the user's); it must be null")
    stem = _get(cfg, "conditioners.self_wav.chroma_stem", {}) or {}
    return MelodyConfig(sample_rate=int(stem.get("sample_rate", _get(cfg, "sample_rate", 32000))),
                        n_chroma=int(stem.get("n_chroma", 12)), radix2_exp=int(stem.get("radix2_exp", 12)),
                        argmax=bool(stem.get("argmax", False)), stems="htdemucs",
                        duration=float(_get(cfg, "dataset.segment_duration", 30.0)),
                        attribute_dropout=float(_get(cfg, "attribute_dropout.wav.self_wav", 0.0) or 0.0))


def read_conditioning(cfg: dict) -> Conditioning:
    """The fuser and conditioners of a resolved xp.cfg -> Conditioning, or ConditioningError naming the key."""
    conditioners = _get(cfg, "conditioners", {}) or {}
    others = sorted(set(conditioners) - {"description", "self_wav", "args"})
    if others:
        raise ConditioningError(f"unsupported config: conditioners.{others[0]} (supported: the text 'description' "
                                "conditioner and MusicGen-melody's chroma 'self_wav')")
    fused = _fused(cfg)
    unknown = sorted({name for names in fused.values() for name in names} - set(conditioners))
    if unknown:
        raise ConditioningError(f"unsupported config: the fuser names {unknown[0]!r}, which no conditioner defines")
    if fused["sum"] or fused["input_interpolate"]:
        raise ConditioningError(f"unsupported config: fuser.sum={fused['sum']} / fuser.input_interpolate="
                                f"{fused['input_interpolate']} (conditions by cross-attention or prepended only)")
    if _get(cfg, "fuser.cross_attention_pos_emb", False):
        raise ConditioningError("unsupported config: fuser.cross_attention_pos_emb=True (positional embeddings on "
                                "the text keys; this project needs False)")
    text_fuse = _text_fuse(fused)
    if text_fuse == "prepend" and _get(cfg, "transformer_lm.cross_attention", False):
        raise ConditioningError("unsupported config: transformer_lm.cross_attention=True with nothing to attend to "
                                "(fuser.cross is empty)")
    return Conditioning(text_fuse, _melody(cfg, fused) if "self_wav" in conditioners else None)
