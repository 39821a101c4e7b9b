"""The six released MAGNeT checkpoints and the three MusicGen ones, in Meta's exact export format (their real xp.cfg,
tiny transformer sizes, random weights): they load through `from_audiocraft`, convert through the CLI, and load and
generate through `MagnetGenerator.from_pretrained(repo_id)` and the generate CLI with state dict, codec and T5 all read
from a Hugging Face cache laid out as `hf download` leaves it. The audio models get a tiny audiocraft-format 16 kHz
codec built from its real config."""

import json
import subprocess
import sys

import pytest
import torch
from support.audiocraft_files import (
    MAGNET,
    MUSICGEN,
    TEXT_DIM,
    codec_state_dict_bin,
    hub_cache,
    lm_best_state,
    lm_state_dict_bin,
    pretrained_codec_bin,
    tiny_encodec_32khz_folder,
    tiny_t5_folder,
    tiny_xp_cfg,
)
from support.tiny_releases import reference_logits

from magnet_lightning.checkpoint.audiocraft import from_audiocraft, read_audiocraft
from magnet_lightning.checkpoint.hub import HubError
from magnet_lightning.checkpoint.pretrained import load_pretrained
from magnet_lightning.cli.generate import main
from magnet_lightning.generation.autoregressive import ARDecodingConfig
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.generation.magnet_config import DecodingConfig
from magnet_lightning.models.ar import ARTransformer

TINY = {"dim": 16, "num_heads": 2, "num_layers": 2}


def _t5_name(name):
    return "t5-large" if name.startswith("audio") else "t5-base"


@pytest.fixture
def hf_cache(empty_hf_cache):
    """An empty Hugging Face cache for this test (support/hub_cache.py)."""
    return empty_hf_cache


def _publish(tmp_path, cache, name):
    """Put repo facebook/NAME (state_dict.bin + compression_state_dict.bin) and what it names into the cache."""
    files = tmp_path / name
    files.mkdir()
    cfg = tiny_xp_cfg(name, **TINY)
    state = lm_best_state(cfg, seed=hash(name) % 1000)
    lm_state_dict_bin(files / "state_dict.bin", cfg, state)
    if name.startswith("audio"):
        codec_state_dict_bin(files / "compression_state_dict.bin")
    else:
        pretrained_codec_bin(files / "compression_state_dict.bin")
        hub_cache(cache, "facebook/encodec_32khz", {"model": tiny_encodec_32khz_folder(tmp_path / "encodec")})
    t5 = _t5_name(name)
    if not (cache / f"models--{t5}").exists():
        hub_cache(cache, t5, {"model": tiny_t5_folder(tmp_path / t5, TEXT_DIM[t5])})
    hub_cache(cache, f"facebook/{name}", {"state_dict.bin": files / "state_dict.bin",
                                           "compression_state_dict.bin": files / "compression_state_dict.bin"})
    return files, state


@pytest.mark.parametrize("name", MAGNET)
def test_released_checkpoint_logits_match_the_reference_forward(tmp_path, name):
    cfg = tiny_xp_cfg(name, **TINY)
    state = lm_best_state(cfg, seed=1)
    model = from_audiocraft(lm_state_dict_bin(tmp_path / "state_dict.bin", cfg, state))
    assert model.cfg.text_dim == TEXT_DIM[_t5_name(name)] and model.cfg.subcodes_context == 5
    codes = torch.randint(0, 2049, (2, 4, 13))
    t5 = torch.randn(2, 5, model.cfg.text_dim)
    mask = torch.tensor([[1] * 5, [1] * 2 + [0] * 3], dtype=torch.bool)
    for stage in range(4):
        with torch.no_grad():
            ours = model(codes, t5, mask, stage)
        ref = reference_logits(state, codes, t5, mask, stage, window=5, heads=TINY["num_heads"])
        assert (ours - ref).norm() / ref.norm() < 1e-4


