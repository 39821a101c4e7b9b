"""KAD, FAD and FAD∞ against kadtk's and fadtk's own code on the same embeddings and subsampling seed; the exact
median; the torchmetric's order independence; bootstrap resamples that equal the figures recomputed from scratch."""
import types

import numpy as np
import pytest
import torch
from support.oracles import load_oracle

from magnet_lightning.metrics import kad as kad_module
from magnet_lightning.metrics.bootstrap import (
    KADBootstrap,
    interval,
    item_of_frames,
    resample_counts,
    weighted_fad,
)
from magnet_lightning.metrics.fad import frechet_distance
from magnet_lightning.metrics.fad_inf import fad_inf, gaussian
from magnet_lightning.metrics.kad import KernelAudioDistance, kernel_audio_distance, median_pairwise_distance


def embeddings(n, d=12, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


@pytest.mark.parametrize("kernel", ["gaussian", "iq", "imq"])
def test_kad_equals_kadtk(monkeypatch, kernel):
    kadtk = load_oracle(monkeypatch, "kadtk")
    ref, ev = embeddings(70, seed=1), embeddings(55, shift=0.4, seed=2)
    theirs = kadtk.calc_kernel_audio_distance(ref, ev, (None, None), "cpu", kernel=kernel, precision=torch.float64)
    ours = kernel_audio_distance(ref, ev, kernel=kernel, block=16)  # blocks smaller than the sets
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)  # kadtk's bandwidth is a float32 median
    fixed = kadtk.calc_kernel_audio_distance(ref, ev, (None, None), "cpu", bandwidth=3.0, kernel=kernel,
                                             precision=torch.float64)
    assert kernel_audio_distance(ref, ev, bandwidth=3.0, kernel=kernel).item() == pytest.approx(fixed.item(), rel=1e-10)
    assert kernel_audio_distance(ref, ev).item() > 10 * abs(kernel_audio_distance(ref, embeddings(60, seed=3)).item())


def test_median_is_torch_median_of_pdist_also_by_histogram(monkeypatch):
    x = embeddings(61, d=5, seed=4)
    expected = torch.median(torch.pdist(x)).item()
    assert median_pairwise_distance(x) == expected
    monkeypatch.setattr(kad_module, "DIRECT_MEDIAN", 50)  # 1830 pairs: the histogram path, narrowed twice or more
    assert median_pairwise_distance(x, block=7) == expected
    ties = torch.zeros(40, 3, dtype=torch.float64)
    ties[20:] = 1.0
    assert median_pairwise_distance(ties, block=8) == torch.median(torch.pdist(ties)).item()


def test_fad_and_fad_inf_equal_fadtk(monkeypatch, tmp_path):
    fadtk = load_oracle(monkeypatch, "fadtk")
    ref, ev = embeddings(300, d=6, seed=5), embeddings(260, d=6, shift=0.3, seed=6)
    mu_r, cov_r = gaussian(ref)
    mu_e, cov_e = gaussian(ev)
    theirs_fad = fadtk.calc_frechet_distance(mu_r.numpy(), cov_r.numpy(), mu_e.numpy(), cov_e.numpy())
    assert frechet_distance(mu_r, cov_r, mu_e, cov_e).item() == pytest.approx(float(np.real(theirs_fad)), rel=1e-8)

    np.savez(tmp_path / "ref.npz", **{"m.mu": mu_r.numpy(), "m.cov": cov_r.numpy()})
    files = []
    for i, chunk in enumerate(torch.split(ev, 40)):  # the evaluated frames as per-file embedding arrays
        np.save(tmp_path / f"e{i}.npy", chunk.numpy())
        files.append(tmp_path / f"e{i}.npy")
    oracle = object.__new__(fadtk.FrechetAudioDistance)
    oracle.ml = types.SimpleNamespace(name="m")
    np.random.seed(11)
    theirs = oracle.score_inf(tmp_path / "ref.npz", files, steps=6, min_n=50)
    ours = fad_inf(mu_r, cov_r, ev, steps=6, min_n=50, seed=11)
    assert [n for n, _ in ours.points] == [n for n, _ in theirs.points]
    assert np.allclose([f for _, f in ours.points], [float(np.real(f)) for _, f in theirs.points], rtol=1e-8)
    assert ours.score == pytest.approx(float(np.real(theirs.score)), rel=1e-6, abs=1e-9)
    assert ours.slope == pytest.approx(float(np.real(theirs.slope)), rel=1e-6)


