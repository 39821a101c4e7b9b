"""transformers' MusicGen (`MusicgenForConditionalGeneration`), in and out.

    magnet-convert transformers DIR_OR_REPO_ID OUT.ckpt        # a transformers MusicGen -> our checkpoint
    magnet-export CKPT OUT --format transformers                # our autoregressive model -> a transformers folder

In: the folder (or a hub repo id, read from the Hugging Face cache offline) loads with transformers; the decoder and
the text projection become our autoregressive model (transformers_names.py), the T5 encoder with the repo's
tokenizer is saved as `OUT.t5/` and the EnCodec as `OUT.codec/` beside OUT.ckpt (the checkpoint names them by
absolute path), and `generation_config.json` gives the decoding defaults (guidance scale, sampling, top-k,
temperature). Refused in one line: another architecture (`model_type` other than musicgen, MusicGen-Melody
included), stereo decoders, decoder variants our trunk does not compute (scaled embeddings, another activation).

Out: the autoregressive family only (transformers has no MAGNeT); the folder `MusicgenForConditionalGeneration.
from_pretrained(OUT)` loads: config.json + model.safetensors (T5 encoder, EnCodec, decoder), the tokenizer, the feature
extractor and generation_config.json from our decoding defaults, and a model card. `--adapter-only` writes a peft
adapter instead (peft_adapter.py).

One behaviour differs between the two libraries and is not a conversion matter: transformers masks padded text
positions in cross-attention, audiocraft (and this project) attends to them as zero vectors; logits agree for prompts
without padding (one prompt, or prompts of one length).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from magnet_lightning.checkpoint import hub
from magnet_lightning.checkpoint.audiocraft_families import AUDIOCRAFT_IMPORTS
from magnet_lightning.config import ModelConfig
from magnet_lightning.errors import UserError
from magnet_lightning.interop.transformers_names import from_transformers
from magnet_lightning.utils.staged_folder import check_target, staged_folder

MODEL_TYPE = "musicgen"
_GENERATION = {"guidance_scale": ("cfg_coef", float), "do_sample": ("use_sampling", bool),
               "top_k": ("top_k", int), "temperature": ("temperature", float)}
"""generation_config.json field -> (our decoding option, type)."""


def musicgen_family() -> str:
    """The family transformers' MusicGen holds (its entry in checkpoint/audiocraft_families.py)."""
    return next(name for name, spec in AUDIOCRAFT_IMPORTS.items() if spec is not None and spec.transformers_musicgen)


# ------------------------------------------------------------------------------------------------------------ in
def read_config(src: str) -> tuple[Path | str, dict[str, Any]]:
    """(what from_pretrained takes, config.json) of a local folder or a hub repo id (HF cache when offline)."""
    path = hub.expand(src)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} has no config.json: pass a transformers model folder "
                                    "(MusicgenForConditionalGeneration.save_pretrained) or a hub repo id")
        return path, json.loads((path / "config.json").read_text())
    if not hub.looks_like_repo_id(src):
        raise FileNotFoundError(f"{src} not found: pass a transformers MusicGen folder or a hub repo id")
    return src, json.loads(hub.fetch(src, "config.json", "model.safetensors").read_text())


def check_config(src: str, config: dict[str, Any]) -> None:
    """One-line UserError for a folder that is not a MusicGen our autoregressive model computes exactly."""
    kind = config.get("model_type")
    if kind != MODEL_TYPE:
        raise UserError(f"{src} is a transformers {kind!r} model ({', '.join(config.get('architectures') or [])}), "
                        "not MusicGen: magnet-convert transformers reads MusicgenForConditionalGeneration folders")
    decoder = config.get("decoder") or {}
    refused = {"audio_channels": 1, "scale_embedding": False, "activation_function": "gelu",
               "cross_attention_hidden_size": None}
    for key, needed in refused.items():
        if decoder.get(key, needed) != needed:
            raise UserError(f"{src}: decoder.{key}={decoder[key]!r} is a MusicGen variant this project does not "
                            f"compute (it needs {needed!r})")


