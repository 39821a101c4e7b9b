"""Import released audiocraft checkpoints (`state_dict.bin`: `best_state` + `xp.cfg` YAML) and codecs.

    python -m magnet_lightning.convert audiocraft STATE_DICT_BIN_OR_REPO_ID OUT.ckpt
    python -m magnet_lightning.convert audiocraft-codec COMPRESSION_STATE_DICT_BIN_OR_REPO_ID OUT_DIR

Every family is read: MAGNeT (`lm_model: transformer_lm_magnet`), the autoregressive MusicGen checkpoints
(`transformer_lm`, causal, delay pattern; stereo ones too) and Hybrid-MAGNeT (`transformer_lm_magnet` with `solver:
hybrid_magnet`, delay pattern); they have the same parameters. The first command writes a Lightning
checkpoint (plain hyper-parameters, EMA weights as `state_dict`): for MAGNeT one of `MagnetLightningModule`, usable
for generation, evaluation and fine-tuning (`init_from`); for MusicGen the same layout with `family: musicgen` and the
pattern's `delays` in its hyper-parameters, usable for generation (checkpoint.load_pretrained). The config is read by
audiocraft's rules (audiocraft_config.py); the layout differences handled here: the K embedding tables and K output
heads are stacked into one tensor each, and the T5 projection is renamed. The checkpoint records the codec it needs: a
transformers hub id (`//pretrained/facebook/encodec_32khz` -> `facebook/encodec_32khz`), or, for audiocraft's own
codecs (`//reference/...`, Audio-MAGNeT's 16 kHz EnCodec), the `compression_state_dict.bin` published beside the
state dict (same folder or same hub repo). The second writes an audiocraft codec as a `save_pretrained` folder of
`transformers.EncodecModel`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from magnet_lightning.checkpoint import hub
from magnet_lightning.checkpoint.audiocraft_config import AudiocraftLM, ConfigError, read_lm_config
from magnet_lightning.checkpoint.audiocraft_families import AUDIOCRAFT_IMPORTS
from magnet_lightning.checkpoint.lazy_load import assign_weights, empty_model, read_torch_file
from magnet_lightning.config import ModelConfig
from magnet_lightning.errors import CheckpointError
from magnet_lightning.models.base import CodebookTransformer
from magnet_lightning.models.registry import DEFAULT_FAMILY
from magnet_lightning.utils.codec_names import stereo_name

_TEXT_PROJ = "condition_provider.conditioners.description.output_proj."
TEXT_PROJ_PREFIX = _TEXT_PROJ
"""audiocraft's name of the T5 projection (`text_proj` here), less `weight` / `bias`."""
_CHROMA_PROJ = "condition_provider.conditioners.self_wav.output_proj."
_CHROMA_WINDOW = "condition_provider.conditioners.self_wav.chroma.spec.window"
"""The chroma extractor's STFT window (torchaudio keeps it in the state dict): a Hann window, checked and dropped."""
LICENSE = "cc-by-nc-4.0"
"""License of Meta's released audiocraft weights (the Hugging Face license id), recorded in converted checkpoints."""


@dataclass
class AudiocraftCheckpoint:
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    """Weights renamed to our layout (models/base.py, the same for both families)."""
    metadata: dict[str, Any]
    """family, delays, text_encoder, codec, sample_rate, frame_rate, span_len, segment_duration, cfg_dropout,
    word_dropout, decoding, license, source."""
    spec: AudiocraftLM
    """Everything the xp.cfg says, by audiocraft's rules."""

    def build_model(self, dtype: str | torch.dtype | None = None,
                    device: str | torch.device | None = None) -> CodebookTransformer:
        """The model of this checkpoint's family with its weights in `dtype` (default float32) on `device` (default
        cpu), in eval mode; built without initialisation and filled with one copy of the weights (lazy_load.py)."""
        model = empty_model(self.spec.family, self.config, self.spec.delays or None)
        return assign_weights(model, self.state_dict, dtype, device, source=self.metadata["source"]).eval()


