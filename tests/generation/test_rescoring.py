"""Rescoring (paper §3.3, Eq. 5) with tiny models: w = 1 is no rescoring, w = 0 re-masks exactly the spans a
brute-force computation of the rescorer's probabilities picks, the rescorer runs once per step without gradients,
and the fast path gives the plain path's tokens."""

import pytest
import torch

from magnet_lightning.config import model_preset
from magnet_lightning.generation.fast import FastDecoder
from magnet_lightning.generation.magnet import decode
from magnet_lightning.generation.magnet_config import DecodingConfig
from magnet_lightning.generation.rescoring import ARRescorer
from magnet_lightning.models.ar import ARTransformer
from magnet_lightning.models.magnet import MagnetTransformer

V, K, E = 16, 4, 8
MASK = V


def _sizes(**kw):
    return model_preset("tiny", dim=32, num_heads=4, num_layers=2, ffn_dim=64, codebook_size=V, num_codebooks=K,
                        text_dim=E, **kw)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    magnet = MagnetTransformer(_sizes(subcodes_context=2, attention="sdpa")).eval()
    ar = ARTransformer(_sizes()).eval()
    for p in ar.parameters():  # a sharper rescorer, so that its choices differ from MAGNeT's
        p.data.mul_(1.5)
    return magnet, ar


def _text(batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, E, generator=g), torch.ones(batch, 4, dtype=torch.bool)


def _config(**kw):
    return DecodingConfig(**{"decoding_steps": (6, 3, 3, 3), "use_sampling": False, **kw})


class Spy:
    """Wraps a rescorer: records the candidates it is given and whether gradients were on."""

    def __init__(self, inner):
        self.inner, self.candidates, self.grad = inner, [], []

    def check_compatible(self, model):
        self.inner.check_compatible(model)

    def __call__(self, codes, stage):
        self.candidates.append((stage, codes.clone()))
        self.grad.append(torch.is_grad_enabled())
        out = self.inner(codes, stage)
        assert not out.requires_grad
        return out


def _magnet_inputs(model, monkeypatch):
    seen = []
    original = model.forward_with_memory
    monkeypatch.setattr(model, "forward_with_memory",
                        lambda codes, *a, **k: seen.append(codes.clone()) or original(codes, *a, **k))
    return seen


def test_weight_one_is_exactly_no_rescoring(models):
    magnet, ar = models
    states, mask = _text()
    rescorer = Spy(ARRescorer(ar, states, mask))
    for sampling in (False, True):
        cfg = _config(use_sampling=sampling)
        plain = decode(magnet, states, mask, 24, cfg, generator=torch.Generator().manual_seed(3))
        with_rescorer = decode(magnet, states, mask, 24, cfg, generator=torch.Generator().manual_seed(3),
                               rescorer=rescorer)
        assert torch.equal(plain, with_rescorer)
    assert rescorer.candidates == [], "w = 1 never runs the rescorer"


def _brute_force_probs(ar, states, mask, codes, stage):
    """The rescorer's probability of every candidate token of `stage`, from its plain teacher-forced forward."""
    padded = torch.cat([codes, torch.full_like(codes[..., : ar.pattern.max_delay], MASK)], dim=-1)
    with torch.no_grad():
        logits = ar(padded, states, mask).logits[:, stage, : codes.shape[-1]]  # [B, T, V]
    probs = torch.softmax(logits.double(), dim=-1)
    return torch.stack([torch.stack([probs[b, t, codes[b, stage, t]] for t in range(codes.shape[-1])])
                        for b in range(codes.shape[0])])


@pytest.mark.parametrize("scoring", ["max", "prod"])
def test_weight_zero_remasks_the_spans_the_rescorer_ranks_lowest(models, monkeypatch, scoring):
    magnet, ar = models
    states, mask = _text()
    rescorer = Spy(ARRescorer(ar, states, mask))
    seen = _magnet_inputs(magnet, monkeypatch)
    cfg = _config(rescore_weight=0.0, span_scoring=scoring)
    decode(magnet, states, mask, 24, cfg, rescorer=rescorer)  # 8 chunks of 3 frames
    assert len(rescorer.candidates) == sum(cfg.decoding_steps) and not any(rescorer.grad)
    checked = 0
    for j in range(1, 6):  # stage 0: step j re-masks from the candidate of step j - 1
        stage, candidate = rescorer.candidates[j - 1]
        previous_mask = seen[j - 1][:2, 0] == MASK  # the frames predicted at step j - 1 (cond rows)
        now_mask = seen[j][:2, 0] == MASK
        probs = _brute_force_probs(ar, states, mask, candidate, stage)  # [B, T]
        for b in range(2):
            chunks = [range(c * 3, c * 3 + 3) for c in range(8)]
            predicted = [c for c, frames in enumerate(chunks) if previous_mask[b, frames[0]]]
            if scoring == "max":
                score = {c: 1 - max(probs[b, t].item() for t in chunks[c]) for c in predicted}
            else:
                score = {c: sum(-probs[b, t].log().item() for t in chunks[c]) for c in predicted}
            count = int(now_mask[b].sum()) // 3
            expected = sorted(predicted, key=lambda c: -score[c])[:count]
            got = [c for c in range(8) if now_mask[b, c * 3]]
            assert sorted(expected) == got, (j, b, score)
            checked += 1
    assert checked == 10


def test_rescoring_changes_the_choice_and_fast_path_agrees(models):
    magnet, ar = models
    states, mask = _text()
    cfg = _config(span_arrangement="stride1")
    base = decode(magnet, states, mask, 24, cfg)
    plain = decode(magnet, states, mask, 24, cfg.replace(rescore_weight=0.3), rescorer=ARRescorer(ar, states, mask))
    assert not torch.equal(base, plain), "a sharp rescorer must change which spans are re-masked"
    fast = FastDecoder(magnet)
    for seed in (0, 1):  # the second call reuses the plan and reloads the rescorer's text
        s2, m2 = _text(seed=seed + 1)
        cfg2 = cfg.replace(rescore_weight=0.3, use_sampling=bool(seed))
        args = dict(generator=torch.Generator().manual_seed(seed))
        expected = decode(magnet, s2, m2, 24, cfg2, rescorer=ARRescorer(ar, s2, m2), **args)
        args = dict(generator=torch.Generator().manual_seed(seed))
        assert torch.equal(fast.decode(s2, m2, 24, cfg2, rescorer=ARRescorer(ar, s2, m2), **args), expected)


def test_rescoring_needs_a_compatible_rescorer(models):
    magnet, ar = models
    states, mask = _text()
    with pytest.raises(ValueError, match="needs a rescorer"):
        decode(magnet, states, mask, 12, _config(rescore_weight=0.5))
    other = ARTransformer(model_preset("tiny", dim=32, num_heads=4, num_layers=1, ffn_dim=64, codebook_size=V + 1,
                                       num_codebooks=K, text_dim=E)).eval()
    with pytest.raises(ValueError, match="same codec"):
        decode(magnet, states, mask, 12, _config(rescore_weight=0.5), rescorer=ARRescorer(other, states, mask))
    with pytest.raises(ValueError, match="rescore_weight"):
        DecodingConfig(rescore_weight=1.5)
