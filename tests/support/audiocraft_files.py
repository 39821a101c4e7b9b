"""Files in audiocraft's release formats, built for tests from the REAL released configs with tiny sizes.

- `tiny_xp_cfg(name)`: the released xp.cfg text of `name` (../shared/reference/released_configs/) with only the
  transformer sizes overridden; every other key, `${...}` interpolations included, stays as Meta wrote it.
- `lm_state_dict_bin(...)`: a `state_dict.bin` ({'best_state', 'xp.cfg', 'version', 'exported'}) with random weights in
  audiocraft's parameter names.
- `codec_state_dict_bin(...)`: an audiocraft `compression_state_dict.bin` of the 16 kHz AudioGen EnCodec (real config,
  tiny widths) with audiocraft's SEANet / RVQ parameter names and old-style weight-norm tensors (weight_g, weight_v).
- `hub_cache(...)`: files laid out as the Hugging Face cache does (models--org--name/snapshots/REV/..., refs/main),
  so `huggingface_hub.hf_hub_download` finds them offline, as it would after `hf download`.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import torch
import yaml

from support.paths import RELEASED_CONFIGS

CONFIGS = RELEASED_CONFIGS
MAGNET = ["magnet-small-10secs", "magnet-medium-10secs", "magnet-small-30secs", "magnet-medium-30secs",
          "audio-magnet-small", "audio-magnet-medium"]
MUSICGEN = ["musicgen-small", "musicgen-medium", "musicgen-large"]
CODEC_CFG = CONFIGS / "audiogen-encodec-16khz.compression_xp_cfg.yaml"
TINY = {"dim": 16, "num_heads": 2, "num_layers": 2}
TEXT_DIM = {"t5-base": 768, "t5-large": 1024}


def released_cfg_text(name: str) -> str:
    return (CONFIGS / f"{name}.xp_cfg.yaml").read_text()


def tiny_xp_cfg(name: str, **sizes) -> str:
    """The released config of `name`, transformer_lm sizes replaced (default TINY); YAML text as the exporter writes."""
    cfg = yaml.safe_load(released_cfg_text(name))
    cfg["transformer_lm"].update({**TINY, **sizes})
    return yaml.safe_dump(cfg, sort_keys=False)


STEREO_GRID = {  # audiocraft/grids/musicgen/musicgen_stereo_finetune_32khz.py: the stereo releases' settings
    "codebooks_pattern.delay.delays": [0, 0, 1, 1, 2, 2, 3, 3], "transformer_lm.n_q": 8,
    "interleave_stereo_codebooks.use": True, "channels": 2,
}


def stereo_xp_cfg(name: str, **sizes) -> str:
    """The released MusicGen config `name` fine-tuned to stereo as audiocraft's stereo grid does (STEREO_GRID), tiny
    transformer sizes; YAML text as the exporter writes."""
    cfg = yaml.safe_load(tiny_xp_cfg(name, **sizes))
    for dotted, value in STEREO_GRID.items():
        *parents, leaf = dotted.split(".")
        node = cfg
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return yaml.safe_dump(cfg, sort_keys=False)


def lm_best_state(cfg_text: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Random weights of the LM that `cfg_text` describes, in audiocraft's names (audiocraft_checkpoint.md), drawn
    in `dtype` (the released files hold float16)."""
    cfg = yaml.safe_load(cfg_text)
    lm = cfg["transformer_lm"]
    d, k, v, layers = lm["dim"], lm["n_q"], lm["card"], lm["num_layers"]
    e = TEXT_DIM[cfg["conditioners"]["description"]["t5"]["name"]]
    ffn = int(lm["hidden_scale"] * d)
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype).mul_(0.2)

    state = {f"emb.{i}.weight": r(v + 1, d) for i in range(k)}
    for i in range(layers):
        p = f"transformer.layers.{i}."
        for norm in ("norm1", "norm_cross", "norm2"):
            state[p + norm + ".weight"] = 1 + r(d)
            state[p + norm + ".bias"] = r(d)
        for attn in ("self_attn", "cross_attention"):
            state[p + attn + ".in_proj_weight"] = r(3 * d, d)
            state[p + attn + ".out_proj.weight"] = r(d, d)
        state[p + "linear1.weight"] = r(ffn, d)
        state[p + "linear2.weight"] = r(d, ffn)
    state["out_norm.weight"], state["out_norm.bias"] = 1 + r(d), r(d)
    state.update({f"linears.{i}.weight": r(v, d) for i in range(k)})
    proj = "condition_provider.conditioners.description.output_proj."
    state[proj + "weight"], state[proj + "bias"] = r(d, e), r(d)
    return state


