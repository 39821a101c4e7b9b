"""The stereo codec (codec/stereo.py) against audiocraft's own `InterleaveStereoCompressionModel` (the files in
tests/fixtures/audiocraft_stereo_codec/, made by audiocraft 1.3.0: see their README): the same codes for the same
stereo audio, the same audio decoded from audiocraft's codes, and the interleaving's properties."""


import pytest
import torch
from support.paths import FIXTURES

from magnet_lightning.codec.codecs import load_codec
from magnet_lightning.codec.stereo import InterleavedStereoCodec, deinterleave, interleave

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURE = FIXTURES / "audiocraft_stereo_codec"


@pytest.fixture(scope="module")
def reference():
    ref = torch.load(FIXTURE / "stereo_codec.pt", weights_only=True)
    return load_codec(f"stereo:{FIXTURE / 'compression_state_dict.bin'}"), ref


def test_encode_equals_audiocraft_interleaved_codes(reference):
    codec, ref = reference
    assert isinstance(codec, InterleavedStereoCodec) and ref["wrapper"] == "InterleaveStereoCompressionModel"
    assert (codec.channels, codec.num_codebooks, codec.sample_rate, codec.frame_rate) == (2, 8, 32000, 50.0)
    assert codec.name.startswith("stereo:audiocraft-encodec:") and ref["min_code_margin"] > 0
    codes = codec.encode(ref["audio"], ref["sample_rate"])
    assert torch.equal(codes, ref["codes"]), int((codes != ref["codes"]).sum())
    assert not torch.equal(ref["left"], ref["right"])  # the channels differ, so the order of codebooks is tested


def test_decode_of_audiocraft_codes_equals_audiocraft_audio(reference):
    codec, ref = reference
    audio = codec.decode(ref["codes"])
    assert audio.shape == ref["decoded"].shape == (2, 2, 6400)
    torch.testing.assert_close(audio, ref["decoded"], rtol=1e-4, atol=1e-6)


def test_each_channel_is_the_mono_codec_and_mono_input_is_duplicated(reference):
    codec, ref = reference
    wav = ref["audio"]
    left, right = deinterleave(codec.encode(wav, 32000))
    assert torch.equal(left, codec.mono.encode(wav[:, :1], 32000))
    assert torch.equal(right, codec.mono.encode(wav[:, 1:], 32000))
    mono = codec.encode(wav[:, :1], 32000)  # [B, 1, N]: the same signal on both channels
    assert torch.equal(mono[:, 0::2], mono[:, 1::2]) and torch.equal(mono[:, 0::2], left)
    assert torch.equal(interleave(left, right), codec.encode(wav, 32000))


def test_latents_and_dequantized_codes_stack_the_channels(reference):
    codec, ref = reference
    latents = codec.encode_latents(ref["audio"], 32000)
    assert latents.shape == (2, 2 * codec.mono.latent_dim, 10) and codec.latent_dim == 2 * codec.mono.latent_dim
    left = codec.mono.encode_latents(ref["audio"][:, :1], 32000)
    torch.testing.assert_close(latents[:, : codec.mono.latent_dim], left)
    quantized = codec.dequantize(ref["codes"])
    torch.testing.assert_close(quantized[:, codec.mono.latent_dim:], codec.mono.dequantize(ref["codes"][:, 1::2]))


def test_a_stereo_codec_wraps_only_a_mono_one(reference):
    codec, _ = reference
    with pytest.raises(ValueError, match="wraps a mono codec"):
        InterleavedStereoCodec(codec)
    with pytest.raises(ValueError, match="even number of codebooks"):
        deinterleave(torch.zeros(1, 3, 4, dtype=torch.long))
