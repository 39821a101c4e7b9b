"""No code runs from an untrusted file: a pickle whose ``__reduce__`` writes a marker file is refused by every loader
of the project, and the marker never appears. Weights files holding numpy arrays (older releases) still load."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support.helpers import TINY_MODEL, tiny_module
from support.malicious import Payload, malicious_file

TINY_VGGISH = {"conv_channels": [4, "M", 4, "M", 8, "M", 8, "M"], "fc_dim": 16, "embedding_dim": 8,
               "final_relu": False}


def _vggish(path, tmp_path, monkeypatch):
    from magnet_lightning.metrics.embedders.vggish import load_vggish

    load_vggish(checkpoint=path, cfg=TINY_VGGISH)


def _vggish_pca(path, tmp_path, monkeypatch):
    from magnet_lightning.metrics.embedders.vggish import load_vggish

    (tmp_path / "unread.pth").write_bytes(b"")  # the PCA file is read first
    load_vggish(checkpoint=tmp_path / "unread.pth", use_pca=True, pca_checkpoint=path, cfg=TINY_VGGISH)


def _passt(path, tmp_path, monkeypatch):
    from magnet_lightning.metrics.embedders.passt import load_passt

    load_passt(checkpoint=path, pretrained_length=10)


def _passt_tiny(path, tmp_path, monkeypatch):
    from magnet_lightning.metrics.embedders.passt import load_passt

    load_passt(checkpoint=path, tiny={"max_seconds": 1.0})


def _clap(path, tmp_path, monkeypatch):
    from magnet_lightning.metrics.embedders.clap import ByteTokenizer, load_clap

    load_clap(checkpoint=path, tokenizer=ByteTokenizer(), check_vocab=False)


def _weights_dir(path, tmp_path, monkeypatch):
    """A file dropped into $MAGNET_WEIGHTS_DIR under the name the loader looks for."""
    from magnet_lightning.metrics.embedders import get_embedder

    folder = tmp_path / "weights"
    folder.mkdir()
    path.rename(folder / "vggish-10086976.pth")
    monkeypatch.setenv("MAGNET_WEIGHTS_DIR", str(folder))
    monkeypatch.delenv("MAGNET_VGGISH_CKPT", raising=False)
    get_embedder("vggish", cfg=TINY_VGGISH)


def _encodec_24khz(path, tmp_path, monkeypatch):
    from magnet_lightning.codec.codecs import load_codec

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    target = Path(torch.hub.get_dir()) / "checkpoints" / "encodec_24khz-d7cc33bc.th"
    target.parent.mkdir(parents=True)
    path.rename(target)
    load_codec("encodec_24khz")


def _hf_encodec_dir(path, tmp_path, monkeypatch):
    from support.tiny_codecs import tiny_hf_model

    from magnet_lightning.codec.codecs import load_codec

    folder = tmp_path / "codec"
    tiny_hf_model().config.save_pretrained(folder)
    path.rename(folder / "pytorch_model.bin")
    load_codec(str(folder))


def _checkpoint(path, tmp_path, monkeypatch):
    from magnet_lightning.checkpoint.pretrained import load_pretrained

    load_pretrained(path)


def _peek(path, tmp_path, monkeypatch):
    from magnet_lightning.cli.checks import peek_checkpoint

    peek_checkpoint(path)


def _audiocraft(path, tmp_path, monkeypatch):
    from magnet_lightning.checkpoint.audiocraft import read_audiocraft

    read_audiocraft(path)


def _init_from(path, tmp_path, monkeypatch):
    tiny_module(init_from=str(path))


def _resume(path, tmp_path, monkeypatch):
    import lightning as L
    from support.helpers import FixedBatches, loader

    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(tiny_module(), loader(FixedBatches(2)), ckpt_path=str(path))


def _fad_stats(path, tmp_path, monkeypatch):
    from magnet_lightning.metrics.fad import FrechetAudioDistance

    FrechetAudioDistance(num_features=8, reference_stats=path)


def _shard_codes(path, tmp_path, monkeypatch):
    """An object .npy (pickled) as a shard's codes: the reader skips it as bad_codes, never unpickles it."""
    from magnet_lightning.data.pipeline import BadSample, SkipCounter, decode_sample

    buf = io.BytesIO()
    np.save(buf, np.array([Payload(tmp_path / "marker")], dtype=object), allow_pickle=True)
    sample = {"__key__": "evil", "codes.npy": buf.getvalue(), "json": json.dumps({"caption": "x"}).encode()}
    try:
        decode_sample(sample, 4, 16)
    except BadSample as bad:
        SkipCounter().add(bad.reason, str(bad))
        raise