def lm_state_dict_bin(path: Path, cfg_text: str, best_state: dict | None = None, seed: int = 0,
                      dtype: torch.dtype = torch.float32) -> Path:
    best_state = lm_best_state(cfg_text, seed, dtype) if best_state is None else best_state
    torch.save({"best_state": best_state, "xp.cfg": cfg_text, "version": "1.4.0a2", "exported": True}, path)
    return path


def released_size_state_dict_bin(path: Path, name: str = "magnet-small-10secs", seed: int = 0) -> Path:
    """A `state_dict.bin` as Meta releases `name` (its real xp.cfg and sizes, float16 weights), random weights:
    magnet-small 420 M parameters (0.84 GB), magnet-medium 1.84 B (3.7 GB)."""
    return lm_state_dict_bin(path, released_cfg_text(name), seed=seed, dtype=torch.float16)


# ------------------------------------------------------------------------------------------------ the 16 kHz codec
def tiny_codec_cfg(n_filters: int = 4, dimension: int = 8, bins: int = 2048) -> str:
    cfg = yaml.safe_load(CODEC_CFG.read_text())
    cfg["seanet"].update(n_filters=n_filters, dimension=dimension)
    cfg["rvq"]["bins"] = bins
    return yaml.safe_dump(cfg, sort_keys=False)


def _conv(state, prefix, c_in, c_out, kernel, g, transposed=False):
    """One weight-normed conv in audiocraft's naming: PREFIX.conv.conv.{weight_g, weight_v, bias}."""
    inner = "convtr.convtr" if transposed else "conv.conv"
    shape = (c_in, c_out, kernel) if transposed else (c_out, c_in, kernel)
    v = torch.randn(*shape, generator=g) / math.sqrt(c_in * kernel)
    gdim = (c_in, 1, 1) if transposed else (c_out, 1, 1)  # weight norm over dim 0 (audiocraft's default)
    state[f"{prefix}.{inner}.weight_v"] = v
    norm = v.flatten(1).norm(dim=1).reshape(gdim)
    state[f"{prefix}.{inner}.weight_g"] = norm * (1 + 0.3 * torch.rand(gdim, generator=g))
    state[f"{prefix}.{inner}.bias"] = 0.1 * torch.randn(c_out, generator=g)


def _lstm(state, prefix, dim, layers, g):
    for n in range(layers):
        for kind in ("ih", "hh"):
            state[f"{prefix}.lstm.weight_{kind}_l{n}"] = torch.randn(4 * dim, dim, generator=g) / math.sqrt(dim)
            state[f"{prefix}.lstm.bias_{kind}_l{n}"] = 0.1 * torch.randn(4 * dim, generator=g)


