"""Checkpoint import: an audiocraft-format file (a real released xp.cfg, tiny sizes, random weights) converts, and our
forward reproduces an independent, straightforward implementation of audiocraft_checkpoint.md's formulas for every
stage."""


import pytest
import torch
from support.audiocraft_files import lm_state_dict_bin, tiny_xp_cfg
from support.tiny_releases import D, E, H, K, L, V, W, best_state, reference_logits, write, xp_cfg

from magnet_lightning.checkpoint.audiocraft import from_audiocraft, read_audiocraft
from magnet_lightning.checkpoint.pretrained import load_pretrained
from magnet_lightning.cli.convert import main
from magnet_lightning.errors import CheckpointError


@pytest.mark.parametrize("stage", range(K))
def test_converted_model_reproduces_reference_forward(tmp_path, stage):
    state = best_state()
    model = from_audiocraft(write(tmp_path / "state_dict.bin", state))
    codes = torch.randint(0, V + 1, (2, K, 17))
    t5 = torch.randn(2, 6, E)
    t5_mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3], dtype=torch.bool)
    with torch.no_grad():
        ours = model(codes, t5, t5_mask, stage)
        ours_stage = model(codes, t5, t5_mask, stage, heads="stage")
    ref = reference_logits(state, codes, t5, t5_mask, stage)
    rel = (ours - ref).norm() / ref.norm()
    assert rel < 1e-4, rel
    assert torch.allclose(ours_stage, ours[:, stage], atol=1e-5)


def test_metadata_and_lightning_checkpoint_round_trip(tmp_path, capsys):
    src = write(tmp_path / "state_dict.bin", best_state())
    meta = read_audiocraft(src).metadata
    assert meta["text_encoder"] == "t5-base" and meta["codec"] == "facebook/encodec_32khz"
    assert meta["span_len"] == 3 and meta["decoding"]["decoding_steps"] == [20, 10, 10, 10]
    assert meta["license"] == "cc-by-nc-4.0" and meta["family"] == "magnet"
    main(["audiocraft", str(src), str(tmp_path / "out.ckpt")])
    assert "wrote" in capsys.readouterr().out
    pre = load_pretrained(tmp_path / "out.ckpt")
    direct = load_pretrained(src)
    codes = torch.randint(0, V, (1, K, 9))
    t5, mask = torch.randn(1, 3, E), torch.ones(1, 3, dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(pre.model(codes, t5, mask, 1), direct.model(codes, t5, mask, 1))
    assert pre.model.cfg.subcodes_context == W and pre.codec == "facebook/encodec_32khz"

    from magnet_lightning.training.lit_module import MagnetLightningModule

    module = MagnetLightningModule.load_from_checkpoint(tmp_path / "out.ckpt", weights_only=True)
    assert torch.equal(module.model.emb, pre.model.emb)


def test_missing_key_is_named(tmp_path):
    state = best_state()
    del state["transformer.layers.1.linear2.weight"]
    with pytest.raises(CheckpointError, match="linear2"):
        read_audiocraft(write(tmp_path / "a.bin", state))


def test_wrong_shape_is_named(tmp_path):
    state = best_state()
    state["transformer.layers.0.norm1.weight"] = torch.ones(D + 1)
    with pytest.raises(CheckpointError, match="norm1.weight: shape"):
        read_audiocraft(write(tmp_path / "a.bin", state))


def test_missing_codebook_table_is_named(tmp_path):
    state = best_state()
    del state["linears.3.weight"]
    with pytest.raises(CheckpointError, match="linears.3.weight"):
        read_audiocraft(write(tmp_path / "a.bin", state))


@pytest.mark.parametrize("field,value", [("norm_first", False), ("bias_attn", True), ("positional_embedding", "rope")])
def test_unsupported_config_is_named(tmp_path, field, value):
    with pytest.raises(CheckpointError, match=field):
        read_audiocraft(write(tmp_path / "a.bin", best_state(), xp_cfg(**{field: value})))


@pytest.mark.usefixtures("one_thread")
def test_musicgen_checkpoint_converts_to_an_autoregressive_lightning_checkpoint(tmp_path, capsys):
    from magnet_lightning.models.ar import ARTransformer

    src = lm_state_dict_bin(tmp_path / "a.bin", tiny_xp_cfg("musicgen-small", dim=D, num_heads=H, num_layers=L))
    main(["audiocraft", str(src), str(tmp_path / "out.ckpt")])
    assert "wrote" in capsys.readouterr().out
    raw = torch.load(tmp_path / "out.ckpt", weights_only=True)
    assert raw["hyper_parameters"]["family"] == "musicgen" and raw["hyper_parameters"]["delays"] == [0, 1, 2, 3]
    pre, direct = load_pretrained(tmp_path / "out.ckpt"), load_pretrained(src)
    assert isinstance(pre.model, ARTransformer) and pre.model.pattern.delays == (0, 1, 2, 3)
    assert pre.decoding["cfg_coef"] == 3.0 and pre.decoding["top_k"] == 250
    codes, t5, mask = torch.randint(0, V, (1, K, 6)), torch.randn(1, 3, E), torch.ones(1, 3, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(pre.model(codes, t5, mask).logits, direct.model(codes, t5, mask).logits,
                                   equal_nan=True)
    raw["hyper_parameters"]["family"] = "rnn"
    torch.save(raw, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match="unknown model family 'rnn'"):
        load_pretrained(tmp_path / "bad.ckpt")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.bin").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a readable"):
        read_audiocraft(tmp_path / "junk.bin")
    torch.save({"foo": 1}, tmp_path / "other.bin")
    with pytest.raises(CheckpointError, match="best_state"):
        read_audiocraft(tmp_path / "other.bin")
    with pytest.raises(FileNotFoundError, match="magnet-small"):
        read_audiocraft(tmp_path / "absent.bin")
