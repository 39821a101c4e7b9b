"""Codec wrappers on tiny random-weight EnCodecs of both families, and codebook fitting."""

import math
import urllib.error

import pytest
import torch
from support.tiny_codecs import tiny_hf_model, tiny_pkg_model, varied_audio

from magnet_lightning.codec.codecs import EncodecPackageCodec, HFEncodecCodec, convert_audio, load_codec
from magnet_lightning.codec.fit import fit_codebooks, kmeans


def test_convert_audio_downmix_upmix_resample():
    stereo = torch.stack([torch.ones(4410), -torch.ones(4410)])[None]  # [1, 2, N] at 44.1 kHz
    mono = convert_audio(stereo, 44100, 16000, 1)
    assert mono.shape == (1, 1, 1600)
    assert mono.abs().max() < 1e-4  # +1 and -1 average to silence
    up = convert_audio(torch.randn(1, 800), 8000, 8000, 2)
    assert up.shape == (2, 800) and torch.equal(up[0], up[1])
    with pytest.raises(ValueError):
        convert_audio(torch.randn(1, 3, 100), 8000, 8000, 2)


@pytest.mark.parametrize("family", ["hf", "pkg"])
def test_encode_decode_shapes(family):
    codec = HFEncodecCodec(tiny_hf_model(), "tiny") if family == "hf" else EncodecPackageCodec(tiny_pkg_model())
    assert not codec.training and not any(p.requires_grad for p in codec.parameters())
    codec.train()  # a frozen codec ignores train mode
    assert not codec.training
    wav = torch.randn(3, 2, 22050)  # stereo 0.5 s at 44.1 kHz
    codes = codec.encode(wav, 44100)
    frames = math.ceil(0.5 * codec.frame_rate)
    assert codes.shape == (3, codec.num_codebooks, frames) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < codec.codebook_size
    out = codec.decode(codes)
    assert out.shape[:2] == (3, codec.channels)
    assert abs(out.shape[-1] - frames * codec.sample_rate / codec.frame_rate) <= codec.sample_rate / codec.frame_rate


def test_codec_attributes():
    hf = HFEncodecCodec(tiny_hf_model(), "hf-encodec:tiny")
    assert (hf.sample_rate, hf.channels, hf.frame_rate, hf.num_codebooks, hf.codebook_size) == (16000, 1, 250.0, 2, 64)
    pkg = EncodecPackageCodec(tiny_pkg_model(), bandwidth=3.0)
    assert (pkg.sample_rate, pkg.frame_rate, pkg.num_codebooks, pkg.codebook_size) == (8000, 250.0, 2, 32)
    assert pkg.name == "encodec-pkg:tiny8k@3kbps"
    assert EncodecPackageCodec(tiny_pkg_model(), bandwidth=1.5).num_codebooks == 1


def test_chunked_codecs_are_refused():
    with pytest.raises(ValueError, match="chunk"):
        HFEncodecCodec(tiny_hf_model(chunk_length_s=1.0, overlap=0.01, normalize=True), "tiny48")
    with pytest.raises(ValueError, match="segment"):
        EncodecPackageCodec(tiny_pkg_model(segment=1.0, normalize=True))


def test_load_codec_from_local_dir(tmp_path):
    model = tiny_hf_model()
    model.save_pretrained(tmp_path / "my_encodec")
    codec = load_codec(str(tmp_path / "my_encodec"))
    assert codec.name == "hf-encodec:my_encodec" and codec.num_codebooks == 2
    wav = torch.randn(1, 1, 4000)
    ref = HFEncodecCodec(model, "x")
    fit_codebooks(ref, varied_audio(), 16000)
    # same weights => same tokens (after copying the fitted codebooks)
    codec.model.load_state_dict(ref.model.state_dict())
    assert torch.equal(codec.encode(wav, 16000), ref.encode(wav, 16000))


def test_missing_weights_give_clear_errors(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="hf download facebook/encodec_32khz"):
        load_codec("facebook/encodec_32khz")

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(FileNotFoundError, match=r"encodec_24khz-d7cc33bc\.th.*hub/checkpoints"):
        load_codec("encodec_24khz")


def test_kmeans_finds_separated_clusters():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2) for c in centers])
    found = kmeans(x, 3, generator=torch.Generator().manual_seed(1))
    dist = torch.cdist(centers, found).min(dim=1).values
    assert dist.max() < 0.5


@pytest.mark.parametrize("family", ["hf", "pkg"])
def test_fit_codebooks_gives_varied_tokens(family):
    codec = HFEncodecCodec(tiny_hf_model(), "tiny") if family == "hf" else EncodecPackageCodec(tiny_pkg_model())
    audio = varied_audio()
    batch = torch.stack(audio)  # [6, 1, N]
    assert codec.encode(batch, 16000).unique().numel() == 1  # random weights: all-zero codebooks
    fit_codebooks(codec, audio, 16000)
    codes = codec.encode(batch, 16000)
    for k in range(codec.num_codebooks):
        assert codes[:, k].unique().numel() >= codec.codebook_size // 4
    # different sounds get different token streams
    assert not torch.equal(codes[0], codes[4])
