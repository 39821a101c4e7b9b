"""The real released xp.cfg files read by audiocraft's rules: every key used or deliberately ignored, cross-attention
from fuser.cross, loader overrides, decoding defaults from generate.lm, and refusals that name the key."""

import pytest
import yaml
from support.audiocraft_files import MAGNET, MUSICGEN, released_cfg_text

from magnet_lightning.checkpoint.audiocraft_config import ConfigError, leaves, read_lm_config, read_xp_cfg


@pytest.mark.parametrize("name", MAGNET + MUSICGEN)
def test_every_key_of_a_released_config_is_used_or_ignored(name):
    text = released_cfg_text(name)
    spec = read_lm_config(text)
    all_keys = set(leaves(read_xp_cfg(text)))
    assert set(spec.used) | set(spec.ignored) == all_keys
    assert not set(spec.used) & set(spec.ignored)
    assert all(reason for reason in spec.ignored.values())
    assert "not read by audiocraft's LM builder" not in spec.ignored.values(), "no key of a released file is unknown"


@pytest.mark.parametrize("name", MAGNET)
def test_released_magnet_configs(name):
    cfg = yaml.safe_load(released_cfg_text(name))
    assert cfg["transformer_lm"]["cross_attention"] is False  # the exporter's default, as Meta wrote it
    spec = read_lm_config(released_cfg_text(name))
    lm = cfg["transformer_lm"]
    assert spec.family == "magnet" and not spec.causal and spec.delays == ()
    assert (spec.model.dim, spec.model.num_heads, spec.model.num_layers) == (lm["dim"], lm["num_heads"],
                                                                          lm["num_layers"])
    assert spec.model.ffn_dim == 4 * lm["dim"] and spec.model.subcodes_context == 5
    assert (spec.model.num_codebooks, spec.model.codebook_size) == (4, 2048)
    audio = name.startswith("audio")
    assert spec.text_encoder == ("t5-large" if audio else "t5-base")
    assert spec.model.text_dim == (1024 if audio else 768)
    assert spec.sample_rate == (16000 if audio else 32000)
    assert spec.codec == ("//reference/bd44a852/checkpoint.th" if audio else "//pretrained/facebook/encodec_32khz")
    # the loader's overrides: the file says segment_duration 0 and span_len -1 inside transformer_lm
    assert spec.segment_duration == cfg["dataset"]["segment_duration"] and spec.span_len == 3
    assert spec.cfg_dropout == (0.1 if audio else 0.3) and spec.word_dropout == (0.0 if audio else 0.3)
    gen = cfg["generate"]["lm"]
    assert spec.generation == {
        "use_sampling": gen["use_sampling"], "temperature": gen["temp"], "top_k": gen["top_k"], "top_p": gen["top_p"],
        "max_cfg_coef": gen["max_cfg_coef"], "min_cfg_coef": gen["min_cfg_coef"],
        "decoding_steps": gen["decoding_steps"], "anneal_temperature": gen["anneal_temp"],
        "span_scoring": gen["span_scoring"], "span_arrangement": gen["span_arrangement"],
    }
    assert spec.generation["decoding_steps"][0] == (60 if "30secs" in name else 20)


@pytest.mark.parametrize("name", MUSICGEN)
def test_released_musicgen_configs(name):
    spec = read_lm_config(released_cfg_text(name))
    assert spec.family == "musicgen" and spec.causal and spec.delays == (0, 1, 2, 3)
    assert spec.generation == {"use_sampling": True, "temperature": 1.0, "top_k": 250, "top_p": 0.0, "cfg_coef": 3.0,
                               "two_step_cfg": False}


def _edited(name, path, value):
    cfg = yaml.safe_load(released_cfg_text(name))
    node = cfg
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return yaml.safe_dump(cfg)


@pytest.mark.parametrize("path,value", [
    ("transformer_lm.norm_first", False), ("transformer_lm.positional_embedding", "rope"),
    ("transformer_lm.bias_attn", True), ("transformer_lm.kv_repeat", 2), ("transformer_lm.qk_layer_norm", True),
    ("fuser.cross", []), ("fuser.prepend", ["description"]), ("conditioners.self_wav.model", "chroma_stem"),
    ("conditioners.description.t5.finetune", True), ("channels", 2), ("lm_model", "transformer_lm_jasco"),
    ("transformer_lm.causal", True), ("codebooks_pattern.modeling", "delay"), ("transformer_lm.brand_new_knob", 1),
    ("compression_model_n_q", 2),
])
def test_architectures_we_cannot_run_are_refused_naming_the_key(path, value):
    with pytest.raises(ConfigError, match=path.split(".")[-1] if "self_wav" not in path else "self_wav"):
        read_lm_config(_edited("magnet-small-10secs", path, value))


def test_cross_attention_follows_fuser_not_the_flag():
    on = read_lm_config(_edited("magnet-small-10secs", "transformer_lm.cross_attention", True))
    off_flag = read_lm_config(released_cfg_text("magnet-small-10secs"))
    assert on.model == off_flag.model  # the flag never decides: fuser.cross does


def test_unknown_keys_outside_the_model_are_ignored_with_a_reason():
    spec = read_lm_config(_edited("magnet-small-10secs", "optim.some_future_option", 3))
    assert "optim.some_future_option" in spec.ignored
    spec = read_lm_config(_edited("magnet-small-10secs", "brand_new_section.x", 3))
    assert spec.ignored["brand_new_section.x"] == "not read by audiocraft's LM builder"


def test_interpolations_are_resolved():
    cfg = read_xp_cfg(released_cfg_text("magnet-small-10secs"))
    assert cfg["generate"]["audio"]["sample_rate"] == 32000  # written as ${sample_rate}
    assert cfg["dora"]["dir"].startswith("/checkpoint/${oc.env:USER}")  # resolver calls are left as text
    embedded = read_xp_cfg({"a": {"b": 3}, "c": "x${a.b}y", "d": "${c}"})
    assert embedded["c"] == "x3y" and embedded["d"] == "x3y"
    with pytest.raises(ConfigError, match="circular"):
        read_xp_cfg({"a": "${b}", "b": "${a}"})
    with pytest.raises(ConfigError, match="names no key"):
        read_xp_cfg({"a": "${nope.x}"})
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_xp_cfg("a: [unclosed")
