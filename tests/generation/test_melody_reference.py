"""Melody conditioning against audiocraft's own outputs (tests/fixtures/melody, made by running audiocraft 1.3.0's
code: see its README): the chroma extractor, the chroma cosine-similarity metric, the demucs stems, and the
MusicGen-melody release format (config, logits, greedy tokens), loaded by repo id."""

from __future__ import annotations

import pytest
import torch
from support.audiocraft_files import hub_cache
from support.melody_files import MELODY_LM, FixtureTexts, htdemucs_folder, load, standin_htdemucs

from magnet_lightning.checkpoint.audiocraft import read_audiocraft
from magnet_lightning.codec.melody import MelodyExtractor
from magnet_lightning.codec.stems import StemSeparator
from magnet_lightning.config import MelodyConfig
from magnet_lightning.generation.autoregressive import ARDecodingConfig
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.generation.melody import melody_condition
from magnet_lightning.metrics.chroma import ChromaCosineSimilarity
from magnet_lightning.models.chroma import ChromaExtractor


@pytest.fixture
def hf_cache(empty_hf_cache):
    """An empty Hugging Face cache for this test (support/hub_cache.py)."""
    return empty_hf_cache


def test_chroma_equals_audiocraft_chroma_extractor():
    data = load("chroma.pt")
    for argmax in (True, False):
        extractor = ChromaExtractor(MelodyConfig(argmax=argmax))
        for wav, key in ((data["wav"], "chroma"), (data["short"], "short")):
            ours = extractor(wav.float())
            ref = data[f"{key}_argmax_{argmax}"]
            assert ours.shape == ref.shape
            torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)
    assert data["chroma_argmax_True"].shape[1] == MelodyConfig().num_chroma_frames(data["wav"].shape[-1])


def test_chroma_metric_equals_audiocraft_chroma_cosine_similarity():
    data = load("chroma_metric.pt")
    metric = ChromaCosineSimilarity(**data["settings"])
    for batch in data["batches"]:
        metric.update(batch["preds"].float(), batch["targets"].float(), batch["sizes"], batch["sample_rates"])
    assert abs(float(metric.compute()) - data["value"]) < 1e-6
    assert 0.0 < data["value"] < 1.0  # neither identical nor unrelated chroma: the test can tell them apart


@pytest.mark.usefixtures("one_thread")
def test_stems_equal_audiocraft_stem_conditioner_from_a_hub_style_folder(tmp_path):
    data = load("stems.pt")
    separator = StemSeparator.load(htdemucs_folder(tmp_path / "htdemucs"))
    stems = separator(data["wav"].float(), data["sample_rate"])
    torch.testing.assert_close(stems, data["stems"], atol=1e-6, rtol=1e-4)
    chroma = ChromaExtractor(MelodyConfig())(stems)
    assert (chroma == data["chroma"]).float().mean() > 0.99  # argmax: ties at float rounding could flip a frame


def test_missing_htdemucs_names_the_files_and_where_to_put_them(hf_cache, tmp_path):
    with pytest.raises(FileNotFoundError, match="hf download adefossez/HTDemucs htdemucs.yaml 955717e8.safetensors"):
        StemSeparator.load()
    with pytest.raises(FileNotFoundError, match="does not hold htdemucs.yaml and 955717e8.safetensors"):
        StemSeparator.load(tmp_path)


def test_musicgen_melody_config_reads_by_audiocraft_rules():
    spec = read_audiocraft(MELODY_LM / "state_dict.bin").spec
    assert spec.family == "musicgen" and spec.model.text_fuse == "prepend" and not spec.model.cross_attention
    assert spec.model.chroma_bins == 12 and spec.model.chroma_fuse == "prepend"
    assert spec.melody == MelodyConfig(sample_rate=32000, n_chroma=12, radix2_exp=14, argmax=True, stems="htdemucs",
                                       duration=30.0, attribute_dropout=0.5)
    assert spec.melody.prefix_frames == 235 and spec.cfg_dropout == 0.2 and spec.word_dropout == 0.2
    assert "conditioners.self_wav.chroma_stem.radix2_exp" in spec.used
    assert "conditioners.self_wav.chroma_stem.match_len_on_eval" in spec.ignored


def _extractor(cfg) -> MelodyExtractor:
    return MelodyExtractor(cfg, StemSeparator(standin_htdemucs()))


@pytest.mark.usefixtures("one_thread")
def test_musicgen_melody_logits_equal_audiocraft():
    ckpt = read_audiocraft(MELODY_LM / "state_dict.bin")
    model = ckpt.build_model()
    data = torch.load(MELODY_LM / "parity.pt", weights_only=True)
    condition = melody_condition(_extractor(ckpt.spec.melody), model.cfg, data["melodies"], data["sample_rate"], 2,
                                 data["codes"].shape[-1], 50.0)
    with torch.no_grad():
        projected = model.project_chroma(condition.cond, 2)
        out = model(data["codes"], data["text_states"], data["text_mask"], chroma=condition.cond)
    torch.testing.assert_close(projected, data["chroma_condition"], atol=1e-6, rtol=1e-5)
    ref, mask = data["logits"], data["logits_mask"]
    ours = out.logits[..., data["vocab_index"]]
    assert torch.equal(out.mask, mask)
    valid = mask[..., None].expand_as(ref)
    assert (ours - ref).abs()[valid].max() / ref.abs()[valid].max() < 1e-5


def _publish(tmp_path, cache, repo):
    hub_cache(cache, repo, {"state_dict.bin": MELODY_LM / "state_dict.bin"})
    if not (cache / "models--adefossez--HTDemucs").exists():
        hub_cache(cache, "adefossez/HTDemucs", {"": htdemucs_folder(tmp_path / "htdemucs")})


@pytest.mark.usefixtures("one_thread")
def test_musicgen_melody_by_repo_id_gives_audiocraft_greedy_tokens(tmp_path, hf_cache):
    data = torch.load(MELODY_LM / "generate.pt", weights_only=True)
    config = ARDecodingConfig(use_sampling=False, cfg_coef=data["cfg_coef"])
    for repo in ("facebook/musicgen-melody", "facebook/musicgen-melody-large"):
        _publish(tmp_path, hf_cache, repo)
        gen = MagnetGenerator.from_pretrained(repo, device="cpu", text_encoder=FixtureTexts(data), codec=False)
        assert gen.family == "musicgen" and gen.melody_extractor.cfg.stems == "htdemucs"
        cases = data["cases"] if repo.endswith("melody") else {"none": data["cases"]["none"]}  # same file: once
        for name, case in cases.items():
            result = gen.generate(data["descriptions"], duration=data["max_gen_len"] / 50, decoding=config,
                                  melody=None if name == "none" else case["melodies"],
                                  melody_sample_rate=data["sample_rate"], prompt=case["prompt"], decode_audio=False)
            assert torch.equal(result.tokens, case["tokens"]), (repo, name)
