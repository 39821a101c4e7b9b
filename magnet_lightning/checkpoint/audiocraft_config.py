"""Reading audiocraft's training configs (`xp.cfg`) by audiocraft's own rules.

Released checkpoints carry the whole Hydra composition of their training job as YAML text, with `${...}`
interpolations unresolved. `read_xp_cfg` parses it and resolves the interpolations; `read_lm_config` turns an LM's
config into what this project needs, and accounts for every key: each leaf is *used*, *ignored* with a reason
(training, logging or cluster settings that do not change the model's maths), or refused when it names an
architecture this project cannot run. Rules that audiocraft applies in code rather than in the file are applied
here too:
- cross-attention is on whenever `fuser.cross` is non-empty (`models/builders.py::get_lm_model`), whatever
  `transformer_lm.cross_attention` says (the released files keep its default, false); the conditions, text and
  MusicGen-melody's chroma, are read by audiocraft_melody.py;
- `transformer_lm.segment_duration`, `.span_len` and `.compression_model_framerate` are overwritten by the loader
  from `dataset.segment_duration`, `masking.span_len` and the codec (`models/loaders.py::load_lm_model_magnet`).
"""

from __future__ import annotations

import fnmatch
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from magnet_lightning.checkpoint.audiocraft_families import (
    AUDIOCRAFT_IMPORTS,
    DEFAULT_LM_MODEL,
    LM_MODELS,
    AudiocraftImport,
    family_of_lm_model,
)
from magnet_lightning.checkpoint.audiocraft_melody import (
    CONDITIONING_KEYS,
    Conditioning,
    ConditioningError,
    read_conditioning,
)
from magnet_lightning.checkpoint.audiocraft_melody import IGNORED as MELODY_IGNORED
from magnet_lightning.config import MelodyConfig, ModelConfig

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """An xp.cfg that cannot be read, or that describes a model this project cannot run (the message names the key)."""


# ------------------------------------------------------------------------------------------------ YAML + interpolation
_REF = re.compile(r"\$\{([^}]+)\}")


def read_xp_cfg(raw: Any) -> dict:
    """xp.cfg YAML text (or an already parsed mapping) -> dict with `${a.b}` interpolations resolved.

    Resolver calls such as `${oc.env:USER}` are left as text: no key this project reads uses them.
    """
    import yaml

    if isinstance(raw, dict):
        cfg = raw
    elif isinstance(raw, str):
        try:
            cfg = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"xp.cfg is not valid YAML: {err}") from err
    else:
        raise ConfigError(f"xp.cfg must be YAML text, got {type(raw).__name__}")
    if not isinstance(cfg, dict):
        raise ConfigError("xp.cfg does not hold a mapping")
    return _resolve(cfg, cfg, ())


