"""The stereo MusicGen-melody releases (`facebook/musicgen-stereo-melody`, `-large`) against audiocraft's own outputs
(tests/fixtures/melody/musicgen-stereo-melody-tiny, made by audiocraft 1.3.0's code from the melody release config
with the stereo grid's settings: see the README there): the config read as interleaved stereo with chroma, the
teacher-forced logits and greedy tokens with stereo melodies, loading by repo id, and stereo WAVs following a stereo
melody clip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from support.audiocraft_files import (
    hub_cache,
    pretrained_codec_bin,
    tiny_t5_folder,
    varied_encodec_32khz_folder,
)
from support.melody_files import FIXTURES, FixtureTexts, htdemucs_folder, standin_htdemucs

from magnet_lightning.checkpoint import hub
from magnet_lightning.checkpoint.audiocraft import read_audiocraft
from magnet_lightning.cli.generate import main as generate_main
from magnet_lightning.codec.melody import MelodyExtractor
from magnet_lightning.codec.stems import StemSeparator
from magnet_lightning.generation.autoregressive import ARDecodingConfig
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.generation.melody import melody_condition

pytestmark = pytest.mark.usefixtures("one_thread")

STEREO_MELODY_LM = FIXTURES / "musicgen-stereo-melody-tiny"
REPOS = ("facebook/musicgen-stereo-melody", "facebook/musicgen-stereo-melody-large")
STEREO_DELAYS = (0, 0, 1, 1, 2, 2, 3, 3)


def _load(name: str) -> dict:
    data = torch.load(STEREO_MELODY_LM / name, weights_only=True)
    data["melodies"] = [m.float() for m in data["melodies"]]
    return data


@pytest.fixture
def hf_cache(empty_hf_cache, tmp_path):
    """A Hugging Face cache holding both releases (the fixture's files), htdemucs' stand-in, a tiny
    facebook/encodec_32khz with random codebooks and a tiny t5-base."""
    cache = empty_hf_cache
    codec_bin = pretrained_codec_bin(tmp_path / "compression_state_dict.bin")  # as released: names the mono codec
    for repo in REPOS:
        hub_cache(cache, repo, {"state_dict.bin": STEREO_MELODY_LM / "state_dict.bin",
                                "compression_state_dict.bin": codec_bin})
    hub_cache(cache, "adefossez/HTDemucs", {"": htdemucs_folder(tmp_path / "htdemucs")})
    hub_cache(cache, "facebook/encodec_32khz", {"model": varied_encodec_32khz_folder(tmp_path / "encodec")})
    hub_cache(cache, "t5-base", {"model": tiny_t5_folder(tmp_path / "t5-base", 768)})
    return cache


def test_config_reads_as_interleaved_stereo_with_the_chroma_conditioner():
    ckpt = read_audiocraft(STEREO_MELODY_LM / "state_dict.bin")
    spec = ckpt.spec
    assert spec.stereo and spec.channels == 2 and spec.delays == STEREO_DELAYS and spec.model.num_codebooks == 8
    assert spec.model.chroma_bins == 12 and spec.model.chroma_fuse == "prepend" and spec.model.text_fuse == "prepend"
    assert spec.melody.stems == "htdemucs" and spec.melody.prefix_frames == 235
    assert ckpt.metadata["codec"] == "stereo:facebook/encodec_32khz"


def test_logits_with_stereo_melodies_equal_audiocraft():
    ckpt = read_audiocraft(STEREO_MELODY_LM / "state_dict.bin")
    model = ckpt.build_model()
    data = _load("parity.pt")
    extractor = MelodyExtractor(ckpt.spec.melody, StemSeparator(standin_htdemucs()))
    melodies = data["melodies"]
    assert all(m.shape[0] == 2 and (m[0] - m[1]).abs().max() > 0.1 for m in melodies)  # two distinct channels

    def condition(clips):
        return melody_condition(extractor, model.cfg, clips, data["sample_rate"], 2, data["codes"].shape[-1], 50.0)

    kept = data["collated"].shape[-1]  # the reference conditioner's input: the channels' mean
    torch.testing.assert_close(extractor.collate(melodies, 32000)[..., :kept], data["collated"], atol=1e-7, rtol=0)
    assert (extractor.collate([m[:1] for m in melodies], 32000)[..., :kept] - data["collated"]).abs().max() > 0.1
    chroma = condition(melodies).cond
    with torch.no_grad():
        projected = model.project_chroma(chroma, 2)
        out = model(data["codes"], data["text_states"], data["text_mask"], chroma=chroma)
    torch.testing.assert_close(projected, data["chroma_condition"], atol=1e-6, rtol=1e-5)
    ref, mask = data["logits"], data["logits_mask"]
    assert torch.equal(out.mask, mask) and model.pattern.delays == tuple(data["delays"])
    valid = mask[..., None].expand_as(ref)
    err = (out.logits[..., data["vocab_index"]] - ref).abs()[valid].max() / ref.abs()[valid].max()
    assert err < 1e-5, float(err)


def test_both_releases_by_repo_id_give_audiocraft_greedy_tokens(hf_cache):
    data = _load("generate.pt")
    config = ARDecodingConfig(use_sampling=False, cfg_coef=data["cfg_coef"])
    assert set(REPOS) <= set(hub.RELEASED)  # the release list the hub's errors name
    for repo in REPOS:
        gen = MagnetGenerator.from_pretrained(repo, device="cpu", text_encoder=FixtureTexts(data), codec=False)
        assert gen.family == "musicgen" and gen.melody_extractor is not None
        assert gen.model.pattern.delays == STEREO_DELAYS
        cases = data["cases"] if repo == REPOS[0] else {"none": data["cases"]["none"]}  # same file: once
        for name, case in cases.items():
            melody = [m if used else None for m, used in zip(data["melodies"], case["with_melody"])]
            result = gen.generate(data["descriptions"], duration=data["max_gen_len"] / 50, decoding=config,
                                  melody=None if name == "none" else melody, melody_sample_rate=data["sample_rate"],
                                  prompt=case["prompt"], decode_audio=False)
            assert result.tokens.shape == (2, 8, data["max_gen_len"])
            assert torch.equal(result.tokens, case["tokens"]), (repo, name)


def test_generate_cli_writes_stereo_wavs_following_a_stereo_melody_clip(tmp_path, hf_cache):
    clip = tmp_path / "stereo_melody.wav"
    sf.write(clip, _load("parity.pt")["melodies"][0].T.numpy(), 32000)  # [N, 2]
    assert sf.info(str(clip)).channels == 2
    out = tmp_path / "out"
    assert generate_main(["--ckpt", REPOS[0], "--text", "calm piano", "--duration", "0.2", "--melody", str(clip),
                          "--seed", "0", "--greedy", "--out", str(out)]) == 0
    record = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    info = sf.info(str(out / record["file"]))
    assert (info.channels, info.samplerate, info.frames) == (2, 32000, 6400)
    assert record["melody"] == str(clip)
    audio, _ = sf.read(str(out / record["file"]), dtype="float32")
    assert np.abs(audio[:, 0] - audio[:, 1]).max() > 1e-3  # each channel decoded from its own codebooks