LOADERS = {f.__name__.lstrip("_"): f for f in (
    _vggish, _vggish_pca, _passt, _passt_tiny, _clap, _weights_dir, _encodec_24khz, _hf_encodec_dir, _checkpoint,
    _peek, _audiocraft, _init_from, _resume, _fad_stats, _shard_codes)}


@pytest.mark.parametrize("loader_name", sorted(LOADERS))
def test_malicious_pickle_is_refused_and_never_runs(loader_name, tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    path = malicious_file(tmp_path / "evil.pt", marker)
    with pytest.raises(Exception):  # each loader has its own error type; what matters is the marker
        LOADERS[loader_name](path, tmp_path, monkeypatch)
    assert not marker.exists(), f"{loader_name} ran code from the file"


@pytest.mark.parametrize("loader_name", ["vggish", "vggish_pca", "passt_tiny", "clap", "weights_dir",
                                         "encodec_24khz"])
def test_refusal_is_a_one_line_user_error_naming_the_object(loader_name, tmp_path, monkeypatch):
    from magnet_lightning.utils.safe_load import UnsafeWeightsError

    path = malicious_file(tmp_path / "evil.pt", tmp_path / "marker")
    with pytest.raises(UnsafeWeightsError, match=r"refused: it needs the Python object exec,") as info:
        LOADERS[loader_name](path, tmp_path, monkeypatch)
    assert "no code in it can run" in str(info.value)


def test_numpy_arrays_in_weights_still_load(tmp_path):
    """The AudioSet PCA release pickles numpy arrays: read as data with weights_only=True."""
    from magnet_lightning.metrics.embedders.vggish import VGGishConfig, VGGishEmbedder, load_vggish

    cfg = VGGishConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in TINY_VGGISH.items()})
    torch.save(VGGishEmbedder(cfg).net.state_dict(), tmp_path / "vggish.pth")
    rng = np.random.default_rng(0)
    pca = {"pca_eigen_vectors": rng.standard_normal((8, 8)).astype(np.float32),
           "pca_means": rng.standard_normal((8, 1)), "version": np.int64(1)}
    torch.save(pca, tmp_path / "pca.pth")
    emb = load_vggish(checkpoint=tmp_path / "vggish.pth", use_pca=True, pca_checkpoint=tmp_path / "pca.pth", cfg=cfg)
    np.testing.assert_allclose(emb.pca_matrix.numpy(), pca["pca_eigen_vectors"])


def test_encodec_24khz_never_downloads(tmp_path, monkeypatch):
    """No weights in the torch hub cache: a clear error naming the file and the folder, and no download attempt."""
    import urllib.request

    from magnet_lightning.codec.codecs import load_codec

    calls = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: calls.append(a))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError, match=r"nothing is downloaded implicitly.*encodec_24khz-d7cc33bc\.th"):
        load_codec("encodec_24khz")
    assert calls == []


def test_encodec_24khz_loads_its_cached_weights(tmp_path, monkeypatch):
    import encodec

    from magnet_lightning.codec.codecs import load_codec

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    reference = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
    target = Path(torch.hub.get_dir()) / "checkpoints" / "encodec_24khz-d7cc33bc.th"
    target.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), target)
    codec = load_codec("encodec_24khz", bandwidth=1.5)
    assert codec.name == "encodec-pkg:encodec_24khz@1.5kbps" and codec.num_codebooks == 2
    for name, value in reference.state_dict().items():
        assert torch.equal(codec.model.state_dict()[name], value), name


def test_tiny_model_checkpoint_of_the_right_size_is_not_refused(tmp_path):
    """The entry-point peek reads our checkpoints (a control for the refusals above)."""
    from magnet_lightning.cli.checks import peek_checkpoint

    module = tiny_module()
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, tmp_path / "ok.ckpt")
    facts = peek_checkpoint(tmp_path / "ok.ckpt")
    assert (facts.num_codebooks, facts.codebook_size) == (TINY_MODEL["num_codebooks"], TINY_MODEL["codebook_size"])


def test_a_corrupt_file_is_named_as_corrupt_not_as_unsafe(tmp_path):
    from magnet_lightning.errors import UserError
    from magnet_lightning.utils.safe_load import UnsafeWeightsError, load_tensors

    for content in (b"x", b"PK\x03\x04 truncated zip"):
        (tmp_path / "bad.pt").write_bytes(content)
        with pytest.raises(UserError, match="not a readable torch weights file") as info:
            load_tensors(tmp_path / "bad.pt")
        assert not isinstance(info.value, UnsafeWeightsError)
