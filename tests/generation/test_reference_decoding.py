"""Decoding is audiocraft's by default.

- The shared fixture: a tiny checkpoint exported by audiocraft and its greedy tokens (T=60, steps [5, 3, 3, 2],
  CFG 10 -> 1, temperature 3.0) for both span arrangements; plain loop and fast path reproduce them token for token.
- The 'stride1' span choice equals a plain loop re-reading of the reference's binary search (magnet_spec.md §7.3).
- Sampling draws from the reference's distributions (top-p kept while the mass before a token is <= p, top-k
  renormalised and ranked by its renormalised probability), checked by frequency.
- Each departure is an option that is off by default and changes what it says.
"""


import pytest
import torch
from support.paths import SHARED_FIXTURES

from magnet_lightning.checkpoint.audiocraft import from_audiocraft
from magnet_lightning.config import model_preset
from magnet_lightning.generation.fast import FastDecoder
from magnet_lightning.generation.magnet import continuation, decode
from magnet_lightning.generation.magnet_config import DecodingConfig
from magnet_lightning.generation.sampling import sample_tokens
from magnet_lightning.generation.spans import _stride1_reference, stage_schedule
from magnet_lightning.models.magnet import MagnetTransformer

FIXTURE = SHARED_FIXTURES / "audiocraft_decode"


@pytest.fixture(scope="module")
def reference():
    data = torch.load(FIXTURE / "decode.pt", weights_only=True)
    return from_audiocraft(FIXTURE / "state_dict.bin"), data


def _fixture_config(data, arrangement):
    return DecodingConfig(decoding_steps=tuple(data["decoding_steps"]), span_len=data["span_len"],
                          span_arrangement=arrangement, max_cfg_coef=data["max_cfg_coef"],
                          min_cfg_coef=data["min_cfg_coef"], temperature=data["temperature"],
                          use_sampling=data["use_sampling"])


@pytest.mark.parametrize("arrangement", ["nonoverlap", "stride1"])
@pytest.mark.parametrize("path", ["plain", "fast"])
def test_audiocraft_greedy_tokens_are_reproduced(reference, arrangement, path):
    model, data = reference
    config = _fixture_config(data, arrangement)
    args = (data["text_states"], data["text_mask"].bool(), data["frames"], config)
    tokens = decode(model, *args) if path == "plain" else FastDecoder(model).decode(*args)
    expected = data["tokens"][arrangement]
    assert tokens.shape == expected.shape == (3, 4, 60)
    assert int((tokens != expected).sum()) == 0


def test_each_departure_changes_the_fixture_tokens(reference):
    model, data = reference
    args = (data["text_states"], data["text_mask"].bool(), data["frames"])
    base = _fixture_config(data, "stride1")
    for change in ({"anneal_from_initial": True}, {"stride1_cover": "minimal"}):
        tokens = decode(model, *args, base.replace(**change))
        assert not torch.equal(tokens, data["tokens"]["stride1"]), change


def _plain_lps(scores, count, span_len):
    """The reference's least-probable-span search, as a loop over one item (an independent re-reading of §7.3)."""
    num_frames = scores.shape[-1]
    order = torch.argsort(scores.unfold(0, span_len, 1).sum(-1), descending=True).tolist()

    def union(u):
        mask = torch.zeros(num_frames, dtype=torch.bool)
        for start in order[:u]:
            mask[start:start + span_len] = True
        return mask

    target = max(count, span_len)
    lo, hi = target // span_len, target - span_len + 1
    mid = round(0.5 * (lo + hi))
    if mid in (lo, hi):
        return union(mid)
    while lo < mid < hi:
        mask = union(mid)
        lo, hi = (lo, mid) if mask.sum() > target else (mid, hi)
        mid = round(0.5 * (lo + hi))
    return mask