def _rename(best_state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    state = dict(best_state)
    k = cfg.num_codebooks
    try:
        emb = torch.stack([state.pop(f"emb.{i}.weight") for i in range(k)])
        heads = torch.stack([state.pop(f"linears.{i}.weight") for i in range(k)])
    except KeyError as err:
        raise CheckpointError(f"missing key {err.args[0]} for n_q={k}") from err
    except RuntimeError as err:
        raise CheckpointError(f"embedding or head tables of different shapes: {err}") from err
    out = {"emb": emb, "heads": heads}
    for suffix in ("weight", "bias"):
        out[f"text_proj.{suffix}"] = state.pop(_TEXT_PROJ + suffix, None)
        out[f"chroma_proj.{suffix}"] = state.pop(_CHROMA_PROJ + suffix, None)
    window = state.pop(_CHROMA_WINDOW, None)
    if window is not None and not torch.allclose(window.float(), torch.hann_window(window.numel()), atol=1e-6):
        raise CheckpointError(f"{_CHROMA_WINDOW} is not a Hann window (the chroma extractor's STFT window)")
    out.update({name: value for name, value in state.items() if name.startswith(("transformer.", "out_norm."))})
    return {name: value for name, value in out.items() if value is not None}


def _check_against_model(state: dict[str, torch.Tensor], cfg: ModelConfig, source: dict, family: str) -> None:
    expected = _meta_state_dict(cfg, family)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(f"missing keys: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    known = ("transformer.", "out_norm.", "emb.", "linears.", _TEXT_PROJ, _CHROMA_PROJ, _CHROMA_WINDOW)
    ignored = {n for n in source if not n.startswith(known)}
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CheckpointError(f"unexpected keys (not part of a {cfg.num_layers}-layer model): {extra[:8]}")
    if ignored:
        raise CheckpointError(f"unknown keys in best_state: {sorted(ignored)[:8]}")
    for name, ref in expected.items():
        if tuple(state[name].shape) != tuple(ref.shape):
            raise CheckpointError(f"{name}: shape {tuple(state[name].shape)}, expected {tuple(ref.shape)} for {cfg}")


def _meta_state_dict(cfg: ModelConfig, family: str = DEFAULT_FAMILY) -> dict[str, torch.Tensor]:
    # Every family has the same parameters (one trunk). (Not `with torch.device("meta")`: a first meta arange costs
    # 150 MB RSS.)
    return empty_model(family, cfg).state_dict()


def codec_reference(field: str, source: hub.Source) -> str:
    """The codec a checkpoint needs, as `codec.load_codec` takes it.

    `//pretrained/NAME` -> NAME (a transformers EnCodec); `//reference/...` (audiocraft's own codec, not public
    under that name) -> the compression_state_dict.bin published beside the state dict: the hub repo id when the
    checkpoint came from the hub, else that file's path (which must exist when the codec is loaded).
    """
    if field.startswith("//pretrained/"):
        return field.removeprefix("//pretrained/")
    if field.startswith("//reference/"):
        return source.repo_id or str(source.path.parent / hub.CODEC_FILE)
    return field


def audiocraft_metadata(spec: AudiocraftLM, source: hub.Source) -> dict[str, Any]:
    """What a released checkpoint says for generation and training (its xp.cfg by audiocraft's rules). A stereo
    model's codec is `stereo:` + its mono codec (utils/codec_names.py)."""
    codec = codec_reference(spec.codec, source)
    return {
        "family": spec.family,
        "delays": list(spec.delays),
        "text_encoder": spec.text_encoder,
        "codec": stereo_name(codec) if spec.stereo else codec,
        "codec_checkpoint": spec.codec,
        "sample_rate": spec.sample_rate,
        "frame_rate": spec.frame_rate,
        "span_len": spec.span_len,
        "segment_duration": spec.segment_duration,
        "cfg_dropout": spec.cfg_dropout,
        "word_dropout": spec.word_dropout,
        "decoding": dict(spec.generation),
        "melody": None if spec.melody is None else asdict(spec.melody),
        "license": LICENSE,
        "source": source.repo_id or str(source.path),
    }


def _load_file(path: Path) -> dict:
    try:
        raw = read_torch_file(path)  # memory-mapped: tensors are read once, when converted
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {err}") from err
    if not isinstance(raw, dict) or "best_state" not in raw or "xp.cfg" not in raw:
        keys = sorted(raw)[:8] if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(
            f"{path} is not an audiocraft state_dict.bin (needs 'best_state' and 'xp.cfg'; has {keys})"
        )
    return raw


def read_audiocraft(path: str | os.PathLike | hub.Source, raw: dict | None = None) -> AudiocraftCheckpoint:
    """Read and validate an audiocraft `state_dict.bin` of either family (a path, a folder holding one, or a
    released repo id such as facebook/magnet-small-10secs or facebook/musicgen-small); weights renamed to our layout.
    `raw`: the file's loaded contents."""
    source = path if isinstance(path, hub.Source) else hub.resolve_lm(path)
    raw = raw if raw is not None else _load_file(source.path)
    best_state = raw["best_state"]
    if isinstance(best_state, dict) and "model" in best_state and "emb.0.weight" not in best_state:
        best_state = best_state["model"]  # un-exported solver checkpoints nest the weights one level deeper
    proj = best_state.get(_TEXT_PROJ + "weight")
    if proj is None:
        raise CheckpointError(f"missing key {_TEXT_PROJ}weight (the T5 projection)")
    try:
        spec = read_lm_config(raw["xp.cfg"], text_dim=int(proj.shape[1]))
    except (ConfigError, ValueError) as err:
        raise CheckpointError(f"{source.path}: {err}") from err
    state = _rename(best_state, spec.model)
    _check_against_model(state, spec.model, best_state, spec.family)
    return AudiocraftCheckpoint(spec.model, state, audiocraft_metadata(spec, source), spec)


def from_audiocraft(path: str | os.PathLike, *, dtype: str | torch.dtype | None = None,
                    device: str | torch.device | None = None) -> CodebookTransformer:
    """The model of an audiocraft `state_dict.bin` (path or released repo id) with its weights in `dtype` (float32,
    bfloat16 or float16; default float32) on `device` (default cpu), in eval mode: a `MagnetTransformer` for MAGNeT
    checkpoints, an `ARTransformer` for MusicGen ones."""
    return read_audiocraft(path).build_model(dtype, device)


def lightning_checkpoint(ckpt: AudiocraftCheckpoint) -> dict[str, Any]:
    """The converted weights as a Lightning checkpoint dict (plain types only): `MagnetLightningModule`'s
    hyper-parameters for MAGNeT; for MusicGen `family: musicgen`, `delays` and no masking."""
    import lightning

    meta = ckpt.metadata
    spec = AUDIOCRAFT_IMPORTS[meta["family"]]
    family = {"family": meta["family"]}
    if spec.delays:
        family["delays"] = meta["delays"]
    if spec.windowed_attention:  # MAGNeT's masking (Hybrid-MAGNeT's too)
        family["masking"] = {"span_len": meta["span_len"], "per_sample_stage": spec.stage_per_item,
                             "stage_weights": []}
    hparams = {
        "model": asdict(ckpt.config),
        **family,
        "text_encoder": meta["text_encoder"],
        "cfg_dropout": meta["cfg_dropout"],
        "word_dropout": meta["word_dropout"],
        "codec": meta["codec"],
        "sample_rate": meta["sample_rate"],
        "frame_rate": meta["frame_rate"],
        "segment_duration": meta["segment_duration"],
        "decoding": meta["decoding"],
        "melody": meta["melody"],
    }
    return {
        "state_dict": {f"model.{name}": value for name, value in ckpt.state_dict.items()},
        "hyper_parameters": hparams,
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
        "converted_from": meta["source"],
        "license": meta["license"],
    }


def _atomic_save(obj: Any, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def convert_audiocraft(src: str | os.PathLike, out: str | os.PathLike) -> AudiocraftCheckpoint:
    """Write `src` (audiocraft state_dict.bin, or a released repo id) as a Lightning checkpoint at `out`, atomically."""
    ckpt = read_audiocraft(src)
    _atomic_save(lightning_checkpoint(ckpt), hub.expand(out))
    return ckpt
