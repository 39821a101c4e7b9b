"""audiocraft-format EnCodec (compression_state_dict.bin) built from the real 16 kHz AudioGen config at tiny widths,
with audiocraft's parameter names and old-style weight norm: it loads as a transformers EncodecModel with the same
weights, honours pad_mode, converts to a save_pretrained folder, and a music file that only names
facebook/encodec_32khz is recognised as such."""

import subprocess
import sys

import pytest
import torch
import yaml
from support.audiocraft_files import codec_best_state, codec_state_dict_bin, pretrained_codec_bin, tiny_codec_cfg

from magnet_lightning.checkpoint.audiocraft_config import ConfigError
from magnet_lightning.codec.audiocraft import CodecFileError, encodec_config
from magnet_lightning.codec.codecs import load_codec


def _conv(x, state, prefix, stride=1, dilation=1, transposed=False):
    """An independent weight-normed conv: w = g * v / |v| over dim 0, as torch.nn.utils.weight_norm defines it."""
    inner = "convtr.convtr" if transposed else "conv.conv"
    v, g, b = (state[f"{prefix}.{inner}.{n}"] for n in ("weight_v", "weight_g", "bias"))
    w = g * v / v.flatten(1).norm(dim=1).reshape(g.shape)
    if transposed:
        return torch.nn.functional.conv_transpose1d(x, w, b, stride=stride)
    return torch.nn.functional.conv1d(x, w, b, stride=stride, dilation=dilation)


def test_weights_load_under_audiocraft_names(tmp_path):
    cfg = tiny_codec_cfg()
    state = codec_best_state(cfg, seed=3)
    codec = load_codec(str(codec_state_dict_bin(tmp_path / "compression_state_dict.bin", cfg, seed=3)))
    assert (codec.sample_rate, codec.frame_rate, codec.num_codebooks, codec.codebook_size) == (16000, 50, 4, 2048)
    model = codec.model
    # the first conv reproduces its audiocraft weights (v, g) exactly, whatever the parametrisation inside
    x = torch.randn(1, 1, 64)
    torch.testing.assert_close(model.encoder.layers[0].conv(x), _conv(x, state, "encoder.model.0"))
    # every audiocraft tensor found its place: codebooks, LSTMs, transposed convs
    torch.testing.assert_close(model.quantizer.layers[2].codebook.embed, state["quantizer.vq.layers.2._codebook.embed"])
    torch.testing.assert_close(model.decoder.layers[1].lstm.weight_hh_l1, state["decoder.model.1.lstm.weight_hh_l1"])
    y = torch.randn(1, 64, 5)
    up = model.decoder.layers[3].conv
    torch.testing.assert_close(up(y), _conv(y, state, "decoder.model.3", stride=8, transposed=True))
    wav = torch.randn(2, 1, 16000) * 0.3
    codes = codec.encode(wav, 16000)
    assert codes.shape == (2, 4, 50) and codes.unique().numel() > 20
    assert codec.decode(codes).shape == (2, 1, 16000)


def test_pad_mode_comes_from_the_file(tmp_path):
    cfg = tiny_codec_cfg()
    assert yaml.safe_load(cfg)["seanet"]["pad_mode"] == "constant" and encodec_config(cfg).pad_mode == "constant"
    path = codec_state_dict_bin(tmp_path / "c.bin", cfg)
    reflect = yaml.safe_load(cfg)
    reflect["seanet"]["pad_mode"] = "reflect"
    torch.save({"best_state": codec_best_state(cfg), "xp.cfg": yaml.safe_dump(reflect)}, tmp_path / "r.bin")
    wav = torch.randn(1, 1, 8000)
    a = load_codec(str(path)).encode_latents(wav, 16000)
    b = load_codec(str(tmp_path / "r.bin")).encode_latents(wav, 16000)
    assert (a - b).norm() / a.norm() > 1e-3, "padding must change the latents at the edges"


def test_music_file_that_names_a_transformers_codec(tmp_path):
    from support.audiocraft_files import tiny_encodec_32khz_folder

    folder = tiny_encodec_32khz_folder(tmp_path / "encodec")
    codec = load_codec(str(pretrained_codec_bin(tmp_path / "compression_state_dict.bin", str(folder))))
    assert codec.name == "hf-encodec:encodec" and codec.sample_rate == 32000
    with pytest.raises(FileNotFoundError, match="facebook/encodec_32khz"):  # offline, not cached: named
        load_codec(str(pretrained_codec_bin(tmp_path / "music.bin")))


def test_convert_cli_writes_a_loadable_folder(tmp_path):
    src = codec_state_dict_bin(tmp_path / "compression_state_dict.bin")
    out = tmp_path / "audiogen_encodec"
    run = subprocess.run([sys.executable, "-m", "magnet_lightning.convert", "audiocraft-codec", str(src), str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    wav = torch.randn(1, 1, 4000)
    torch.testing.assert_close(load_codec(str(out)).encode_latents(wav, 16000),
                               load_codec(str(src)).encode_latents(wav, 16000))
    again = subprocess.run([sys.executable, "-m", "magnet_lightning.convert", "audiocraft-codec", str(src), str(out)],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_bad_codec_files_are_named(tmp_path):
    torch.save({"foo": 1}, tmp_path / "x.bin")
    with pytest.raises(CodecFileError, match="not an audiocraft compression_state_dict.bin"):
        load_codec(str(tmp_path / "x.bin"))
    cfg = yaml.safe_load(tiny_codec_cfg())
    cfg["seanet"]["causal"] = True
    torch.save({"best_state": {}, "xp.cfg": yaml.safe_dump(cfg)}, tmp_path / "causal.bin")
    with pytest.raises(ConfigError, match="seanet.causal"):
        load_codec(str(tmp_path / "causal.bin"))
    state = codec_best_state(tiny_codec_cfg())
    del state["encoder.model.3.conv.conv.weight_v"]
    torch.save({"best_state": state, "xp.cfg": tiny_codec_cfg()}, tmp_path / "short.bin")
    with pytest.raises(CodecFileError, match="missing"):
        load_codec(str(tmp_path / "short.bin"))
