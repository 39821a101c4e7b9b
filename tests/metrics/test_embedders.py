"""Embedders built with random weights from configs: shapes, resampling, weight loading, errors, module hygiene."""
import math

import pytest
import torch
from torch import nn

from magnet_lightning.metrics import CLAPScore, FrechetAudioDistance, KLDivergence, available_embedders, get_embedder
from magnet_lightning.metrics.embedders.vggish import VGGishConfig, VGGishFrontEnd, VGGishNet, mel_matrix

TINY_VGGISH = VGGishConfig(conv_channels=(4, "M", 4, "M", 8, "M", 8, "M"), fc_dim=16, final_relu=False)


def tiny_vggish():
    return get_embedder("vggish", cfg=TINY_VGGISH, random_weights=True)


def test_registry_lists_the_five_embedders():
    assert available_embedders() == ["clap", "codec", "passt", "passt_embedding", "vggish"]
    with pytest.raises(KeyError, match="available"):
        get_embedder("openl3")


def test_passt_embedding_gives_the_features_of_each_segment():
    embedder = get_embedder("passt_embedding", tiny={"max_seconds": 1.0})
    assert (embedder.name, embedder.kind, embedder.dim) == ("passt_embedding", "embedding", 32)
    frames = embedder.embed_frames(torch.randn(2, 1, 48000), 32000)  # 1.5 s: a 1-s and a 0.5-s segment
    assert frames.shape == (2, 2, 32) and torch.isfinite(frames).all()


@pytest.mark.parametrize("name, filename", [("vggish", "vggish-10086976.pth"),
                                            ("passt", "passt-s-f128-20sec-p16-s10-ap.474-swa.pt"),
                                            ("clap", "music_audioset_epoch_15_esc_90.14.pt")])
