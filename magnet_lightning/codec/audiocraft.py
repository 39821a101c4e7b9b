"""audiocraft-format EnCodec (`compression_state_dict.bin`) as a `transformers.EncodecModel`.

audiocraft publishes its codecs as `{'best_state', 'xp.cfg'}` (e.g. the 16 kHz AudioGen codec of Audio-MAGNeT,
`//reference/bd44a852/checkpoint.th` in its training config, shipped as `compression_state_dict.bin` in
`facebook/audio-magnet-*`), or as `{'pretrained': 'facebook/encodec_32khz'}`, which only names a transformers model.
The SEANet + RVQ architecture is the one transformers implements, so the config maps field by field (every SEANet
and RVQ setting is read or refused; `pad_mode` matters: transformers' default 'reflect' gives a 0.49 relative latent
error on a codec trained with 'constant') and the weights need renames only:
`(encoder|decoder).model.N` -> `.layers.N`, `.conv.conv.` / `.convtr.convtr.` -> `.conv.`,
`quantizer.vq.layers.K._codebook.` -> `quantizer.layers.K.codebook.`; weight-norm `weight_g` / `weight_v` load
through torch's weight-norm compatibility hook.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import torch

from magnet_lightning.checkpoint import hub
from magnet_lightning.checkpoint.audiocraft_config import ConfigError, lookup, read_xp_cfg
from magnet_lightning.errors import CheckpointError

_SEANET_FIXED = {  # seanet.<key>: the only value transformers' EnCodec implements
    "activation": "ELU", "activation_params": {"alpha": 1.0}, "norm": "weight_norm", "norm_params": {},
    "true_skip": True, "disable_norm_outer_blocks": 0, "causal": False,
    "decoder.trim_right_ratio": 1.0, "decoder.final_activation": None,
}
_RENAMES = [
    (re.compile(r"^(encoder|decoder)\.model\.(\d+)\."), r"\1.layers.\2."),
    (re.compile(r"\.conv\.conv\."), ".conv."),
    (re.compile(r"\.convtr\.convtr\."), ".conv."),
    (re.compile(r"^quantizer\.vq\.layers\.(\d+)\._codebook\."), r"quantizer.layers.\1.codebook."),
]


class CodecFileError(ValueError):
    """A compression_state_dict.bin that cannot be read (the message says why)."""


def read_compression_state(path: str | Path) -> dict[str, Any]:
    """Load an audiocraft compression checkpoint safely (weights_only: no code from the file runs)."""
    path = Path(path)
    try:
        pkg = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise CodecFileError(f"{path} is not a readable torch checkpoint: {err}") from err
    if not isinstance(pkg, dict) or not ("pretrained" in pkg or {"best_state", "xp.cfg"} <= set(pkg)):
        keys = sorted(pkg)[:8] if isinstance(pkg, dict) else type(pkg).__name__
        raise CodecFileError(f"{path} is not an audiocraft compression_state_dict.bin (needs 'best_state' and "
                             f"'xp.cfg', or 'pretrained'; has {keys})")
    return pkg


def _seanet(cfg: dict, key: str) -> Any:
    return lookup(cfg, f"seanet.{key}")


def encodec_config(xp_cfg: Any):
    """audiocraft compression xp.cfg (YAML text or mapping) -> transformers.EncodecConfig of the same model."""
    from transformers import EncodecConfig

    cfg = read_xp_cfg(xp_cfg)
    if lookup(cfg, "compression_model", None) != "encodec" or lookup(cfg, "encodec.autoencoder", None) != "seanet" \
            or lookup(cfg, "encodec.quantizer", None) != "rvq":
        raise ConfigError("unsupported codec config: needs compression_model=encodec with the seanet autoencoder and "
                          "the rvq quantizer")
    for key, needed in _SEANET_FIXED.items():
        value = lookup(cfg, f"seanet.{key}", needed)
        if value != needed:
            raise ConfigError(f"unsupported codec config: seanet.{key}={value!r} "
                              f"(transformers' EnCodec needs {needed!r})")
    if lookup(cfg, "encodec.renormalize", False):
        raise ConfigError("unsupported codec config: encodec.renormalize=True (per-item loudness scales)")
    ratios = [int(r) for r in _seanet(cfg, "ratios")]
    rate, dim, n_q, bins = (int(lookup(cfg, k)) for k in ("sample_rate", "seanet.dimension", "rvq.n_q", "rvq.bins"))
    frame_rate = math.ceil(rate / math.prod(ratios))
    bandwidth = n_q * frame_rate * math.log2(bins) / 1000  # kbps giving exactly n_q codebooks
    return EncodecConfig(
        sampling_rate=rate, audio_channels=int(lookup(cfg, "channels")), num_filters=int(_seanet(cfg, "n_filters")),
        num_residual_layers=int(_seanet(cfg, "n_residual_layers")), upsampling_ratios=ratios,
        hidden_size=dim, codebook_dim=dim, codebook_size=bins, num_lstm_layers=int(_seanet(cfg, "lstm")),
        kernel_size=int(_seanet(cfg, "kernel_size")), last_kernel_size=int(_seanet(cfg, "last_kernel_size")),
        residual_kernel_size=int(_seanet(cfg, "residual_kernel_size")),
        dilation_growth_rate=int(_seanet(cfg, "dilation_base")), compress=int(_seanet(cfg, "compress")),
        pad_mode=str(_seanet(cfg, "pad_mode")), trim_right_ratio=1.0, use_causal_conv=False,
        use_conv_shortcut=False, norm_type="weight_norm", normalize=False, chunk_length_s=None, overlap=None,
        target_bandwidths=[bandwidth],
    )


def rename_weights(best_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """audiocraft EncodecModel parameter names -> transformers EncodecModel names."""
    out = {}
    for name, value in best_state.items():
        for pattern, replacement in _RENAMES:
            name = pattern.sub(replacement, name)
        out[name] = value
    return out


def build_encodec(pkg: dict[str, Any], source: str):
    """An audiocraft {'best_state', 'xp.cfg'} package -> transformers.EncodecModel (eval, weights checked)."""
    from transformers import EncodecModel

    config = encodec_config(pkg["xp.cfg"])
    model = EncodecModel(config)
    state = rename_weights(pkg["best_state"])
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CodecFileError(f"{source}: weights do not fit the codec its xp.cfg describes (missing "
                             f"{result.missing_keys[:4]}, unexpected {result.unexpected_keys[:4]})")
    num_q = model.quantizer.get_num_quantizers_for_bandwidth(config.target_bandwidths[0])
    if num_q != int(lookup(read_xp_cfg(pkg["xp.cfg"]), "rvq.n_q")):
        raise CodecFileError(f"{source}: bandwidth {config.target_bandwidths[0]} kbps gives {num_q} codebooks")
    return model.eval()


def convert_codec(src: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write an audiocraft codec (compression_state_dict.bin, or a released repo id) as a transformers
    `save_pretrained` folder, loadable with `codec.load_codec(out_dir)`. Returns the folder."""
    path = hub.expand(src)
    if not path.is_file():
        path = hub.fetch(str(src), hub.CODEC_FILE) if str(src) in hub.RELEASED else path
    if not path.is_file():
        raise FileNotFoundError(f"codec file {src} not found: give an audiocraft {hub.CODEC_FILE} or a released repo "
                                "id such as facebook/audio-magnet-small")
    pkg = read_compression_state(path)
    if "pretrained" in pkg:
        raise CheckpointError(f"{path} only names the transformers model {pkg['pretrained']!r}: load that id directly "
                              "(nothing to convert)")
    out = hub.expand(out_dir)
    if out.exists():
        raise CheckpointError(f"{out} already exists: remove it or choose another folder")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    build_encodec(pkg, str(path)).save_pretrained(tmp)
    tmp.replace(out)
    return out