@pytest.mark.parametrize("name", MAGNET)
def test_released_checkpoint_by_repo_id_generates(tmp_path, hf_cache, name):
    _, state = _publish(tmp_path, hf_cache, name)
    gen = MagnetGenerator.from_pretrained(f"facebook/{name}", device="cpu")
    audio = name.startswith("audio")
    assert gen.sample_rate == (16000 if audio else 32000) and gen.frame_rate == 50
    assert gen.text_encoder.dim == TEXT_DIM[_t5_name(name)]
    assert gen.codec.name.startswith("audiocraft-encodec:" if audio else "hf-encodec:facebook/encodec_32khz")
    config = gen.decoding_config(0.2)
    assert config.top_p == (0.8 if audio else 0.9) and config.max_cfg_coef == (20.0 if audio else 10.0)
    assert config.decoding_steps[0] == (60 if "30secs" in name else 20)
    torch.testing.assert_close(gen.model.emb[0], state["emb.0.weight"])
    result = gen.generate(["a dog barks" if audio else "calm piano"], duration=0.2, seed=0, decoding_steps=[2, 1, 1, 1])
    assert result.tokens.shape == (1, 4, 10) and result.audio.shape[-1] == (3200 if audio else 6400)


@pytest.mark.usefixtures("one_thread")
def test_released_musicgen_by_repo_id_loads_each_size(tmp_path, hf_cache):
    for name in MUSICGEN:
        _, state = _publish(tmp_path, hf_cache, name)
        pre = load_pretrained(f"facebook/{name}")
        assert isinstance(pre.model, ARTransformer) and pre.model.pattern.delays == (0, 1, 2, 3)
        assert pre.source == f"facebook/{name}" and pre.codec == "facebook/encodec_32khz"
        torch.testing.assert_close(pre.model.heads[3], state["linears.3.weight"])


@pytest.mark.usefixtures("one_thread")
def test_released_musicgen_by_repo_id_generates_and_continues_audio(tmp_path, hf_cache):
    _, state = _publish(tmp_path, hf_cache, "musicgen-small")
    gen = MagnetGenerator.from_pretrained("facebook/musicgen-small", device="cpu")
    assert gen.decoder.partner and isinstance(gen.model, ARTransformer) and not gen.fast
    assert gen.sample_rate == 32000 and gen.frame_rate == 50 and gen.text_encoder.dim == 768
    assert gen.decoding_config() == ARDecodingConfig(use_sampling=True, cfg_coef=3.0, top_k=250, top_p=0.0,
                                                     temperature=1.0)
    torch.testing.assert_close(gen.model.emb[0], state["emb.0.weight"])
    result = gen.generate(["calm piano"], duration=0.2, seed=0)
    assert result.tokens.shape == (1, 4, 10) and result.audio.shape[-1] == 6400
    clip = result.audio[0]  # [C, N]: its first 0.1 s (5 frames) is the prompt
    cont = gen.generate(["calm piano"], prompt=clip[..., :3200], prompt_sample_rate=32000, duration=0.3, seed=1,
                        top_k=5)
    assert cont.tokens.shape == (1, 4, 15) and cont.config.top_k == 5
    assert torch.equal(cont.tokens[..., :5], gen.codec.encode(clip[None, :, :3200], 32000))


