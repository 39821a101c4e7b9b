"""Hybrid-MAGNeT (one model: an autoregressive prompt, then MAGNeT) on tiny models: attention structure by gradient
dependence, the training corruption and loss masks, overfitting one batch, and generation that keeps its AR prompt
and leaves no MASK."""

import pytest
import torch

from magnet_lightning.config import model_preset
from magnet_lightning.generation.autoregressive import ARDecodingConfig
from magnet_lightning.generation.autoregressive import generate as ar_generate
from magnet_lightning.generation.hybrid_magnet import generate
from magnet_lightning.generation.magnet_config import DecodingConfig
from magnet_lightning.models.hybrid import HybridMagnetTransformer
from magnet_lightning.training.masking import draw_stages, hybrid_training_masks
from magnet_lightning.training.objective import hybrid_loss

V, K, E, W = 16, 4, 8, 2
MASK = V


def _model(layers=2, seed=0, **overrides):
    torch.manual_seed(seed)
    return HybridMagnetTransformer(model_preset("tiny", dim=32, num_heads=4, num_layers=layers, ffn_dim=64,
                                                codebook_size=V, num_codebooks=K, text_dim=E, subcodes_context=W,
                                                **overrides))


def _text(batch=2):
    g = torch.Generator().manual_seed(5)
    return torch.randn(batch, 3, E, generator=g), torch.ones(batch, 3, dtype=torch.bool)


def _dependencies(model, monkeypatch, sequence, boundary, stage):
    """dep[q, s]: does output row q depend on input step s (gradient of the hidden state w.r.t. the embeddings)."""
    x = model.embed(sequence).detach().requires_grad_()
    monkeypatch.setattr(model, "embed", lambda *args, **kwargs: x)
    memory = model.prepare_text(*_text(sequence.shape[0]))
    hidden = model.hidden(sequence, memory, boundary, stage)  # [B, S, D] (normalised: its plain sum is constant)
    probe = torch.randn(hidden.shape[-1], generator=torch.Generator().manual_seed(0))
    rows = []
    for q in range(sequence.shape[-1]):
        (grad,) = torch.autograd.grad(hidden[0, q] @ probe, x, retain_graph=True)
        rows.append(grad[0].abs().sum(-1) > 0)
    return torch.stack(rows)  # [S, S]


@pytest.mark.parametrize("stage0", ["stream", "sequence"])
@pytest.mark.parametrize("stage", [0, 2])
def test_attention_structure_by_gradient(monkeypatch, stage, stage0):
    """The branch's layout: prompt rows causal; the rows of the stage's stream attend to its steps (stages >= 1 in
    the window); other rows to everything. Stage 0: its stream's steps, or every step ('sequence')."""
    model = _model(layers=1, hybrid_stage0_attention=stage0)  # one layer: dependence is exactly the attention mask
    frames, prompt = 16, 8
    sequence = model.pattern.build(torch.randint(0, V, (1, K, frames)), V)  # S = 20 steps
    dep = _dependencies(model, monkeypatch, sequence, torch.tensor([prompt + 1]), stage)
    steps, delay = torch.arange(dep.shape[0]), model.pattern.delays[stage]
    stream = (steps >= 1 + delay) & (steps <= delay + frames)  # the steps holding the stage's stream
    for q in range(dep.shape[0]):
        if q < prompt:  # the prompt: causal, never a later step (nor anything of the generated part)
            expected = steps <= q
        elif not delay <= q < delay + frames:  # rows that predict nothing of this stage
            expected = torch.ones_like(stream)
        elif stage == 0:
            expected = torch.ones_like(stream) if stage0 == "sequence" else stream
        else:  # stages >= 1: the window around the predicted code's step q + 1, within the stream
            expected = stream & ((steps - (q + 1)).abs() <= W)
        assert torch.equal(dep[q], expected), q


