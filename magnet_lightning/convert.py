"""Import released audiocraft MAGNeT checkpoints (`state_dict.bin`: `best_state` + `xp.cfg` YAML).

    python -m magnet_lightning.convert audiocraft STATE_DICT_BIN OUT.ckpt

The output is a Lightning checkpoint of `MagnetLightningModule` (plain hyper-parameters, EMA weights as `state_dict`),
usable for generation, evaluation and fine-tuning (`init_from`). Layout differences handled here: the K embedding
tables and K output heads are stacked into one tensor each, and the T5 projection is renamed.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from magnet_lightning.config import ModelConfig
from magnet_lightning.model import MagnetTransformer

_TEXT_PROJ = "condition_provider.conditioners.description.output_proj."
_REQUIRED_CFG = ("transformer_lm.dim", "transformer_lm.num_heads", "transformer_lm.num_layers", "transformer_lm.n_q",
                 "transformer_lm.card")
_FIXED_ARCH = {  # settings of the architecture this converter implements, and the value it needs
    "transformer_lm.norm_first": True, "transformer_lm.bias_ff": False, "transformer_lm.bias_attn": False,
    "transformer_lm.bias_proj": False, "transformer_lm.positional_embedding": "sin",
    "transformer_lm.activation": "gelu", "transformer_lm.norm": "layer_norm", "transformer_lm.causal": False,
    "transformer_lm.layer_scale": None, "transformer_lm.cross_attention": True,
}


class CheckpointError(ValueError):
    """A checkpoint file that this converter cannot read, with the reason."""


@dataclass
class AudiocraftCheckpoint:
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    """Weights renamed to MagnetTransformer's layout."""
    metadata: dict[str, Any]
    """text_encoder, codec, sample_rate, frame_rate, span_len, segment_duration, cfg_dropout, decoding, source."""


def _lookup(cfg: dict, dotted: str, default: Any = KeyError) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is KeyError:
                raise CheckpointError(f"xp.cfg has no field {dotted!r}")
            return default
        node = node[part]
    # Resolve a whole-value OmegaConf interpolation such as "${transformer_lm.dim}".
    if isinstance(node, str) and (m := re.fullmatch(r"\$\{([\w.]+)\}", node.strip())):
        return _lookup(cfg, m.group(1), default)
    return node


def _parse_cfg(raw: Any) -> dict:
    import yaml

    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        raise CheckpointError(f"xp.cfg must be YAML text, got {type(raw).__name__}")
    try:
        cfg = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise CheckpointError(f"xp.cfg is not valid YAML: {err}") from err
    if not isinstance(cfg, dict):
        raise CheckpointError("xp.cfg does not hold a mapping")
    return cfg


def _model_config(cfg: dict, best_state: dict) -> ModelConfig:
    for key, needed in _FIXED_ARCH.items():
        value = _lookup(cfg, key, needed)
        if value != needed:
            raise CheckpointError(f"unsupported config: {key}={value!r} (this architecture needs {needed!r})")
    for key in _REQUIRED_CFG:
        _lookup(cfg, key)
    proj = best_state.get(_TEXT_PROJ + "weight")
    if proj is None:
        raise CheckpointError(f"missing key {_TEXT_PROJ}weight (the T5 projection)")
    dim = int(_lookup(cfg, "transformer_lm.dim"))
    return ModelConfig(
        dim=dim,
        num_heads=int(_lookup(cfg, "transformer_lm.num_heads")),
        num_layers=int(_lookup(cfg, "transformer_lm.num_layers")),
        ffn_dim=int(float(_lookup(cfg, "transformer_lm.hidden_scale", 4)) * dim),
        num_codebooks=int(_lookup(cfg, "transformer_lm.n_q")),
        codebook_size=int(_lookup(cfg, "transformer_lm.card")),
        text_dim=int(proj.shape[1]),
        subcodes_context=int(_lookup(cfg, "transformer_lm.subcodes_context", 5)),
    )


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
    out.update({name: value for name, value in state.items() if name.startswith(("transformer.", "out_norm."))})
    return {name: value for name, value in out.items() if value is not None}