def _resolve(node: Any, root: dict, seen: tuple[str, ...]) -> Any:
    if isinstance(node, dict):
        return {key: _resolve(value, root, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(value, root, seen) for value in node]
    if not isinstance(node, str) or "${" not in node:
        return node
    whole = _REF.fullmatch(node.strip())
    if whole:
        return _interpolate(whole.group(1), root, seen, node)
    return _REF.sub(lambda m: str(_interpolate(m.group(1), root, seen, m.group(0))), node)


def _interpolate(ref: str, root: dict, seen: tuple[str, ...], text: str) -> Any:
    if ":" in ref:  # a resolver (oc.env, ...): kept verbatim
        return text
    if ref in seen:
        raise ConfigError(f"xp.cfg: circular interpolation through {ref!r}")
    value = lookup(root, ref, default=_MISSING)
    if value is _MISSING:
        raise ConfigError(f"xp.cfg: interpolation ${{{ref}}} names no key")
    return _resolve(value, root, seen + (ref,))


_MISSING = object()


def lookup(cfg: dict, dotted: str, default: Any = KeyError) -> Any:
    """cfg['a']['b'] for 'a.b'; `default` when absent (ConfigError when no default is given)."""
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is KeyError:
                raise ConfigError(f"xp.cfg has no field {dotted!r}")
            return default
        node = node[part]
    return node


def leaves(cfg: dict, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a nested mapping by dotted path (empty mappings are leaves)."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(leaves(value, path + "."))
        else:
            out[path] = value
    return out


# ------------------------------------------------------------------------------------------------ what each key means
_INFRA = "audiocraft solver infrastructure (devices, logging, cluster, checkpoints, evaluation): not part of the model"
_TRAIN = "training-only setting: the weights are given, our recipes set their own"
_IGNORED: list[tuple[str, str]] = [
    *[(key, _INFRA) for key in (
        "device", "dtype", "autocast", "autocast_dtype", "seed", "show", "continue_from", "execute_only",
        "execute_inplace", "execute_best", "benchmark_no_load", "efficient_attention_backend", "num_threads",
        "mp_start_method", "label", "logging.*", "tensorboard.*", "wandb.*", "slurm.*", "dora.*", "datasource.*",
        "solver", "fsdp.*", "profiler.*", "deadlock.*", "checkpoint.*", "evaluate.*", "metrics.*", "cache.*",
    )],
    *[(key, _TRAIN) for key in (
        "dataset.*", "optim.*", "schedule.*", "tokens.*", "attribute_dropout", "attribute_dropout.*",
        "transformer_lm.dropout", "transformer_lm.attention_dropout", "transformer_lm.emb_lr",
        "transformer_lm.checkpointing", "transformer_lm.weight_init", "transformer_lm.depthwise_init",
        "transformer_lm.zero_bias_init",
    )],
    ("generate.*", "settings of the sample generation during training (its decoding options are read separately)"),
    ("transformer_lm.custom", "attention kernel choice: same maths"),
    ("transformer_lm.memory_efficient", "attention kernel choice: same maths"),
    ("transformer_lm.attention_as_float32", "attention numerics (float32 softmax): same maths"),
    ("transformer_lm.cross_attention",
     "audiocraft's builder switches cross-attention on when fuser.cross is non-empty"),
    ("transformer_lm.compression_model_framerate", "overwritten by audiocraft's loader from the codec"),
    ("transformer_lm.segment_duration", "overwritten by audiocraft's loader from dataset.segment_duration"),
    ("transformer_lm.span_len", "overwritten by audiocraft's loader from masking.span_len"),
    ("fuser.cross_attention_pos_emb_scale", "only used with fuser.cross_attention_pos_emb"),
    ("codebooks_pattern.unroll.*", "settings of a codebook pattern the model does not use"),
    ("codebooks_pattern.music_lm.*", "settings of a codebook pattern the model does not use"),
    ("codebooks_pattern.coarse_first.*", "settings of a codebook pattern the model does not use"),
    *MELODY_IGNORED,
]
_ARCHITECTURE = {  # transformer_lm settings of the one architecture this project implements, and the value it needs
    "norm_first": True, "bias_ff": False, "bias_attn": False, "bias_proj": False, "positional_embedding": "sin",
    "activation": "gelu", "norm": "layer_norm", "layer_scale": None, "xpos": False, "qk_layer_norm": False,
    "qk_layer_norm_cross": False, "kv_repeat": 1, "past_context": None,
}
_SIZES = ("dim", "num_heads", "num_layers", "hidden_scale", "n_q", "card")



@dataclass(frozen=True)
class AudiocraftLM:
    """What an audiocraft LM's xp.cfg means for this project."""

    family: str
    """The model family the file's `lm_model` imports as (checkpoint/audiocraft_families.py)."""
    model: ModelConfig
    causal: bool
    delays: tuple[int, ...]
    """Per-codebook delays of the 'delay' pattern; () for MAGNeT's parallel layout."""
    text_encoder: str
    """T5 name (t5-base for music, t5-large for audio)."""
    word_dropout: float
    cfg_dropout: float
    cfg_coef: float
    """classifier_free_guidance.inference_coef (the autoregressive family's guidance)."""
    sample_rate: int
    channels: int
    stereo: bool
    """Interleaved stereo codebooks (codec/stereo.py): the codec named by `codec` applied to each channel."""
    codec: str
    """compression_model_checkpoint as written, e.g. //pretrained/facebook/encodec_32khz or //reference/.../x.th."""
    frame_rate: float
    segment_duration: float
    span_len: int
    generation: dict[str, Any]
    """Decoding defaults from generate.lm, by our option names (DecodingConfig fields for MAGNeT)."""
    melody: MelodyConfig | None = None
    """The melody conditioner's chroma settings (MusicGen-melody), None without one."""
    used: tuple[str, ...] = ()
    ignored: dict[str, str] = field(default_factory=dict)
    """Every ignored key and why."""


def _classify(keys: list[str], rules: list[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    ignored, unknown = {}, []
    for key in keys:
        reason = next((why for pattern, why in rules if fnmatch.fnmatchcase(key, pattern)), None)
        if reason is None:
            unknown.append(key)
        else:
            ignored[key] = reason
    return ignored, unknown


def _require(cfg: dict, key: str, needed: Any, why: str) -> None:
    value = lookup(cfg, key, needed)
    if value != needed:
        raise ConfigError(f"unsupported config: {key}={value!r} ({why}; this project needs {needed!r})")


def _check_conditioning(cfg: dict) -> Conditioning:
    try:
        conditioning = read_conditioning(cfg)
    except ConditioningError as err:
        raise ConfigError(str(err)) from err
    _require(cfg, "conditioners.description.model", "t5", "the text encoder")
    _require(cfg, "conditioners.description.t5.finetune", False, "a fine-tuned T5 whose weights are not exported")
    _require(cfg, "conditioners.description.t5.normalize_text", False, "spaCy text normalisation")
    return conditioning


def _check_channels(cfg: dict, n_q: int) -> bool:
    """Whether the model is stereo: audiocraft's interleaved stereo (`interleave_stereo_codebooks.use`, the codec
    applied to each channel, codebooks interleaved per channel: `builders.get_wrapped_compression_model`) with
    `channels: 2`, or mono with `channels: 1`."""
    stereo = bool(lookup(cfg, "interleave_stereo_codebooks.use", False))
    channels = int(lookup(cfg, "channels", 1))
    if channels != (2 if stereo else 1):
        raise ConfigError(f"unsupported config: channels={channels} with interleave_stereo_codebooks.use={stereo} "
                          "(this project reads mono models and the interleaved stereo ones, channels 2)")
    if stereo:
        _require(cfg, "interleave_stereo_codebooks.per_timestep", False, "stereo interleaved along time")
        if n_q % 2:
            raise ConfigError(f"unsupported config: transformer_lm.n_q={n_q} is odd with interleaved stereo "
                              "codebooks (two channels of the same codec)")
    codec_n_q = lookup(cfg, "compression_model_n_q", None)  # set on the mono codec, before interleaving
    if codec_n_q is not None and int(codec_n_q) * (2 if stereo else 1) != n_q:
        raise ConfigError(f"unsupported config: compression_model_n_q={codec_n_q} does not give "
                          f"transformer_lm.n_q={n_q} codebooks{' (two channels)' if stereo else ''}")
    return stereo


def _check_architecture(cfg: dict, spec: AudiocraftImport) -> tuple[bool, tuple[int, ...]]:
    lm = lookup(cfg, "transformer_lm")
    for name, needed in _ARCHITECTURE.items():
        _require(cfg, f"transformer_lm.{name}", needed, "a transformer variant this project does not implement")
    causal = bool(lm.get("causal", False))
    modeling = lookup(cfg, "codebooks_pattern.modeling", "parallel")
    n_q = int(lookup(cfg, "transformer_lm.n_q"))
    if causal != spec.causal or modeling != spec.pattern:
        raise ConfigError(f"unsupported config: lm_model={spec.lm_model} with transformer_lm.causal={causal}, "
                          f"codebooks_pattern.modeling={modeling!r} (this family needs causal={spec.causal} and the "
                          f"{spec.pattern} pattern)")
    if not spec.delays:
        return causal, ()
    delays = tuple(int(d) for d in lookup(cfg, "codebooks_pattern.delay.delays"))
    if len(delays) != n_q:
        raise ConfigError(f"unsupported config: codebooks_pattern.delay.delays={list(delays)} for n_q={n_q}")
    for key in ("codebooks_pattern.delay.flatten_first", "codebooks_pattern.delay.empty_initial"):
        _require(cfg, key, 0, "a delay pattern variant")
    return causal, delays


def _known_keys(spec: AudiocraftImport) -> set[str]:
    used = {f"transformer_lm.{k}" for k in (*_SIZES, *_ARCHITECTURE, "causal", "subcodes_context")}
    used |= {"lm_model", "codebooks_pattern.modeling", "sample_rate", "channels", "compression_model_checkpoint",
             "compression_model_n_q", "masking.span_len", "classifier_free_guidance.training_dropout",
             *CONDITIONING_KEYS, "interleave_stereo_codebooks.use", "interleave_stereo_codebooks.per_timestep",
             "conditioners.description.model", "conditioners.description.t5.name",
             "conditioners.description.t5.finetune", "conditioners.description.t5.word_dropout",
             "conditioners.description.t5.normalize_text", "dataset.segment_duration"}
    used |= set(spec.extra_keys)
    return used | {f"generate.lm.{k}" for k in spec.generation_keys}


def _generation(cfg: dict, spec: AudiocraftImport) -> dict[str, Any]:
    out = {ours: lookup(cfg, f"generate.lm.{theirs}") for theirs, ours in spec.generation_keys.items()
           if lookup(cfg, f"generate.lm.{theirs}", None) is not None}
    if "decoding_steps" in out:
        out["decoding_steps"] = [int(s) for s in out["decoding_steps"]]
    for key, (ours, kind, default) in spec.guidance_keys.items():
        out[ours] = kind(lookup(cfg, key, default))
    return out


def read_lm_config(raw: Any, text_dim: int | None = None) -> AudiocraftLM:
    """An audiocraft LM xp.cfg (YAML text or mapping) -> AudiocraftLM, every key used or deliberately ignored.

    text_dim: width of the T5 states (read from the weights' projection by the caller); default from the T5 name.
    Raises ConfigError naming the key for an architecture this project cannot run or an unknown model key.
    """
    cfg = read_xp_cfg(raw)
    lm_model = lookup(cfg, "lm_model", DEFAULT_LM_MODEL)
    family = family_of_lm_model(lm_model, lookup(cfg, "solver", None))
    if family is None:
        raise ConfigError(f"unsupported config: lm_model={lm_model!r} (supported: {LM_MODELS})")
    spec = AUDIOCRAFT_IMPORTS[family]
    conditioning = _check_conditioning(cfg)
    causal, delays = _check_architecture(cfg, spec)
    known = _known_keys(spec)
    rules = _IGNORED + list(spec.ignored)
    ignored, unknown = _classify([k for k in leaves(cfg) if k not in known], rules)
    model_keys = [k for k in unknown if k.split(".")[0] in ("transformer_lm", "fuser", "conditioners",
                                                             "codebooks_pattern", "interleave_stereo_codebooks")]
    if model_keys:
        raise ConfigError(f"unknown model setting {model_keys[0]} in xp.cfg: this reader does not know how it "
                          "changes the model, so it refuses the file")
    for key in unknown:
        ignored[key] = "not read by audiocraft's LM builder"
        log.info("xp.cfg: ignoring unknown key %s", key)
    n_q = int(lookup(cfg, "transformer_lm.n_q"))
    stereo = _check_channels(cfg, n_q)
    text_encoder = str(lookup(cfg, "conditioners.description.t5.name"))
    dim = int(lookup(cfg, "transformer_lm.dim"))
    model = ModelConfig(
        dim=dim,
        num_heads=int(lookup(cfg, "transformer_lm.num_heads")),
        num_layers=int(lookup(cfg, "transformer_lm.num_layers")),
        ffn_dim=int(float(lookup(cfg, "transformer_lm.hidden_scale")) * dim),
        num_codebooks=n_q,
        codebook_size=int(lookup(cfg, "transformer_lm.card")),
        text_dim=text_dim or (1024 if "large" in text_encoder else 768),
        subcodes_context=int(lookup(cfg, "transformer_lm.subcodes_context", -1)) if spec.windowed_attention else -1,
        text_fuse=conditioning.text_fuse,
        chroma_bins=conditioning.melody.n_chroma if conditioning.melody else 0,
        chroma_fuse=conditioning.chroma_fuse,
    )
    return AudiocraftLM(
        family=family, model=model, causal=causal, delays=delays, text_encoder=text_encoder,
        word_dropout=float(lookup(cfg, "conditioners.description.t5.word_dropout", 0.0)),
        cfg_dropout=float(lookup(cfg, "classifier_free_guidance.training_dropout", 0.0)),
        cfg_coef=float(lookup(cfg, "classifier_free_guidance.inference_coef", 3.0)),
        sample_rate=int(lookup(cfg, "sample_rate")), channels=int(lookup(cfg, "channels", 1)), stereo=stereo,
        codec=str(lookup(cfg, "compression_model_checkpoint")),
        frame_rate=float(lookup(cfg, "transformer_lm.compression_model_framerate", 50)),
        segment_duration=float(lookup(cfg, "dataset.segment_duration")),
        span_len=int(lookup(cfg, "masking.span_len", 1)),
        generation=_generation(cfg, spec), melody=conditioning.melody, used=tuple(sorted(known & set(leaves(cfg)))),
        ignored=ignored,
    )