def test_deeper_prompt_rows_still_see_no_later_step(monkeypatch):
    model = _model(layers=2)
    sequence = model.pattern.build(torch.randint(0, V, (1, K, 16)), V)
    dep = _dependencies(model, monkeypatch, sequence, torch.tensor([6]), 1)  # a prompt of 5 steps: rows 0..4
    steps = torch.arange(dep.shape[0])
    for q in range(5):
        assert not (dep[q] & (steps > q)).any()
    assert (dep[5] & (steps > 5)).any()  # row 5 predicts the first generated codes, as a MAGNeT row


def test_training_corruption_and_loss_masks():
    model = _model()
    g = torch.Generator().manual_seed(3)
    codes = torch.randint(0, V, (64, K, 30), generator=g)
    padding = torch.ones(64, 30, dtype=torch.bool)
    padding[0, -4:] = False
    stages = draw_stages(64, K, True, g)
    batch = hybrid_training_masks(codes, model.pattern.delays, stages, MASK, 3, padding, g)
    prompt = model.prompt_mask(batch.boundary, 30)  # stream k: frames < b - 1 - d_k
    assert torch.equal(batch.ar_mask, prompt & padding[:, None])
    assert torch.equal(batch.inputs[prompt], codes[prompt]), "the prompt is never corrupted"
    levels = torch.arange(K)[None, :, None]
    after = ~prompt
    upper = after & (levels > stages[:, None, None])
    lower = after & (levels < stages[:, None, None])
    assert (batch.inputs[upper] == MASK).all() and torch.equal(batch.inputs[lower], codes[lower])
    assert not (batch.nar_mask & (levels != stages[:, None, None])).any() and not (batch.nar_mask & prompt).any()
    at_stage = after & (levels == stages[:, None, None])
    masked_at_stage = at_stage & (batch.inputs == MASK)
    assert torch.equal(batch.nar_mask, masked_at_stage & padding[:, None])
    assert batch.nar_mask.any(dim=(1, 2)).float().mean() > 0.9 and (batch.boundary >= 1).all()
    assert len(set(batch.boundary.tolist())) > 10, "boundaries are drawn per item"


def test_loss_scores_only_the_masked_positions():
    model = _model()
    codes = torch.randint(0, V, (3, K, 12))
    batch = hybrid_training_masks(codes, model.pattern.delays, torch.tensor([1, 0, 3]), MASK, 3,
                                  generator=torch.Generator().manual_seed(1))
    loss = hybrid_loss(model, codes, batch, *_text(3))
    scored = batch.ar_mask | batch.nar_mask
    changed = codes.clone()
    changed[~scored] = (changed[~scored] + 1) % V  # targets that are not scored do not enter the loss
    memory_free = hybrid_loss(model, changed, batch, *_text(3))
    assert torch.equal(loss.loss, memory_free.loss)
    assert loss.loss > 0 and loss.ar > 0 and loss.nar > 0


def test_overfits_one_batch():
    model = _model()
    codes = torch.randint(0, V, (4, K, 20), generator=torch.Generator().manual_seed(2))
    text = _text(4)
    g = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    first = None
    for _ in range(250):
        batch = hybrid_training_masks(codes, model.pattern.delays, draw_stages(4, K, True, g), MASK, 3, generator=g)
        loss = hybrid_loss(model, codes, batch, *text).loss
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1 * first


@pytest.mark.parametrize("prompt_frames", [0, 7])
def test_generation_keeps_the_ar_prompt_and_leaves_no_mask(prompt_frames):
    model = _model().eval()
    states, mask = _text()
    config = DecodingConfig(decoding_steps=(3, 2, 2, 2), use_sampling=False)
    greedy = ARDecodingConfig(use_sampling=False)
    out = generate(model, states, mask, 20, prompt_frames, config, greedy)
    assert out.shape == (2, K, 20) and ((out >= 0) & (out < V)).all()
    if prompt_frames:
        alone = ar_generate(model, states, mask, prompt_frames, greedy)  # the same model, autoregressively
        prompt = model.prompt_mask(torch.full((2,), prompt_frames + 1), 20)
        assert torch.equal(out[prompt], torch.nn.functional.pad(alone, (0, 20 - prompt_frames))[prompt])
    with pytest.raises(ValueError, match="prompt_frames"):
        generate(model, states, mask, 20, 20, config)
