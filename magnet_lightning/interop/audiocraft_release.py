"""Export to audiocraft's release format: the folder `MAGNeT.get_pretrained(OUT)`, `MusicGen.get_pretrained(OUT)` and
`AudioGen.get_pretrained(OUT)` load (audiocraft_checkpoint.md has the format).

    magnet-export CKPT OUT --format audiocraft [--dtype float16]

- ``state_dict.bin``: ``{'best_state', 'xp.cfg', 'version', 'exported': True}``; `best_state` holds the weights in
  audiocraft's names (the inverse of checkpoint/audiocraft.py's renaming: K embedding tables ``emb.k.weight``, K heads
  ``linears.k.weight``, the T5 projection under ``condition_provider.conditioners.description.output_proj``), float16
  as Meta releases them; `xp.cfg` is a config audiocraft's builders accept and our reader reads back, written from the
  family's entry in checkpoint/audiocraft_families.py (lm_model, pattern, causal, the generation keys) and the
  checkpoint (sizes, T5, codec, segment, decoding defaults);
- ``compression_state_dict.bin`` where audiocraft knows the codec: ``{'pretrained': ID}`` for a transformers EnCodec
  on the hub (as in Meta's music repos), or a copy of the audiocraft codec file the checkpoint came with (the 16 kHz
  AudioGen EnCodec of the text-to-sound models). A local codec folder or the `encodec` package's codecs have no
  audiocraft form: the export then holds the LM only, and says so.

What the format cannot say is refused in one line: a text encoder that is not one of audiocraft's named T5s, a width
other than that T5's, a norm epsilon or position period audiocraft does not use.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from magnet_lightning.checkpoint import hub
from magnet_lightning.checkpoint.audiocraft import TEXT_PROJ_PREFIX
from magnet_lightning.checkpoint.audiocraft_families import AUDIOCRAFT_IMPORTS, AudiocraftImport
from magnet_lightning.checkpoint.pretrained import Pretrained
from magnet_lightning.errors import UserError
from magnet_lightning.models.base import CodebookTransformer
from magnet_lightning.models.registry import model_family

AUDIOCRAFT_VERSION = "1.3.0"
"""The audiocraft release whose loaders the export is tested with (written as the file's `version`)."""
T5_WIDTHS = {"t5-small": 512, "t5-base": 768, "t5-large": 1024, "t5-3b": 1024, "t5-11b": 1024,
             "google/flan-t5-small": 512, "google/flan-t5-base": 768, "google/flan-t5-large": 1024,
             "google/flan-t5-xl": 2048, "google/flan-t5-xxl": 4096}
"""The T5 names audiocraft's T5 conditioner accepts, and the width of their states."""
_CODEC_PACKAGE = ("encodec_24khz", "encodec_48khz")


@dataclass(frozen=True)
class ReleaseFiles:
    state: dict[str, Any]
    """The state_dict.bin dict."""
    codec_file: Path | None
    """The audiocraft compression_state_dict.bin to copy beside it, or None."""
    codec_pretrained: str | None
    """The transformers EnCodec id a written compression_state_dict.bin names, or None."""
    client: str
    """The audiocraft class that loads the folder ('MAGNeT', 'MusicGen', 'AudioGen')."""


def family_spec(model: CodebookTransformer) -> AudiocraftImport:
    spec = AUDIOCRAFT_IMPORTS[model.family]
    if spec is None:
        raise UserError(f"the {model_family(model.family).label} family has no audiocraft release format to export "
                        "to: export it in this project's format (--format magnet_lightning)")
    return spec


def best_state(model: CodebookTransformer, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """The model's weights in audiocraft's `best_state` names, each its own contiguous tensor in `dtype`."""
    state = {}
    for name, value in model.state_dict().items():
        value = value.detach().to("cpu", dtype)
        if name == "emb":
            state.update({f"emb.{k}.weight": table.clone() for k, table in enumerate(value)})
        elif name == "heads":
            state.update({f"linears.{k}.weight": head.clone() for k, head in enumerate(value)})
        elif name.startswith("text_proj."):
            state[TEXT_PROJ_PREFIX + name.removeprefix("text_proj.")] = value.clone()
        else:
            state[name] = value.clone()
    return state


def _check_expressible(pretrained: Pretrained) -> None:
    cfg = pretrained.model.cfg
    t5 = pretrained.text_encoder
    if t5 not in T5_WIDTHS:
        raise UserError(f"audiocraft's T5 conditioner loads its T5 by name ({', '.join(list(T5_WIDTHS)[:3])}, ...): "
                        f"this checkpoint's text encoder {t5!r} has no such name, so audiocraft could not rebuild it")
    if T5_WIDTHS[t5] != cfg.text_dim:
        raise UserError(f"the model reads {cfg.text_dim}-wide text states, but audiocraft's {t5} gives "
                        f"{T5_WIDTHS[t5]}")
    if cfg.norm_eps != 1e-5 or cfg.max_period != 10_000.0:
        raise UserError(f"audiocraft's transformer uses LayerNorm eps 1e-5 and position period 10000; this model "
                        f"has {cfg.norm_eps:g} and {cfg.max_period:g}")
    if int(cfg.ffn_dim / cfg.dim * cfg.dim) != cfg.ffn_dim:
        raise UserError(f"ffn_dim {cfg.ffn_dim} is not hidden_scale x dim {cfg.dim} for any float hidden_scale")


def _transformer_lm(pretrained: Pretrained, spec: AudiocraftImport) -> dict[str, Any]:
    """audiocraft's `transformer_lm` section for this model (every key its LM class takes, the values of the one
    architecture this project implements)."""
    cfg = pretrained.model.cfg
    scale = cfg.ffn_dim / cfg.dim
    lm = {"dim": cfg.dim, "num_heads": cfg.num_heads, "num_layers": cfg.num_layers,
          "hidden_scale": _number(scale), "n_q": cfg.num_codebooks,
          "card": cfg.codebook_size, "dropout": 0.0, "emb_lr": None, "activation": "gelu", "norm_first": True,
          "bias_ff": False, "bias_attn": False, "bias_proj": False, "past_context": None, "causal": spec.causal,
          "custom": False, "memory_efficient": True, "attention_as_float32": False, "layer_scale": None,
          "positional_embedding": "sin", "xpos": False, "checkpointing": "none", "weight_init": "gaussian",
          "depthwise_init": "current", "zero_bias_init": True, "norm": "layer_norm", "cross_attention": False,
          "qk_layer_norm": False, "qk_layer_norm_cross": False, "attention_dropout": None, "kv_repeat": 1,
          "two_step_cfg": bool(pretrained.decoding.get("two_step_cfg", False))}
    if spec.windowed_attention:  # MagnetLMModel's own arguments (the last three are set by audiocraft's loader)
        lm.update(subcodes_context=cfg.subcodes_context, compression_model_framerate=_number(pretrained.frame_rate),
                  segment_duration=0, span_len=-1)
    return lm


def _number(value: float) -> int | float:
    """An integral float as an int (audiocraft computes sequence lengths from these and slices with them)."""
    return int(value) if float(value).is_integer() else float(value)


def _set(cfg: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        cfg = cfg.setdefault(part, {})
    cfg[last] = value


def xp_cfg(pretrained: Pretrained, training: dict[str, float], codec_field: str) -> dict[str, Any]:
    """The xp.cfg of the export (a mapping; written as YAML text): the model's sections by audiocraft's rules."""
    model, spec = pretrained.model, family_spec(pretrained.model)
    delays = list(getattr(getattr(model, "pattern", None), "delays", range(model.cfg.num_codebooks)))
    audio = codec_field.startswith("//reference/")  # audiocraft's own codec: its text-to-sound models
    cfg: dict[str, Any] = {
        "solver": spec.audio_solver if audio else spec.solver, "device": "cpu",
        "dtype": "float32", "lm_model": spec.lm_model, "sample_rate": pretrained.sample_rate, "channels": 1,
        "compression_model_checkpoint": codec_field, "compression_model_n_q": None,
        "dataset": {"segment_duration": _number(pretrained.segment_duration)},
        "masking": {"span_len": pretrained.span_len},
        "classifier_free_guidance": {"training_dropout": float(training.get("cfg_dropout", 0.0)),
                                     "inference_coef": 3.0},
        "attribute_dropout": {},
        "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1, "sum": [], "prepend": [],
                  "cross": ["description"], "input_interpolate": []},
        "conditioners": {"description": {"model": "t5", "t5": {
            "name": pretrained.text_encoder, "finetune": False,
            "word_dropout": float(training.get("word_dropout", 0.0)), "normalize_text": False}}},
        "interleave_stereo_codebooks": {"use": False, "per_timestep": False},
        "codebooks_pattern": {"modeling": spec.pattern,
                              "delay": {"delays": delays, "flatten_first": 0, "empty_initial": 0},
                              "parallel": {"empty_initial": -1}},
        "transformer_lm": _transformer_lm(pretrained, spec),
        "generate": {"lm": {theirs: pretrained.decoding[ours] for theirs, ours in spec.generation_keys.items()
                            if pretrained.decoding.get(ours) is not None}},
    }
    for key, (ours, kind, default) in spec.guidance_keys.items():
        _set(cfg, key, kind(pretrained.decoding.get(ours, default)))
    return cfg


def _audiocraft_codec(path: Path, field: str) -> tuple[str, Path | None, str | None]:
    """A compression_state_dict.bin: its codec (`best_state`) to copy, or the transformers EnCodec it names."""
    raw = torch.load(path, map_location="meta", weights_only=True)
    if isinstance(raw, dict) and isinstance(raw.get("pretrained"), str):
        return f"//pretrained/{raw['pretrained']}", None, raw["pretrained"]
    if not isinstance(raw, dict) or "best_state" not in raw:
        raise UserError(f"{path} is not an audiocraft {hub.CODEC_FILE} (no 'best_state' or 'pretrained')")
    return field, path, None


def codec_of(codec: str) -> tuple[str, Path | None, str | None]:
    """(compression_model_checkpoint, audiocraft codec file to copy or None, transformers EnCodec id or None) for the
    codec a checkpoint names; a codec audiocraft does not know gives ('', None, None)."""
    path = hub.expand(codec)
    if path.is_file():
        return _audiocraft_codec(path, f"//reference/{path.parent.name or 'codec'}/{hub.CODEC_FILE}")
    if codec in hub.RELEASED:
        return _audiocraft_codec(hub.fetch(codec, hub.CODEC_FILE), f"//reference/{codec}/{hub.CODEC_FILE}")
    if codec in _CODEC_PACKAGE or path.exists() or not hub.looks_like_repo_id(codec):
        return "", None, None
    return f"//pretrained/{codec}", None, codec


def release_files(pretrained: Pretrained, training: dict[str, float],
                  dtype: torch.dtype = torch.float16) -> ReleaseFiles:
    """What the export folder holds, checked (one-line UserError for what audiocraft's format cannot say)."""
    spec = family_spec(pretrained.model)
    _check_expressible(pretrained)
    field, codec_file, pretrained_id = codec_of(pretrained.codec)
    config = xp_cfg(pretrained, training, field or f"//pretrained/{pretrained.codec}")
    state = {"best_state": best_state(pretrained.model, dtype), "xp.cfg": yaml.safe_dump(config, sort_keys=False),
             "version": AUDIOCRAFT_VERSION, "exported": True}
    return ReleaseFiles(state, codec_file, pretrained_id, spec.audio_client if codec_file else spec.client)


def write_release(files: ReleaseFiles, folder: Path) -> list[str]:
    """Write the files into `folder` (an empty staging folder); returns the names written."""
    torch.save(files.state, folder / hub.LM_FILE)
    if files.codec_file is not None:
        shutil.copyfile(files.codec_file, folder / hub.CODEC_FILE)
    elif files.codec_pretrained is not None:
        torch.save({"pretrained": files.codec_pretrained}, folder / hub.CODEC_FILE)
    return sorted(p.name for p in folder.iterdir())