def test_missing_weights_error_names_file_url_and_folder(name, filename, tmp_path, monkeypatch):
    monkeypatch.setenv("MAGNET_WEIGHTS_DIR", str(tmp_path))
    for var in ("MAGNET_VGGISH_CKPT", "MAGNET_PASST_CKPT", "MAGNET_CLAP_CKPT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(FileNotFoundError) as err:
        get_embedder(name)
    message = str(err.value)
    assert filename in message and "https://" in message and str(tmp_path) in message


def test_vggish_mel_matrix_shape_and_band_limits():
    mel = mel_matrix()
    assert mel.shape == (257, 64)
    hz = torch.linspace(0, 8000, 257)
    assert mel[0].abs().sum() == 0  # DC bin zeroed
    assert mel[(hz < 125) | (hz > 7500)].abs().sum() == 0
    assert mel.max() <= 1.0 and (mel.sum(0) > 0).all()  # every band receives some bins


def test_vggish_frontend_puts_a_tone_in_the_right_band():
    t = torch.arange(16000 * 2) / 16000
    examples = VGGishFrontEnd()(torch.sin(2 * math.pi * 1000 * t)[None])
    assert examples.shape == (1, 2, 96, 64)
    band = examples[0, 0].mean(0).argmax().item()
    edges_mel = torch.linspace(1127 * math.log1p(125 / 700), 1127 * math.log1p(7500 / 700), 66)
    centers_hz = 700 * (torch.exp(edges_mel[1:-1] / 1127) - 1)
    assert abs(band - (centers_hz - 1000).abs().argmin().item()) <= 1


def test_vggish_state_dict_layout_matches_the_torch_port():
    with torch.device("meta"):
        net = VGGishNet()
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    convs = {0: (64, 1), 3: (128, 64), 6: (256, 128), 8: (256, 256), 11: (512, 256), 13: (512, 512)}
    for idx, (out_ch, in_ch) in convs.items():
        assert shapes[f"features.{idx}.weight"] == (out_ch, in_ch, 3, 3)
    assert shapes["embeddings.0.weight"] == (4096, 512 * 4 * 6)
    assert shapes["embeddings.2.weight"] == (4096, 4096)
    assert shapes["embeddings.4.weight"] == (128, 4096)
    assert len(shapes) == 18


def test_vggish_shapes_resampling_and_checkpoint_round_trip(tmp_path):
    emb = tiny_vggish()
    wav = torch.randn(3, 2, 44100 * 2)  # stereo 44.1 kHz, 2 s -> two 0.96 s examples at 16 kHz
    frames = emb.embed_frames(wav, 44100)
    assert frames.shape == (3, 2, 128) and emb.dim == 128 and emb.sample_rate == 16000
    assert emb(wav, 44100).shape == (3, 128)
    torch.save(emb.net.state_dict(), tmp_path / "vggish.pth")
    loaded = get_embedder("vggish", checkpoint=tmp_path / "vggish.pth", cfg=TINY_VGGISH)
    torch.testing.assert_close(loaded.embed_frames(wav, 44100), frames)
    with pytest.raises(ValueError, match="at least"):
        emb.embed_frames(torch.randn(1, 1, 8000), 16000)


def test_fad_with_embedder_and_module_hygiene():
    emb = tiny_vggish()
    parent = nn.Module()  # stands in for a LightningModule
    parent.fad = FrechetAudioDistance(embedder=emb)
    assert list(parent.parameters()) == [] and not any("net" in k for k in parent.state_dict())
    assert all(p is not q for p in emb.parameters() for q in parent.parameters())
    wav = torch.randn(4, 1, 16000 * 3)
    parent.fad.update(wav, 16000, real=True)
    parent.fad.update(wav, 16000, real=False)
    same = parent.fad.compute().item()
    parent.fad.reset()
    tone = torch.sin(2 * math.pi * 440 * torch.arange(16000 * 3) / 16000).expand(4, 1, -1)
    parent.fad.update(wav, 16000, real=True)
    parent.fad.update(tone, 16000, real=False)
    different = parent.fad.compute().item()
    assert abs(same) < 1e-6 * different and different > 0
    with pytest.raises(TypeError, match="sample_rate"):
        parent.fad.update(wav, True)


def test_passt_tiny_chunks_and_probabilities(tmp_path):
    from magnet_lightning.metrics.embedders.passt import TinyPasstConfig

    emb = get_embedder("passt", tiny=TinyPasstConfig(max_seconds=1.0))
    probs = emb.embed_frames(torch.randn(2, 1, int(16000 * 2.5)), 16000)  # chunks 1 s, 1 s, 0.5 s
    assert probs.shape == (2, 3, 527) and emb.kind == "probabilities"
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 3))
    assert emb.embed_frames(torch.randn(1, 1, int(32000 * 2.1)), 32000).shape == (1, 2, 527)  # 0.1 s dropped
    torch.save(emb.net.state_dict(), tmp_path / "passt.pt")
    loaded = get_embedder("passt", tiny=TinyPasstConfig(max_seconds=1.0), checkpoint=tmp_path / "passt.pt")
    wav = torch.randn(1, 1, 32000)
    torch.testing.assert_close(loaded.embed_frames(wav, 32000), emb.embed_frames(wav, 32000))
    kl = KLDivergence(embedder=emb)
    kl.update(wav, wav.clone(), 32000)
    assert abs(kl.compute().item()) <= 527 * 1e-6  # KL(p || p + 1e-6) = -sum p log(1 + 1e-6 / p) >= -C * 1e-6
    with pytest.raises(ValueError, match="classifier"):
        KLDivergence(embedder=tiny_vggish())


class ToyTokenizer:
    """Byte-level stand-in for the roberta tokenizer (tests only: real runs need the real vocabulary)."""

    def __len__(self):
        return 259

    def __call__(self, texts, padding, truncation, max_length, return_tensors):
        ids = torch.ones(len(texts), max_length, dtype=torch.long)  # roberta pad id 1
        for i, text in enumerate(texts):
            tokens = [0] + [3 + b for b in text.encode()[: max_length - 2]] + [2]
            ids[i, : len(tokens)] = torch.tensor(tokens)
        return {"input_ids": ids, "attention_mask": (ids != 1).long()}