@pytest.mark.parametrize("seed", range(6))
def test_stride1_binary_search_equals_the_plain_loop(seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(60):
        frames = int(torch.randint(3, 80, (1,), generator=g))
        scores = torch.rand(3, frames, generator=g)
        scores = torch.where(torch.rand(3, frames, generator=g) < 0.4, -1e4, scores)  # decoded tokens
        counts = torch.randint(1, frames + 1, (3,), generator=g)
        ours = _stride1_reference(scores, counts, 3)
        for b in range(3):
            assert torch.equal(ours[b], _plain_lps(scores[b], int(counts[b]), 3))


def _frequencies(probs_row, draws, **filters):
    logits = probs_row.log().expand(draws, 1, -1)
    noise = torch.empty(draws, 1, probs_row.numel()).exponential_(generator=torch.Generator().manual_seed(0))
    tokens = sample_tokens(logits, torch.tensor(1.0), noise, **filters).tokens[:, 0]
    return torch.bincount(tokens, minlength=probs_row.numel()).double() / draws


def test_sampling_distributions_are_the_references():
    probs = torch.tensor([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
    # top-p 0.65: masses before each sorted token are 0, .4, .65, .8, ... -> the reference keeps those <= 0.65
    expected = torch.tensor([0.4, 0.25, 0.15, 0, 0, 0], dtype=torch.float64) / 0.8
    assert (_frequencies(probs, 40_000, top_p=0.65) - expected).abs().max() < 0.01
    expected_k = torch.tensor([0.4, 0.25, 0, 0, 0, 0], dtype=torch.float64) / 0.65
    assert (_frequencies(probs, 40_000, top_k=2) - expected_k).abs().max() < 0.01
    assert (_frequencies(probs, 40_000) - probs.double()).abs().max() < 0.01


def test_confidence_of_top_k_samples_is_renormalised_unless_asked():
    logits = torch.tensor([0.4, 0.25, 0.15, 0.2]).log().view(1, 1, 4)
    noise = torch.ones(1, 1, 4)  # the race then picks the most probable token
    ref = sample_tokens(logits, torch.tensor(1.0), noise, top_k=2)
    assert ref.tokens.item() == 0 and ref.confidence.item() == pytest.approx(0.4 / 0.65)
    raw = sample_tokens(logits, torch.tensor(1.0), noise, top_k=2, confidence_before_top_k=True)
    assert raw.confidence.item() == pytest.approx(0.4)
    nucleus = sample_tokens(logits, torch.tensor(1.0), noise, top_p=0.5)
    assert nucleus.confidence.item() == pytest.approx(0.4), "top-p samples keep the untruncated probability"


def test_greedy_tokens_are_the_argmax_of_the_guided_logits():
    logits = torch.tensor([[[1.0, 1.0 + 1e-6, 0.5]]])  # softmax at 0.01 would round the first two alike
    assert sample_tokens(logits, torch.tensor(0.0), None).tokens.item() == 1


def test_zero_temperature_still_samples_at_the_floor():
    logits = torch.tensor([[[0.0, 0.005]]]).expand(20_000, 1, 2)
    noise = torch.empty(20_000, 1, 2).exponential_(generator=torch.Generator().manual_seed(1))
    share = sample_tokens(logits, torch.tensor(0.0), noise).tokens.float().mean().item()
    assert share == pytest.approx(torch.sigmoid(torch.tensor(0.5)).item(), abs=0.02)  # softmax at t = 0.01


def test_both_filters_at_once_are_refused():
    with pytest.raises(ValueError, match="top_p and ignores top_k"):
        DecodingConfig(top_k=250, top_p=0.9)


def test_reference_temperature_schedule_and_its_option():
    cfg = DecodingConfig(decoding_steps=(5, 3, 3, 2), temperature=3.0)
    assert stage_schedule(5, torch.tensor([20]), cfg).temperature.tolist() == pytest.approx([2.4, 1.8, 1.2, 0.6, 0.0])
    start = stage_schedule(5, torch.tensor([20]), cfg.replace(anneal_from_initial=True)).temperature
    assert start.tolist() == pytest.approx([3.0, 2.25, 1.5, 0.75, 0.0])


def test_prompt_frames_show_every_stage_unless_masked_as_in_training(monkeypatch):
    torch.manual_seed(0)
    model = MagnetTransformer(model_preset("tiny", dim=16, num_heads=2, num_layers=1, ffn_dim=32, codebook_size=8,
                                           text_dim=4)).eval()
    seen = []
    original = model.forward_with_memory
    monkeypatch.setattr(model, "forward_with_memory",
                        lambda codes, *a, **k: seen.append(codes.clone()) or original(codes, *a, **k))
    prompt = torch.randint(0, 8, (1, 4, 6))
    given, fixed = continuation(prompt, 12, 8)
    config = DecodingConfig(decoding_steps=(2, 1, 1, 1))
    decode(model, None, None, 12, config, batch_size=1, given=given, fixed=fixed)
    assert torch.equal(seen[0][0, :, :6], prompt[0]), "the reference writes the prompt of every stage"
    seen.clear()
    decode(model, None, None, 12, config.replace(mask_upper_stages_in_prompt=True), batch_size=1, given=given,
           fixed=fixed)
    assert (seen[0][0, 1:, :6] == 8).all() and torch.equal(seen[0][0, 0, :6], prompt[0, 0])


def test_a_chunk_is_scored_over_all_its_frames_as_the_reference():
    from magnet_lightning.generation.spans import FIXED_SCORE, unit_scores

    confidence = torch.tensor([[0.9, 0.2, 0.3, 0.5, 0.4, 0.1, 0.7]])  # 7 frames: chunks of 3, 3 and 1
    masked = torch.tensor([[False, True, True, False, False, False, True]])  # frame 0 is a prompt frame
    maximum = unit_scores(confidence, masked, DecodingConfig(span_len=3))
    assert maximum[0, 0].item() == pytest.approx(1 - 0.9), "the prompt frame's probability counts, as in audiocraft"
    assert maximum[0, 1].item() == FIXED_SCORE and maximum[0, 2].item() == pytest.approx(1 - 0.7)
    product = unit_scores(confidence, masked, DecodingConfig(span_len=3, span_scoring="prod"))
    assert product[0, 0].item() == pytest.approx(-sum(torch.tensor([0.9, 0.2, 0.3]).log()).item(), rel=1e-5)