def _check_against_model(state: dict[str, torch.Tensor], cfg: ModelConfig, source: dict) -> None:
    expected = _meta_state_dict(cfg)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(f"missing keys: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    ignored = {n for n in source if not n.startswith(("transformer.", "out_norm.", "emb.", "linears.", _TEXT_PROJ))}
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CheckpointError(f"unexpected keys (not part of a {cfg.num_layers}-layer model): {extra[:8]}")
    if ignored:
        raise CheckpointError(f"unknown keys in best_state: {sorted(ignored)[:8]}")
    for name, ref in expected.items():
        if tuple(state[name].shape) != tuple(ref.shape):
            raise CheckpointError(f"{name}: shape {tuple(state[name].shape)}, expected {tuple(ref.shape)} for {cfg}")


def _meta_state_dict(cfg: ModelConfig) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return MagnetTransformer(cfg).state_dict()


def _metadata(cfg: dict, path: Path) -> dict[str, Any]:
    sample_rate = int(_lookup(cfg, "sample_rate", 32000))
    codec = str(_lookup(cfg, "compression_model_checkpoint", "//pretrained/facebook/encodec_32khz"))
    segment = float(_lookup(cfg, "dataset.segment_duration", 10.0))
    first_steps = 60 if segment > 20 else 20
    return {
        "text_encoder": str(_lookup(cfg, "conditioners.description.t5.name", "t5-base")),
        "codec": codec.removeprefix("//pretrained/"),
        "sample_rate": sample_rate,
        "frame_rate": 50.0,
        "span_len": int(_lookup(cfg, "masking.span_len", 3)),
        "segment_duration": segment,
        "cfg_dropout": float(_lookup(cfg, "classifier_free_guidance.training_dropout", 0.3)),
        "decoding": {
            "preset": "audio" if sample_rate == 16000 else "music", "decoding_steps": [first_steps, 10, 10, 10]
        },
        "source": str(path),
    }


def read_audiocraft(path: str | Path) -> AudiocraftCheckpoint:
    """Read and validate an audiocraft MAGNeT `state_dict.bin`; weights renamed to our layout."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found. Download `state_dict.bin` of e.g. facebook/magnet-small-10secs from the Hugging Face "
            "hub (weights are CC-BY-NC 4.0) and pass its path."
        )
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {err}") from err
    if not isinstance(raw, dict) or "best_state" not in raw or "xp.cfg" not in raw:
        keys = sorted(raw)[:8] if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(
            f"{path} is not an audiocraft state_dict.bin (needs 'best_state' and 'xp.cfg'; has {keys})"
        )
    cfg = _parse_cfg(raw["xp.cfg"])
    best_state = raw["best_state"]
    if isinstance(best_state, dict) and "model" in best_state and "emb.0.weight" not in best_state:
        best_state = best_state["model"]  # un-exported solver checkpoints nest the weights one level deeper
    model_cfg = _model_config(cfg, best_state)
    state = _rename(best_state, model_cfg)
    _check_against_model(state, model_cfg, best_state)
    return AudiocraftCheckpoint(model_cfg, state, _metadata(cfg, path))


def from_audiocraft(path: str | Path) -> MagnetTransformer:
    """A `MagnetTransformer` with the weights of an audiocraft MAGNeT `state_dict.bin`."""
    ckpt = read_audiocraft(path)
    model = MagnetTransformer(ckpt.config)
    model.load_state_dict(ckpt.state_dict)
    return model.eval()


def lightning_checkpoint(ckpt: AudiocraftCheckpoint) -> dict[str, Any]:
    """The converted weights as a `MagnetLightningModule` checkpoint dict (plain types only)."""
    import lightning

    meta = ckpt.metadata
    hparams = {
        "model": asdict(ckpt.config),
        "masking": {"span_len": meta["span_len"], "per_sample_stage": False, "stage_weights": []},
        "text_encoder": meta["text_encoder"],
        "cfg_dropout": meta["cfg_dropout"],
        "word_dropout": 0.3 if meta["sample_rate"] != 16000 else 0.0,
        "codec": meta["codec"],
        "sample_rate": meta["sample_rate"],
        "frame_rate": meta["frame_rate"],
        "segment_duration": meta["segment_duration"],
        "decoding": meta["decoding"],
    }
    return {
        "state_dict": {f"model.{name}": value for name, value in ckpt.state_dict.items()},
        "hyper_parameters": hparams,
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
        "converted_from": meta["source"],
    }


def convert_audiocraft(src: str | Path, out: str | Path) -> AudiocraftCheckpoint:
    """Write `src` (audiocraft state_dict.bin) as a Lightning checkpoint at `out`, atomically."""
    ckpt = read_audiocraft(src)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    torch.save(lightning_checkpoint(ckpt), tmp)
    tmp.replace(out)
    return ckpt


def main(argv: list[str] | None = None) -> None:
    import sys

    from magnet_lightning.errors import UserError, pop_debug_flag, user_errors
    from magnet_lightning.stale_files import remove_stale

    parser = argparse.ArgumentParser(prog="python -m magnet_lightning.convert", description=__doc__.split("\n\n")[0],
                                     epilog="A mistake is one line and exit code 2; --debug shows the traceback.")
    sub = parser.add_subparsers(dest="format", required=True)
    ac = sub.add_parser("audiocraft", help="audiocraft MAGNeT state_dict.bin -> Lightning checkpoint")
    ac.add_argument("src", help="path to state_dict.bin")
    ac.add_argument("out", help="output .ckpt path")
    args = parser.parse_args(pop_debug_flag(sys.argv[1:] if argv is None else argv))
    with user_errors(CheckpointError):
        out = Path(args.out)
        if out.is_dir():
            raise UserError(f"output {out} is a folder: give the .ckpt file to write, e.g. {out / 'model.ckpt'}")
        if out.exists() and out.resolve() == Path(args.src).resolve():
            raise UserError(f"output {out} is the input file: give another path")
        remove_stale(out.parent, out.name + ".tmp")  # left by a killed conversion
        ckpt = convert_audiocraft(args.src, args.out)
    print(f"wrote {args.out}: {ckpt.config} ({ckpt.config.num_parameters() / 1e6:.1f} M parameters)")
    print(f"metadata: {ckpt.metadata}")


if __name__ == "__main__":
    main()
