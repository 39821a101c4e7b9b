"""The Hybrid-MAGNeT release format (`facebook/hybrid-magnet-small`, `-medium`) against files made by the code of
audiocraft's `hybrid_magnet` branch (tests/fixtures/audiocraft_hybrid_magnet/, see its README): the branch's config
(`solver: hybrid_magnet`, the MAGNeT LM, the delay pattern) reads as our Hybrid-MAGNeT with every key accounted for,
0 missing and 0 unexpected weights and its decoding defaults; our attention masks equal the branch's and our
teacher-forced logits its forward's; the releases load by repo id and generate, the autoregressive prompt's length a
parameter."""

from dataclasses import replace

import pytest
import torch
import yaml
from support.audiocraft_files import (
    TEXT_DIM,
    hub_cache,
    pretrained_codec_bin,
    tiny_encodec_32khz_folder,
    tiny_t5_folder,
)
from support.paths import FIXTURES

from magnet_lightning.checkpoint.audiocraft import convert_audiocraft, read_audiocraft
from magnet_lightning.checkpoint.audiocraft_config import ConfigError, read_lm_config
from magnet_lightning.checkpoint.pretrained import load_pretrained
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.generation.hybrid_magnet import HybridDecodingConfig
from magnet_lightning.models.hybrid import HybridMagnetTransformer, hybrid_attention_mask

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURE = FIXTURES / "audiocraft_hybrid_magnet"
SIZES = {"hybrid-magnet-small": (1024, 16, 24), "hybrid-magnet-medium": (1536, 24, 48)}
DECODING = {"use_sampling": True, "temperature": 3.0, "top_k": 0, "top_p": 0.9, "max_cfg_coef": 10.0,
            "min_cfg_coef": 1.0, "decoding_steps": [60, 10, 10, 10], "anneal_temperature": True,
            "span_scoring": "max", "span_arrangement": "nonoverlap", "ar_cfg_coef": 3.0}


