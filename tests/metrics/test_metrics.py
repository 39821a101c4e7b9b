"""FAD, KL and CLAP score against direct numpy/scipy formulas on the gathered data."""
import numpy as np
import pytest
import scipy.linalg
import torch

from magnet_lightning.metrics import CLAPScore, FrechetAudioDistance, KLDivergence, frechet_distance


def scipy_fad(real: np.ndarray, fake: np.ndarray) -> float:
    """The textbook formula: |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 sqrtm(S_r S_g))."""
    mu_r, mu_g = real.mean(0), fake.mean(0)
    s_r, s_g = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root = scipy.linalg.sqrtm(s_r @ s_g).real
    return float(((mu_r - mu_g) ** 2).sum() + np.trace(s_r + s_g - 2 * root))


def test_fad_matches_scipy_formula_over_batches():
    gen = torch.Generator().manual_seed(1)
    real = torch.randn(300, 8, generator=gen) @ torch.randn(8, 8, generator=gen)
    fake = torch.randn(250, 8, generator=gen) * 1.5 + 0.3
    metric = FrechetAudioDistance(num_features=8)
    for chunk in real.split(64):
        metric.update(chunk, True)
    for chunk in fake.split(50):
        metric.update(chunk, real=False)
    expected = scipy_fad(real.double().numpy(), fake.double().numpy())
    assert metric.compute().item() == pytest.approx(expected, rel=1e-4)


def test_fad_of_a_set_against_itself_is_zero():
    x = torch.randn(200, 16)
    metric = FrechetAudioDistance(num_features=16)
    metric.update(x, True)
    metric.update(x, False)
    assert abs(metric.compute().item()) < 1e-4


def test_fad_of_shifted_gaussian_equals_closed_form():
    """Same covariance, means differing by delta: the distance is |delta|^2 (population statistics)."""
    dim, shift = 4, torch.tensor([1.0, -2.0, 0.5, 0.0])
    mu, cov = torch.zeros(dim), torch.diag(torch.tensor([1.0, 2.0, 0.5, 3.0])).double()
    assert frechet_distance(mu, cov, mu + shift, cov).item() == pytest.approx(float(shift @ shift), abs=1e-9)
    # two different covariances: closed form for commuting (diagonal) matrices
    cov2 = torch.diag(torch.tensor([4.0, 1.0, 2.0, 3.0])).double()
    closed = float(shift @ shift) + float(((cov.diagonal().sqrt() - cov2.diagonal().sqrt()) ** 2).sum())
    assert frechet_distance(mu, cov, mu + shift, cov2).item() == pytest.approx(closed, abs=1e-9)


def test_fad_sampled_shift_is_close_to_closed_form():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(20000, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(20000, 3, generator=gen, dtype=torch.float64) + torch.tensor([2.0, 0.0, 1.0],
                                                                                  dtype=torch.float64)
    metric = FrechetAudioDistance(num_features=3)
    metric.update(x, True)
    metric.update(y, False)
    assert metric.compute().item() == pytest.approx(5.0, rel=0.03)


def test_fad_accepts_frame_embeddings_and_rejects_bad_input():
    metric = FrechetAudioDistance(num_features=4)
    metric.update(torch.randn(3, 5, 4), True)  # [N, F, D]: 15 rows
    assert int(metric.real_count) == 15
    with pytest.raises(ValueError, match="Expected embeddings"):
        metric.update(torch.randn(3, 5), True)
    with pytest.raises(ValueError, match="NaN"):
        metric.update(torch.full((2, 4), float("nan")), False)
    with pytest.raises(TypeError, match="real"):
        metric.update(torch.randn(2, 4))
    with pytest.raises(ValueError, match="num_features"):
        FrechetAudioDistance()


def test_fad_reference_stats_round_trip(tmp_path):
    real, fake = torch.randn(100, 6), torch.randn(80, 6) + 1
    ref = FrechetAudioDistance(num_features=6)
    ref.update(real, True)
    ref.save_reference_stats(tmp_path / "ref.pt")
    direct = FrechetAudioDistance(num_features=6)
    direct.update(real, True)
    direct.update(fake, False)
    reused = FrechetAudioDistance(num_features=6, reference_stats=tmp_path / "ref.pt")
    reused.update(fake, False)
    assert reused.compute().item() == pytest.approx(direct.compute().item(), rel=1e-6)
    reused.reset()  # loaded reference survives reset (reused across epochs), generated set is cleared
    reused.update(fake, False)
    assert reused.compute().item() == pytest.approx(direct.compute().item(), rel=1e-6)
    with pytest.raises(ValueError, match="6-d"):
        FrechetAudioDistance(num_features=5, reference_stats=tmp_path / "ref.pt")


def _softmax_rows(n, c, seed):
    return torch.softmax(torch.randn(n, c, generator=torch.Generator().manual_seed(seed)) * 2, dim=-1)


def test_kl_matches_numpy_formula():
    gen, ref = _softmax_rows(10, 527, 3), _softmax_rows(10, 527, 4)
    metric = KLDivergence()
    metric.update(gen[:4], ref[:4])
    metric.update(gen[4:], ref[4:])
    p, q = ref.double().numpy(), gen.double().numpy()
    expected = np.mean(np.sum(p * (np.log(p) - np.log(q + 1e-6)), axis=1))
    assert metric.compute().item() == pytest.approx(expected, rel=1e-5)
    reverse = KLDivergence(direction="gen_ref")
    reverse.update(gen, ref)
    expected_rev = np.mean(np.sum(q * (np.log(q) - np.log(p + 1e-6)), axis=1))
    assert reverse.compute().item() == pytest.approx(expected_rev, rel=1e-5)


def test_kl_of_identical_distributions_is_zero_and_handles_zeros():
    probs = _softmax_rows(5, 20, 5)
    metric = KLDivergence()
    metric.update(probs, probs)
    assert abs(metric.compute().item()) < 1e-4  # only the 1e-6 epsilon remains
    one_hot = torch.eye(4)
    metric = KLDivergence()
    metric.update(one_hot, one_hot)
    assert metric.compute().item() == pytest.approx(-np.log(1 + 1e-6), abs=1e-9)


def test_kl_rejects_logits_and_unpaired_rows():
    metric = KLDivergence()
    with pytest.raises(ValueError, match="logits|sum to 1"):
        metric.update(torch.randn(3, 5), _softmax_rows(3, 5, 0))
    with pytest.raises(ValueError, match="pair"):
        metric.update(_softmax_rows(3, 5, 0), _softmax_rows(2, 5, 1))
    with pytest.raises(RuntimeError, match="before any update"):
        KLDivergence().compute()


def test_clap_score_is_mean_cosine():
    audio, text = torch.randn(7, 12), torch.randn(7, 12)
    metric = CLAPScore()
    metric.update(audio[:3], text[:3])
    metric.update(audio[3:], text[3:])
    a, t = audio.double().numpy(), text.double().numpy()
    cos = (a * t).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(t, axis=1)
    assert metric.compute().item() == pytest.approx(cos.mean(), rel=1e-6)


def test_clap_score_of_identical_normalised_vectors_is_one():
    x = torch.nn.functional.normalize(torch.randn(5, 512), dim=-1)
    metric = CLAPScore()
    metric.update(x, x.clone())
    assert metric.compute().item() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="paired"):
        metric.update(x, x[:3])
