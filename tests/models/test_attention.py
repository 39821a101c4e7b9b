"""Restricted attention proven by dependence: output frame t depends on input frame s iff |t - s| <= window
(stage >= 1), and on every frame for stage 0 — for each backend shipped. Gradients for sdpa (and flex on CUDA);
perturbation for flex on CPU, whose kernel has no CPU backward."""

import warnings

import pytest
import torch

from magnet_lightning.config import model_preset
from magnet_lightning.models.attention import windowed_attention
from magnet_lightning.models.magnet import MagnetTransformer

T, W = 24, 5


def tiny_model(backend: str, layers: int = 1) -> MagnetTransformer:
    cfg = model_preset("tiny", num_layers=layers, codebook_size=16, text_dim=8, subcodes_context=W, attention=backend)
    return MagnetTransformer(cfg)


def grad_dependence(model: MagnetTransformer, stage: int, device: str = "cpu", dtype=torch.double) -> torch.Tensor:
    """dep[t, s] = |d output_t / d input_s| summed, through the whole model from its embedded input."""
    model = model.to(device, dtype)
    codes = torch.randint(0, 16, (1, 4, T), device=device)
    text = torch.randn(1, 3, 8, device=device, dtype=dtype)
    memory = model.prepare_text(text, torch.ones(1, 3, dtype=torch.bool, device=device))
    x0 = model.embed(codes).detach().requires_grad_(True)
    dep = torch.zeros(T, T, dtype=torch.double)
    for t in range(T):
        x = model.transformer(x0, memory, model.attend_fn(stage))
        (g,) = torch.autograd.grad(x[0, t].sum(), x0)
        dep[t] = g[0].abs().sum(-1).double().cpu()
    return dep


def perturbation_dependence(model: MagnetTransformer, stage: int) -> torch.Tensor:
    """dep[t, s] = True if changing the token at frame s changes the logits at frame t."""
    model = model.eval().double()
    codes = torch.randint(0, 16, (1, 4, T))
    text, mask = torch.randn(1, 3, 8, dtype=torch.double), torch.ones(1, 3, dtype=torch.bool)
    dep = torch.zeros(T, T, dtype=torch.bool)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = model(codes, text, mask, stage, heads="stage")
        for s in range(T):
            other = codes.clone()
            other[0, :, s] = (other[0, :, s] + 1) % 16
            dep[:, s] = (model(other, text, mask, stage, heads="stage") - base)[0].abs().amax(-1) > 1e-9
    return dep


def band(width: int) -> torch.Tensor:
    pos = torch.arange(T)
    return (pos[:, None] - pos[None, :]).abs() <= width


@pytest.mark.parametrize("stage", [1, 3])
def test_sdpa_gradient_zero_iff_outside_window(stage):
    dep = grad_dependence(tiny_model("sdpa"), stage)
    assert torch.equal(dep > 0, band(W))


def test_sdpa_stage0_gradient_reaches_whole_sequence():
    assert (grad_dependence(tiny_model("sdpa"), 0) > 0).all()


def test_receptive_field_grows_by_window_per_layer():
    dep = grad_dependence(tiny_model("sdpa", layers=2), 2)
    assert torch.equal(dep > 0, band(2 * W))


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_perturbation_locality(backend):
    model = tiny_model(backend)
    assert torch.equal(perturbation_dependence(model, 2), band(W))
    assert perturbation_dependence(model, 0).all()


def test_backends_agree_including_per_sample_stages():
    q, k, v = (torch.randn(3, 2, 40, 8) for _ in range(3))
    stages = torch.tensor([0, 1, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for stage in (1, stages):
            a = windowed_attention(q, k, v, stage, W, "sdpa")
            b = windowed_attention(q, k, v, stage, W, "flex")
            assert torch.allclose(a, b, atol=1e-5)
    full = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    per_sample = windowed_attention(q, k, v, stages, W, "sdpa")
    assert torch.allclose(per_sample[0], full[0], atol=1e-6)  # stage-0 sample is unrestricted
    assert torch.allclose(per_sample[1], windowed_attention(q, k, v, 1, W, "sdpa")[1], atol=1e-6)


def test_negative_window_is_unrestricted():
    model = MagnetTransformer(model_preset("tiny", num_layers=1, codebook_size=16, text_dim=8, subcodes_context=-1))
    assert (grad_dependence(model, 2) > 0).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_cuda_gradient_locality(backend):
    dep = grad_dependence(tiny_model(backend), 2, device="cuda", dtype=torch.float32)
    assert torch.equal(dep > 0, band(W))
    assert (grad_dependence(tiny_model(backend), 0, device="cuda", dtype=torch.float32) > 0).all()