def _decoding(model) -> dict[str, Any]:
    gen = model.generation_config
    return {ours: kind(getattr(gen, theirs)) for theirs, (ours, kind) in _GENERATION.items()
            if getattr(gen, theirs, None) is not None}


def convert_transformers(src: str, out: str | Path, force: bool = False) -> dict[str, Any]:
    """Write `out` (our checkpoint) with `OUT.t5/` and `OUT.codec/` beside it from the MusicGen `src`; returns the
    checkpoint's hyper-parameters."""
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    out = hub.expand(out)
    where, config = read_config(src)
    check_config(src, config)
    parts = {"t5": out.with_name(out.stem + ".t5"), "codec": out.with_name(out.stem + ".codec")}
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists: choose another path, or pass --force to replace it")
    for folder in parts.values():
        check_target(folder, force, "a converted part")
    model = MusicgenForConditionalGeneration.from_pretrained(where, dtype=torch.float32).eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as err:
        raise UserError(f"{src} holds no tokenizer for its T5 ({type(err).__name__}): MusicGen repos ship it "
                        "beside config.json (MusicgenProcessor.save_pretrained)") from err
    dec = model.decoder.config
    cfg = ModelConfig(dim=dec.hidden_size, num_heads=dec.num_attention_heads, num_layers=dec.num_hidden_layers,
                      ffn_dim=dec.ffn_dim, num_codebooks=dec.num_codebooks, codebook_size=dec.vocab_size,
                      text_dim=model.text_encoder.config.hidden_size, subcodes_context=-1)
    state = from_transformers(_with_projection(model), cfg.num_layers, cfg.num_codebooks)
    codec = model.audio_encoder.config
    frame_rate = codec.sampling_rate / float(torch.tensor(codec.upsampling_ratios).prod())
    with staged_folder(parts["t5"], force, "a converted part") as t5:
        model.text_encoder.save_pretrained(t5)
        tokenizer.save_pretrained(t5)
    with staged_folder(parts["codec"], force, "a converted part") as folder:
        model.audio_encoder.save_pretrained(folder)
    max_length = model.generation_config.max_length or 1500
    hparams = {"model": asdict(cfg), "family": musicgen_family(), "delays": list(range(cfg.num_codebooks)),
               "text_encoder": str(parts["t5"].resolve()), "codec": str(parts["codec"].resolve()),
               "sample_rate": int(codec.sampling_rate), "frame_rate": frame_rate, "cfg_dropout": 0.0,
               "word_dropout": 0.0, "segment_duration": round(max_length / frame_rate), "decoding": _decoding(model)}
    checkpoint = {"state_dict": {f"model.{k}": v.contiguous() for k, v in state.items()}, "hyper_parameters": hparams,
                  "converted_from": str(src), "converted_format": "transformers", "license": _license(where)}
    _save(checkpoint, out)
    return hparams


def _with_projection(model) -> dict[str, torch.Tensor]:
    """The model's state dict; transformers skips `enc_to_dec_proj` when the T5 and decoder widths are equal, which
    is our text projection as the identity."""
    state = model.state_dict()
    if "enc_to_dec_proj.weight" not in state:
        width = model.decoder.config.hidden_size
        state["enc_to_dec_proj.weight"], state["enc_to_dec_proj.bias"] = torch.eye(width), torch.zeros(width)
    return state


def _license(where: Path | str) -> str | None:
    """The `license:` of the repo's model card, when there is one locally."""
    card = Path(where) / "README.md" if isinstance(where, Path) else None
    if card is None:
        try:
            card = hub.fetch(str(where), "README.md")
        except FileNotFoundError:
            return None
    if not card.is_file():
        return None
    for line in card.read_text(errors="replace").splitlines()[:40]:
        if line.startswith("license:"):
            return line.split(":", 1)[1].strip() or None
    return None


def _save(checkpoint: dict, out: Path) -> None:
    tmp = out.with_name(f".{out.name}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.save(checkpoint, tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