@pytest.fixture(scope="module")
def reference():
    return torch.load(FIXTURE / "reference.pt", weights_only=True)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_release_reads_as_hybrid_magnet_with_every_weight_and_its_decoding_defaults(name):
    full = read_lm_config((FIXTURE / name / "xp_cfg_full.yaml").read_text(), text_dim=768)
    assert (full.model.dim, full.model.num_heads, full.model.num_layers) == SIZES[name]
    ckpt = read_audiocraft(FIXTURE / name / "state_dict.bin")
    spec, meta = ckpt.spec, ckpt.metadata
    assert spec.family == "hybrid" and not spec.causal and spec.delays == (0, 1, 2, 3) and "solver" in spec.used
    assert spec.model.subcodes_context == 5 and spec.model.hybrid_stage0_attention == "stream"
    assert (meta["span_len"], meta["segment_duration"], meta["codec"]) == (3, 30.0, "facebook/encodec_32khz")
    assert meta["decoding"] == DECODING  # generate.lm's MAGNeT keys; max_prompt_len is null: no prompt_seconds
    raw = torch.load(FIXTURE / name / "state_dict.bin", weights_only=True)["best_state"]
    model = HybridMagnetTransformer(ckpt.config, spec.delays)
    result = model.load_state_dict(ckpt.state_dict, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert sum(v.numel() for v in raw.values()) == sum(v.numel() for v in model.state_dict().values())
    assert isinstance(ckpt.build_model(), HybridMagnetTransformer)


def test_our_attention_masks_equal_the_branch_layout(reference):
    steps = reference["frames"] + 4  # S = T + max_delay + 1
    assert reference["masks"] and set(reference["masks"]) == {1, 2, 3}
    for stage, by_prompt in reference["masks"].items():
        for prompt, theirs in by_prompt.items():
            ours = hybrid_attention_mask(torch.tensor([prompt + 1]), steps, stage, reference["window"], (0, 1, 2, 3))
            assert torch.equal(ours[0, 0], theirs[:steps, :steps]), (stage, prompt)
    assert reference["stage0_error"].startswith("UnboundLocalError")  # why stage 0 is an option


def test_teacher_forced_logits_equal_the_branch_forward(reference):
    model = read_audiocraft(FIXTURE / "hybrid-magnet-small" / "state_dict.bin").build_model()
    memory = model.prepare_text(reference["text_states"], reference["text_mask"])
    assert {case["stage"] for case in reference["cases"]} == {1, 2, 3}
    for case in reference["cases"]:
        boundary = torch.full((2,), case["prompt"] + 1)
        with torch.no_grad():
            ours = model.hybrid_logits(case["inputs"], memory, boundary, case["stage"])[..., reference["vocab_index"]]
        theirs = case["logits"]
        assert case["valid"].all() and (ours - theirs).abs().max() < 1e-5 * theirs.abs().max(), case["stage"]


def test_the_other_stage0_convention_changes_stage0_logits_only(reference):
    ckpt = read_audiocraft(FIXTURE / "hybrid-magnet-small" / "state_dict.bin")
    stream = ckpt.build_model()
    sequence = HybridMagnetTransformer(replace(ckpt.config, hybrid_stage0_attention="sequence"), ckpt.spec.delays)
    sequence.load_state_dict(stream.state_dict())
    memory = stream.prepare_text(reference["text_states"], reference["text_mask"])
    codes = reference["cases"][0]["inputs"]
    boundary = torch.full((2,), 6)
    with torch.no_grad():
        for stage, same in ((0, False), (1, True)):
            a, b = (m.hybrid_logits(codes, memory, boundary, stage) for m in (stream, sequence))
            assert torch.equal(a, b) == same, stage


def test_a_hybrid_solver_config_of_another_layout_is_refused_naming_the_key():
    cfg = yaml.safe_load((FIXTURE / "hybrid-magnet-small" / "xp_cfg_full.yaml").read_text())
    cfg["codebooks_pattern"]["modeling"] = "parallel"
    with pytest.raises(ConfigError, match="codebooks_pattern.modeling='parallel'.*delay pattern"):
        read_lm_config(yaml.safe_dump(cfg), text_dim=768)
    cfg = yaml.safe_load((FIXTURE / "hybrid-magnet-small" / "xp_cfg_full.yaml").read_text())
    cfg["generate"]["lm"]["max_prompt_len"] = 2.5  # a config that fixes the prompt's length: its default
    assert read_lm_config(yaml.safe_dump(cfg), text_dim=768).generation["prompt_seconds"] == 2.5
    cfg["solver"] = "magnet"
    with pytest.raises(ConfigError, match="lm_model=transformer_lm_magnet .*parallel pattern"):
        read_lm_config(yaml.safe_dump(cfg), text_dim=768)  # the same file under MAGNeT's solver is MAGNeT's


@pytest.fixture
def hf_cache(empty_hf_cache, tmp_path):
    cache = empty_hf_cache
    hub_cache(cache, "facebook/encodec_32khz", {"model": tiny_encodec_32khz_folder(tmp_path / "encodec")})
    hub_cache(cache, "t5-base", {"model": tiny_t5_folder(tmp_path / "t5-base", TEXT_DIM["t5-base"])})
    codec_bin = pretrained_codec_bin(tmp_path / "compression_state_dict.bin")
    for name in SIZES:
        hub_cache(cache, f"facebook/{name}", {"state_dict.bin": FIXTURE / name / "state_dict.bin",
                                              "compression_state_dict.bin": codec_bin})
    return cache


def test_releases_by_repo_id_generate_with_a_prompt_length_parameter(tmp_path, hf_cache):
    medium = load_pretrained("facebook/hybrid-magnet-medium")
    assert isinstance(medium.model, HybridMagnetTransformer) and medium.source == "facebook/hybrid-magnet-medium"
    gen = MagnetGenerator.from_pretrained("facebook/hybrid-magnet-small", device="cpu")
    assert gen.family == "hybrid" and gen.segment_duration == 30.0
    config = gen.decoding_config()
    assert isinstance(config, HybridDecodingConfig) and config.prompt_seconds is None and config.ar_cfg_coef == 3.0
    assert (config.decoding_steps, config.top_p, config.temperature) == ((60, 10, 10, 10), 0.9, 3.0)
    assert gen.plan(30.0).own_prompt_frames == 150  # not fixed by the release: 3 s unless asked
    assert gen.plan(30.0, prompt_seconds=1.0).own_prompt_frames == 50
    result = gen.generate(["calm piano"], duration=0.3, seed=0, prompt_seconds=0.1, decoding_steps=[2, 1, 1, 1])
    assert result.tokens.shape == (1, 4, 15) and result.audio.shape == (1, 1, 9600)
    converted = convert_audiocraft("facebook/hybrid-magnet-small", tmp_path / "hybrid.ckpt")
    hparams = torch.load(tmp_path / "hybrid.ckpt", weights_only=True)["hyper_parameters"]
    assert hparams["masking"]["per_sample_stage"] and hparams["delays"] == [0, 1, 2, 3]  # the branch's solver
    again = load_pretrained(tmp_path / "hybrid.ckpt")
    assert again.model.family == "hybrid" and again.span_len == 3 and again.decoding == converted.metadata["decoding"]
    assert torch.equal(again.model.emb, gen.model.emb)