@pytest.mark.usefixtures("one_thread")
def test_musicgen_api_and_cli_refuse_magnet_options_in_one_line(tmp_path, hf_cache):
    _publish(tmp_path, hf_cache, "musicgen-small")
    gen = MagnetGenerator.from_pretrained("facebook/musicgen-small", device="cpu")
    with pytest.raises(ValueError, match="decoding_steps: not an option of the autoregressive family"):
        gen.generate(["x"], decoding_steps=[2, 1, 1, 1])
    with pytest.raises(ValueError, match="infill"):
        gen.generate(["x"], prompt=torch.zeros(4, 10, dtype=torch.long), infill=(0.0, 0.1))
    with pytest.raises(ValueError, match="decodes with a ARDecodingConfig"):
        gen.generate(["x"], decoding=DecodingConfig())
    with pytest.raises(ValueError, match="fast decoder"):
        MagnetGenerator(gen.model, fast=True)
    out = tmp_path / "out"
    assert main(["--ckpt", "facebook/musicgen-small", "--text", "calm piano", "--duration", "0.2", "--out", str(out),
                 "--seed", "0", "--greedy", "--cfg-coef", "2.5", "--save-tokens", "--no-normalize"]) == 0
    record = json.loads((out / "manifest.jsonl").read_text())
    assert record["frames"] == 10 and record["decoding"]["cfg_coef"] == 2.5 and not record["decoding"]["use_sampling"]
    with pytest.raises(SystemExit, match="steps.*autoregressive"):
        main(["--ckpt", "facebook/musicgen-small", "--text", "x", "--out", str(out), "--steps", "2", "1", "1", "1"])
    with pytest.raises(SystemExit, match="--infill: .*autoregressive"):
        main(["--ckpt", "facebook/musicgen-small", "--text", "x", "--out", str(out), "--prompt-audio", "a.wav",
              "--infill", "0", "1"])


@pytest.mark.parametrize("name", ["magnet-small-10secs", "audio-magnet-small", "musicgen-small"])
def test_convert_cli_by_repo_id_records_the_codec(tmp_path, hf_cache, name):
    _publish(tmp_path, hf_cache, name)
    out = tmp_path / "converted.ckpt"
    run = subprocess.run([sys.executable, "-m", "magnet_lightning.convert", "audiocraft", f"facebook/{name}", str(out)],
                         capture_output=True, text=True, env={**_env(), "HF_HUB_CACHE": str(hf_cache)})
    assert run.returncode == 0, run.stderr
    pre = load_pretrained(out)
    assert pre.codec == (f"facebook/{name}" if name.startswith("audio") else "facebook/encodec_32khz")
    assert pre.license == "cc-by-nc-4.0" and pre.source == f"facebook/{name}"
    direct = load_pretrained(f"facebook/{name}")
    assert torch.equal(pre.model.emb, direct.model.emb)


def test_local_audio_checkpoint_finds_its_codec_beside_it(tmp_path):
    files = tmp_path / "audio-magnet-small"
    files.mkdir()
    lm_state_dict_bin(files / "state_dict.bin", tiny_xp_cfg("audio-magnet-small", **TINY))
    meta = read_audiocraft(files / "state_dict.bin").metadata
    assert meta["codec"] == str(files / "compression_state_dict.bin")
    from magnet_lightning.codec.codecs import load_codec

    with pytest.raises(FileNotFoundError, match="compression_state_dict.bin.*hf download facebook/audio-magnet-small"):
        load_codec(meta["codec"])
    codec_state_dict_bin(files / "compression_state_dict.bin")
    assert load_codec(meta["codec"]).sample_rate == 16000


def test_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    lm_state_dict_bin(tmp_path / "state_dict.bin", tiny_xp_cfg("magnet-small-10secs", **TINY))
    assert from_audiocraft("~/state_dict.bin").cfg.dim == 16
    assert load_pretrained("~/state_dict.bin").model.cfg.dim == 16
    assert from_audiocraft("~").cfg.dim == 16  # a folder holding state_dict.bin


def test_missing_repo_offline_names_repo_files_and_command(hf_cache):
    with pytest.raises(HubError) as err:
        load_pretrained("facebook/magnet-small-10secs")
    message = str(err.value)
    assert "facebook/magnet-small-10secs" in message and "offline" in message
    assert "hf download facebook/magnet-small-10secs state_dict.bin compression_state_dict.bin" in message


def test_generate_cli_missing_repo_is_one_line(tmp_path, hf_cache):
    run = subprocess.run([sys.executable, "-m", "magnet_lightning.generate", "--ckpt", "facebook/magnet-small-30secs",
                          "--text", "x", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                         env={**_env(), "HF_HUB_CACHE": str(hf_cache)})
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert "hf download facebook/magnet-small-30secs" in run.stderr


def _env():
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
