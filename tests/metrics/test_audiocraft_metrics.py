"""KL (PaSST) and CLAP text consistency follow audiocraft's metric classes: same segmenting (no padding, segments of
0.15 s or less dropped), resampling (julius) before the mono mix, softmax per segment, KL(ref ‖ gen + 1e-6) averaged
over segment pairs, CLAP cosine of the 48 kHz mono clip against its caption.

The fixtures were made by running audiocraft 1.3.0's own PasstKLDivergenceMetric and CLAPTextConsistencyMetric on
the real architectures with name-seeded weights (tests/fixtures/audiocraft_metrics/, README there); this test runs
magnet_lightning's embedders and metrics on the same clips and weights."""
import json

import numpy as np
import pytest
import torch
from support import metric_weights as mw
from support import paths

from magnet_lightning.metrics import CLAPScore, KLDivergence
from magnet_lightning.metrics.embedders.base import to_mono_at
from magnet_lightning.metrics.embedders.clap import load_clap
from magnet_lightning.metrics.embedders.passt import MIN_SECONDS, SAMPLE_RATE, load_passt, segments

FIXTURES = paths.FIXTURES / "audiocraft_metrics"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def expected():
    return json.loads((FIXTURES / "fixtures.json").read_text()), np.load(FIXTURES / "fixtures.npz")


@pytest.mark.slow
@pytest.mark.parametrize("case", mw.KL_CASES, ids=[c[0] for c in mw.KL_CASES])
def test_passt_kl_follows_audiocraft(expected, case):
    scores, arrays = expected
    name, length, seconds, rate = case
    embedder = load_passt(pretrained_length=length, random_weights=True)
    assert mw.set_weights(embedder.net, mw.PASST_SEED) == pytest.approx(scores["kl"][name]["weights_fingerprint"])
    preds, sizes = mw.batch(seconds, rate, 2, seed=10)
    targets, _ = mw.batch(seconds, rate, 2, seed=20)
    assert float(preds.abs().sum() + targets.abs().sum()) == pytest.approx(scores["kl"][name]["inputs_sum"])
    metric = KLDivergence(direction="ref_gen")
    probs = {"pred": [], "target": []}
    for i, size in enumerate(sizes.tolist()):  # each clip at its own length, as audiocraft's `sizes` cut it
        gen = embedder.embed_frames(preds[i:i + 1, :, :size], rate)
        ref = embedder.embed_frames(targets[i:i + 1, :, :size], rate)
        metric.update(gen, ref)
        probs["pred"].append(gen[0])
        probs["target"].append(ref[0])
    for side in ("pred", "target"):
        ours, theirs = torch.cat(probs[side]).numpy(), arrays[f"{name}_{side}_probs"]
        assert ours.shape == theirs.shape  # the same segments (a 0.1-s tail dropped, a 0.6-s tail kept)
        np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=1e-7)
    assert metric.compute().item() == pytest.approx(scores["kl"][name]["kld"], rel=1e-3)
    reverse = (metric.kl_gen_ref_sum / metric.count).item()
    assert reverse == pytest.approx(scores["kl"][name]["kld_qp"], rel=1e-3)


@pytest.mark.parametrize("case", mw.SEGMENT_CASES, ids=[f"passt{c[0]}" for c in mw.SEGMENT_CASES])
def test_passt_segments_follow_audiocraft(expected, case):
    """Clips longer than the window: our resampling, mono mix and segmenting give audiocraft's segments."""
    length, rate, seconds = case
    wav, sizes = mw.batch(seconds, rate, 2, seed=40)
    for i, size in enumerate(sizes.tolist()):
        mono = to_mono_at(wav[i:i + 1, :, :size], rate, SAMPLE_RATE)
        pieces = segments(mono, length * SAMPLE_RATE, int(MIN_SECONDS * SAMPLE_RATE))
        ours = np.array([[p.shape[-1], float(p.double().sum())] for p in pieces]).reshape(-1, 2)
        theirs = expected[1][f"segments{length}_{i}"]
        assert ours.shape == theirs.shape and (ours[:, 0] == theirs[:, 0]).all()
        np.testing.assert_allclose(ours[:, 1], theirs[:, 1], rtol=1e-4, atol=1e-3)


@pytest.mark.slow
def test_clap_text_consistency_follows_audiocraft(expected):
    scores = expected[0]["clap"]
    seconds, rate, texts = mw.CLAP_CASE
    embedder = load_clap(random_weights=True, tokenizer="bytes")
    assert mw.set_weights(embedder.clap.model, mw.CLAP_SEED) == pytest.approx(scores["weights_fingerprint"])
    audio, sizes = mw.batch(seconds, rate, 2, seed=30)
    assert float(audio.abs().sum()) == pytest.approx(scores["inputs_sum"])
    per_clip = []
    for i, size in enumerate(sizes.tolist()):
        emb, text = embedder(audio[i:i + 1, :, :size], rate), embedder.embed_text(texts[i:i + 1])
        per_clip.append(torch.nn.functional.cosine_similarity(emb, text, eps=1e-8).item())
    assert per_clip == pytest.approx(scores["per_clip"], rel=1e-4, abs=1e-6)
    batch = CLAPScore(embedder)
    batch.update(audio, texts, rate)  # audiocraft's batch: the short clip zero-padded to the long one
    assert batch.compute().item() == pytest.approx(scores["batch_score"], rel=1e-4)