def _resblock(state, prefix, dim, g, kernel):
    _conv(state, f"{prefix}.block.1", dim, dim // 2, kernel, g)  # SEANet compress = 2
    _conv(state, f"{prefix}.block.3", dim // 2, dim, 1, g)


def codec_best_state(cfg_text: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights of audiocraft's SEANet EnCodec that `cfg_text` describes, laid out as audiocraft's modules are:
    encoder.model = [conv, (resblock, ELU, down-conv) per ratio, LSTM, ELU, conv]; decoder.model = [conv, LSTM,
    (ELU, up-convtr, resblock) per ratio, ELU, conv]; quantizer.vq.layers.K._codebook.*."""
    cfg = yaml.safe_load(cfg_text)
    s, rvq = cfg["seanet"], cfg["rvq"]
    n, dim, ratios, kernel, res_kernel = s["n_filters"], s["dimension"], s["ratios"], s["kernel_size"], \
        s["residual_kernel_size"]
    assert s["n_residual_layers"] == 1 and s["true_skip"]
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    _conv(state, "encoder.model.0", 1, n, kernel, g)
    index, mult = 1, 1
    for ratio in reversed(ratios):
        _resblock(state, f"encoder.model.{index}", mult * n, g, res_kernel)
        _conv(state, f"encoder.model.{index + 2}", mult * n, mult * n * 2, 2 * ratio, g)
        index, mult = index + 3, mult * 2
    _lstm(state, f"encoder.model.{index}", mult * n, s["lstm"], g)
    _conv(state, f"encoder.model.{index + 2}", mult * n, dim, s["last_kernel_size"], g)
    _conv(state, "decoder.model.0", dim, mult * n, kernel, g)
    _lstm(state, "decoder.model.1", mult * n, s["lstm"], g)
    index = 2
    for ratio in ratios:
        _conv(state, f"decoder.model.{index + 1}", mult * n, mult * n // 2, 2 * ratio, g, transposed=True)
        _resblock(state, f"decoder.model.{index + 2}", mult * n // 2, g, res_kernel)
        index, mult = index + 3, mult // 2
    _conv(state, f"decoder.model.{index + 1}", n, 1, s["last_kernel_size"], g)
    for q in range(rvq["n_q"]):
        p = f"quantizer.vq.layers.{q}._codebook."
        embed = torch.randn(rvq["bins"], dim, generator=g)
        state.update({p + "inited": torch.ones(1), p + "cluster_size": torch.ones(rvq["bins"]), p + "embed": embed,
                      p + "embed_avg": embed.clone()})
    return state


def codec_state_dict_bin(path: Path, cfg_text: str | None = None, seed: int = 0) -> Path:
    cfg_text = cfg_text or tiny_codec_cfg()
    torch.save({"best_state": codec_best_state(cfg_text, seed), "xp.cfg": cfg_text}, path)
    return path


def pretrained_codec_bin(path: Path, name: str = "facebook/encodec_32khz") -> Path:
    """A music compression_state_dict.bin as released: it only names the transformers codec."""
    torch.save({"pretrained": name}, path)
    return path


# ------------------------------------------------------------------------------------------------ Hugging Face cache
def hub_cache(cache: Path, repo_id: str, files: dict[str, Path], revision: str = "0" * 40) -> Path:
    """Lay out `files` (repo file name -> local path, or a folder for save_pretrained contents) as the HF cache does."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        if Path(src).is_dir():
            for item in Path(src).iterdir():
                shutil.copy(item, snapshot / item.name)
        else:
            shutil.copy(src, snapshot / name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def tiny_t5_folder(path: Path, width: int) -> Path:
    """A T5 encoder of the given width with a byte-level tokenizer, saved as `save_pretrained` writes it."""
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    tok = ByT5Tokenizer()
    torch.manual_seed(0)
    T5EncoderModel(T5Config(vocab_size=len(tok), d_model=width, d_kv=8, d_ff=32, num_layers=1, num_heads=2)) \
        .save_pretrained(path)
    tok.save_pretrained(path)
    return path


def tiny_encodec_32khz_folder(path: Path) -> Path:
    """The architecture of facebook/encodec_32khz (32 kHz, hop 640, K=4 x V=2048) at tiny widths."""
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(0)
    cfg = EncodecConfig(sampling_rate=32000, audio_channels=1, codebook_size=2048, num_filters=4, hidden_size=8,
                        codebook_dim=8, upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[2.2], num_lstm_layers=1,
                        use_causal_conv=False, normalize=False, use_conv_shortcut=False)
    EncodecModel(cfg).save_pretrained(path)
    return path


def varied_encodec_32khz_folder(folder: Path) -> Path:
    """facebook/encodec_32khz's architecture at tiny widths with random codebooks (distinct codes decode to distinct
    audio, so a channel decoded from the other channel's codebooks shows)."""
    from transformers import EncodecModel

    model = EncodecModel.from_pretrained(tiny_encodec_32khz_folder(folder))
    g = torch.Generator().manual_seed(0)
    for layer in model.quantizer.layers:
        layer.codebook.embed.copy_(torch.randn(layer.codebook.embed.shape, generator=g))
    model.save_pretrained(folder)
    return folder