def test_kad_metric_is_order_independent_and_takes_a_loaded_reference():
    ref, ev = embeddings(40, seed=7), embeddings(30, shift=0.5, seed=8)
    expected = kernel_audio_distance(ref, ev).float()
    metric = KernelAudioDistance()
    for chunk in torch.split(ev.flip(0), 7):
        metric.update(chunk, False)
    metric.update(ref[20:], True)
    metric.update(ref[:20].reshape(10, 2, 12), True)  # [N, F, D] frames
    assert torch.equal(metric.compute(), kernel_audio_distance(
        kad_module.canonical_order(ref), kad_module.canonical_order(ev)).float())
    assert metric.compute().item() == pytest.approx(expected.item(), rel=1e-6)
    loaded = KernelAudioDistance(reference=ref)
    loaded.update(ev, False)
    assert loaded.compute().item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="NaN"):
        metric.update(torch.full((2, 12), float("nan")), False)


def test_bootstrap_resamples_equal_figures_recomputed_from_the_drawn_items():
    frames_ref = [embeddings(3, d=4, seed=20 + c) for c in range(9)]
    frames_gen = [embeddings(3, d=4, shift=0.3, seed=40 + c) for c in range(9)]
    ref, gen = torch.cat(frames_ref), torch.cat(frames_gen)
    ref_items, gen_items = item_of_frames(frames_ref), item_of_frames(frames_gen)
    bandwidth = median_pairwise_distance(gen)
    boot = KADBootstrap(ref, ref_items, gen, gen_items, 9, bandwidth)
    ones = np.ones(9)
    assert boot(ones) == pytest.approx(kernel_audio_distance(ref, gen).item(), rel=1e-9)
    assert weighted_fad(ref, ref_items, gen, gen_items, ones) == pytest.approx(
        frechet_distance(*gaussian(ref), *gaussian(gen)).item(), rel=1e-9)
    counts = resample_counts(9, 5, seed=3)
    assert counts.shape == (5, 9) and (counts.sum(1) == 9).all()
    for w in counts:
        drawn_ref = torch.cat([frames_ref[c] for c in range(9) for _ in range(int(w[c]))])
        drawn_gen = torch.cat([frames_gen[c] for c in range(9) for _ in range(int(w[c]))])
        assert boot(w) == pytest.approx(kernel_audio_distance(drawn_ref, drawn_gen, bandwidth).item(), rel=1e-9)
        assert weighted_fad(ref, ref_items, gen, gen_items, w) == pytest.approx(
            frechet_distance(*gaussian(drawn_ref), *gaussian(drawn_gen)).item(), rel=1e-8)
    assert interval([1.0, 2.0, 3.0, float("nan")]) == [pytest.approx(1.05), pytest.approx(2.95)]


def test_suite_adds_kad_on_the_fad_frames_from_cached_reference_embeddings():
    from support.metric_assets import TINY_VGGISH

    from magnet_lightning.metrics.suite import AudioEvalSuite

    suite = AudioEvalSuite(["fad", "kad"], embedder_kwargs={"vggish": {"cfg": TINY_VGGISH}},
                           allow_random_embedders=True, seed=1)
    assert suite.embedder_names == {"fad": "vggish", "kad": "vggish"}
    g = torch.Generator().manual_seed(0)
    gens = [torch.randn(1, 16000 * 2, generator=g) * 0.3 for _ in range(3)]
    refs = [torch.randn(1, 16000 * 2, generator=g) * 0.1 for _ in range(3)]
    suite.update(gens, refs, ["a", "b", "c"], 16000, keys=["k0", "k1", "k2"])
    first = suite.compute()
    vggish = suite.embedders["vggish"]
    expected = kernel_audio_distance(torch.cat([vggish.embed_frames(r[None], 16000)[0] for r in refs]),
                                     torch.cat([vggish.embed_frames(x[None], 16000)[0] for x in gens]))
    assert first["kad"] == pytest.approx(expected.item(), rel=1e-5)
    suite.reset()
    silence = [torch.zeros_like(r) for r in refs]  # same keys: the cached reference frames are used, not these
    suite.update(gens, silence, ["a", "b", "c"], 16000, keys=["k0", "k1", "k2"])
    assert suite.compute() == pytest.approx(first, rel=1e-6)
