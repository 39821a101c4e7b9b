"""Stereo MusicGen releases (`facebook/musicgen-stereo-*`): audiocraft's own teacher-forced logits and greedy tokens
reproduced (the shared fixture made by audiocraft from the stereo grid's config), every size's config read with its
interleaved codebooks and delays [0, 0, 1, 1, 2, 2, 3, 3], the stereo codec named by the checkpoint, loading by repo
id from a Hugging Face cache, stereo audio and stereo WAVs, and the configs a stereo model cannot be read from."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from support.audiocraft_files import (
    MUSICGEN,
    TEXT_DIM,
    hub_cache,
    lm_best_state,
    lm_state_dict_bin,
    pretrained_codec_bin,
    stereo_xp_cfg,
    tiny_t5_folder,
    varied_encodec_32khz_folder,
)
from support.paths import SHARED_FIXTURES

from magnet_lightning.checkpoint.audiocraft import from_audiocraft, read_audiocraft
from magnet_lightning.checkpoint.audiocraft_config import ConfigError, read_lm_config
from magnet_lightning.checkpoint.pretrained import load_pretrained
from magnet_lightning.cli.generate import main as generate_main
from magnet_lightning.codec.codecs import load_codec
from magnet_lightning.codec.stereo import InterleavedStereoCodec
from magnet_lightning.generation.autoregressive import ARDecodingConfig, generate
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.models.ar import ARTransformer

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURE = (SHARED_FIXTURES / "audiocraft_musicgen_stereo"
           / "musicgen-stereo-small-public")
STEREO_DELAYS = (0, 0, 1, 1, 2, 2, 3, 3)
TINY = {"dim": 16, "num_heads": 2, "num_layers": 2}


@pytest.fixture(scope="module")
def reference():
    return from_audiocraft(FIXTURE / "state_dict.bin"), torch.load(FIXTURE / "generate.pt", weights_only=True)


def test_teacher_forced_logits_equal_audiocraft_compute_predictions():
    parity = torch.load(FIXTURE / "parity.pt", weights_only=True)
    model = from_audiocraft(FIXTURE / "state_dict.bin")
    assert isinstance(model, ARTransformer) and model.pattern.delays == tuple(parity["delays"]) == STEREO_DELAYS
    with torch.no_grad():
        out = model(parity["codes"], parity["text_states"], parity["text_mask"].bool())
    ref, valid = parity["logits"], parity["logits_mask"]
    assert torch.equal(out.mask, valid)
    err = (out.logits[..., parity["vocab_index"]][valid] - ref[valid]).abs()
    assert err.max() < 1e-5 and err.norm() / ref[valid].norm() < 1e-6, (err.max(), err.norm() / ref[valid].norm())


@pytest.mark.parametrize("continuation", [False, True])
def test_greedy_cfg_tokens_equal_audiocraft(reference, continuation):
    model, ref = reference
    assert ref["cfg_coef"] == 3.0 and not ref["use_sampling"] and ref["min_greedy_margin"] > 0
    prompt = ref["continuation"]["prompt"] if continuation else None
    expected = ref["continuation"]["tokens"] if continuation else ref["tokens"]
    tokens = generate(model, ref["text_states"], ref["text_mask"].bool(), ref["max_gen_len"],
                      ARDecodingConfig(use_sampling=False, cfg_coef=3.0), prompt=prompt)
    assert tokens.shape == (2, 8, ref["max_gen_len"])
    assert torch.equal(tokens, expected), int((tokens != expected).sum())


@pytest.mark.parametrize("name", MUSICGEN)
def test_every_size_reads_as_interleaved_stereo(tmp_path, name):
    cfg = stereo_xp_cfg(name, **TINY)
    spec = read_lm_config(cfg, text_dim=768)
    assert spec.stereo and spec.channels == 2 and spec.delays == STEREO_DELAYS and spec.model.num_codebooks == 8
    assert "interleave_stereo_codebooks.use" in spec.used and "interleave_stereo_codebooks.per_timestep" in spec.used
    ckpt = read_audiocraft(lm_state_dict_bin(tmp_path / "state_dict.bin", cfg, lm_best_state(cfg, seed=2)))
    assert ckpt.metadata["codec"] == "stereo:facebook/encodec_32khz" and ckpt.metadata["delays"] == list(STEREO_DELAYS)
    model = ckpt.build_model()
    assert model.pattern.delays == STEREO_DELAYS and model.heads.shape[0] == 8


@pytest.mark.parametrize("change,message", [
    ({"interleave_stereo_codebooks": {"use": True, "per_timestep": True}}, "per_timestep=True"),
    ({"channels": 1}, "channels=1 with interleave_stereo_codebooks.use=True"),
    ({"compression_model_n_q": 2}, "compression_model_n_q=2 does not give transformer_lm.n_q=8"),
])
def test_stereo_configs_this_project_cannot_read_are_refused_naming_the_key(change, message):
    cfg = yaml.safe_load(stereo_xp_cfg("musicgen-small", **TINY))
    cfg.update(change)
    with pytest.raises(ConfigError, match=message):
        read_lm_config(yaml.safe_dump(cfg), text_dim=768)
    cfg = yaml.safe_load(stereo_xp_cfg("musicgen-small", **TINY))
    cfg["compression_model_n_q"] = 4  # four codebooks per channel: the two channels give n_q 8
    assert read_lm_config(yaml.safe_dump(cfg), text_dim=768).stereo
    mono = yaml.safe_load(stereo_xp_cfg("musicgen-small", **TINY))
    mono["interleave_stereo_codebooks"]["use"] = False
    with pytest.raises(ConfigError, match="channels=2 with interleave_stereo_codebooks.use=False"):
        read_lm_config(yaml.safe_dump(mono), text_dim=768)


@pytest.fixture
def hf_cache(empty_hf_cache, tmp_path):
    cache = empty_hf_cache
    hub_cache(cache, "facebook/encodec_32khz", {"model": varied_encodec_32khz_folder(tmp_path / "encodec")})
    hub_cache(cache, "t5-base", {"model": tiny_t5_folder(tmp_path / "t5-base", TEXT_DIM["t5-base"])})
    codec_bin = pretrained_codec_bin(tmp_path / "compression_state_dict.bin")  # as released: names the mono codec
    hub_cache(cache, "facebook/musicgen-stereo-small", {"state_dict.bin": FIXTURE / "state_dict.bin",
                                                        "compression_state_dict.bin": codec_bin})
    return cache


def test_release_by_repo_id_generates_continues_and_extends_stereo_audio(hf_cache):
    pre = load_pretrained("facebook/musicgen-stereo-small")
    assert pre.codec == "stereo:facebook/encodec_32khz" and pre.source == "facebook/musicgen-stereo-small"
    gen = MagnetGenerator.from_pretrained("facebook/musicgen-stereo-small", device="cpu")
    assert isinstance(gen.codec, InterleavedStereoCodec) and gen.codec.mono.name == "hf-encodec:facebook/encodec_32khz"
    result = gen.generate(["calm piano"], duration=0.2, seed=0)
    assert result.tokens.shape == (1, 8, 10) and result.audio.shape == (1, 2, 6400)
    clip = result.audio[0]  # [2, N]; its first 0.1 s (5 frames) is the prompt
    cont = gen.generate(["calm piano"], prompt=clip[..., :3200], prompt_sample_rate=32000, duration=0.3, seed=1)
    assert cont.tokens.shape == (1, 8, 15) and cont.audio.shape == (1, 2, 9600)
    assert torch.equal(cont.tokens[..., :5], gen.codec.encode(clip[None, :, :3200], 32000))
    gen.segment_duration = 0.2  # long-form: windows of 10 frames, each continuing the last 5 of the one before
    long = gen.generate(["calm piano"], duration=0.5, extend_stride=0.1, seed=0)
    assert long.tokens.shape == (1, 8, 25) and long.audio.shape == (1, 2, 16000)


def test_generate_cli_writes_stereo_wavs(tmp_path, hf_cache):
    out = tmp_path / "out"
    assert generate_main(["--ckpt", "facebook/musicgen-stereo-small", "--text", "calm piano", "--duration", "0.5",
                          "--out", str(out), "--seed", "0", "--greedy", "--save-tokens", "--no-normalize"]) == 0
    record = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    wav = out / record["file"]
    info = sf.info(str(wav))
    assert (info.channels, info.samplerate, info.frames) == (2, 32000, 16000)
    tokens = torch.from_numpy(np.load(wav.with_suffix(".codes.npy")).astype(np.int64))  # [8, T]
    left, right = (load_codec("facebook/encodec_32khz").decode(tokens[None, c::2])[0, 0] for c in (0, 1))
    data, _ = sf.read(str(wav), dtype="float32")  # [N, 2]: each channel the decoding of its own codebooks
    torch.testing.assert_close(torch.from_numpy(data[:, 0]), left, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.from_numpy(data[:, 1]), right, rtol=1e-5, atol=1e-6)
    assert (left - right).abs().max() > 1e-3