TINY_ROBERTA = dict(vocab_size=300, hidden_size=768, num_hidden_layers=1, num_attention_heads=12,
                    intermediate_size=64, max_position_embeddings=80, type_vocab_size=1, pad_token_id=1)


def test_clap_random_weights_shapes_and_score():
    emb = get_embedder("clap", random_weights=True, tokenizer=ToyTokenizer(), check_vocab=False,
                       text_config=TINY_ROBERTA)
    wav = torch.randn(2, 1, 16000 * 2) * 0.1
    audio = emb.embed_frames(wav, 16000)
    text = emb.embed_text(["a calm piano", "loud drums"])
    assert audio.shape == (2, 1, 512) and text.shape == (2, 512) and emb.sample_rate == 48000
    torch.testing.assert_close(audio.norm(dim=-1), torch.ones(2, 1))
    assert not torch.allclose(text[0], text[1])
    score = CLAPScore(embedder=emb)
    score.update(wav, ["a calm piano", "loud drums"], 16000)
    direct = (emb(wav, 16000) * text).sum(-1).mean()
    assert score.compute().item() == pytest.approx(direct.item(), abs=1e-5)
    fad = FrechetAudioDistance(embedder=emb)  # CLAP's audio tower also serves FAD
    assert fad.num_features == 512


def test_clap_refuses_the_blank_offline_tokenizer():
    from transformers import RobertaTokenizer

    from magnet_lightning.metrics.embedders.clap import check_tokenizer

    blank = RobertaTokenizer.from_pretrained("roberta-base")  # uncached + offline -> silently empty
    if len(blank) > 1000:
        pytest.skip("roberta-base is cached on this machine")
    with pytest.raises(RuntimeError, match="empty tokenizer"):
        check_tokenizer(blank)
    with pytest.raises(RuntimeError, match="empty tokenizer"):
        get_embedder("clap", random_weights=True, text_config=TINY_ROBERTA)


def test_clap_refuses_to_import_laion_clap_online(monkeypatch):
    import huggingface_hub.constants

    from magnet_lightning.metrics.embedders.clap import ensure_hub_offline

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE=1"):
        ensure_hub_offline()


def test_clap_checkpoint_state_dict_cleaning(tmp_path):
    from magnet_lightning.metrics.embedders.clap import _read_state_dict

    torch.save({"epoch": 15, "state_dict": {"module.a.weight": torch.ones(2),
                                            "module.text_branch.embeddings.position_ids": torch.arange(3)}},
               tmp_path / "clap.pt")
    assert list(_read_state_dict(tmp_path / "clap.pt")) == ["a.weight"]


class FakeLatentCodec(nn.Module):
    """Codec-interface stand-in with the optional encode_latents method (stride-4 conv over mono audio)."""

    sample_rate, channels, latent_dim = 8000, 1, 6

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, self.latent_dim, 8, stride=4)

    def encode_latents(self, wav, sample_rate):
        assert sample_rate == self.sample_rate
        return self.conv(wav.mean(1, keepdim=True))


def test_codec_latent_embedder_shapes_and_fad():
    emb = get_embedder("codec", codec=FakeLatentCodec())
    frames = emb.embed_frames(torch.randn(2, 2, 800), 8000)
    assert frames.shape == (2, 199, 6) and emb.dim == 6
    fad = FrechetAudioDistance(embedder=emb)
    fad.update(torch.randn(2, 1, 800), 8000, real=True)
    fad.update(torch.randn(2, 1, 800) + 1, 8000, real=False)
    assert fad.compute().item() > 0
    with pytest.raises(TypeError, match="encode_latents"):
        get_embedder("codec", codec=nn.Linear(2, 2))
