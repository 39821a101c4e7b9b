"""MAGNeT iterative decoding on a tiny random model (CPU): schedule endpoints, monotone re-masking, constraints,
full length, seeds, unconditional generation, and the fast path's equality with the plain path."""

import pytest
import torch

from magnet_lightning.config import model_preset
from magnet_lightning.generation import magnet as decoding
from magnet_lightning.generation.fast import FastDecoder
from magnet_lightning.generation.magnet import continuation, decode, infilling
from magnet_lightning.generation.magnet_config import DecodingConfig, decoding_preset
from magnet_lightning.generation.spans import remask, stage_schedule, unit_scores
from magnet_lightning.models.magnet import MagnetTransformer

V, K, E = 16, 4, 8
MASK = V


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = model_preset("tiny", dim=32, num_heads=4, num_layers=2, ffn_dim=64, codebook_size=V, num_codebooks=K,
                       text_dim=E, subcodes_context=2, attention="sdpa")
    return MagnetTransformer(cfg).eval()


def text(batch=2, seq=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, seq, E, generator=g), torch.ones(batch, seq, dtype=torch.bool)


def config(**kw):
    return DecodingConfig(**{"decoding_steps": (4, 2, 2, 2), **kw})


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def record_inputs(model, monkeypatch):
    """Record the codes fed to the model at every step (MASK marks the positions being predicted)."""
    calls = []
    original = model.forward_with_memory

    def spy(codes, memory, stage, heads="stage"):
        logits = original(codes, memory, stage, heads)
        calls.append((stage, codes.clone(), logits.float().clone()))
        return logits

    monkeypatch.setattr(model, "forward_with_memory", spy)
    return calls


ARRANGEMENTS = [("nonoverlap", "max"), ("nonoverlap", "prod"), ("stride1", "max")]


@pytest.mark.parametrize("arrangement,scoring", ARRANGEMENTS)
@pytest.mark.parametrize("num_frames", [31, 2])
def test_full_length_and_no_mask_after_each_stage(model, arrangement, scoring, num_frames):
    # 31 and 2 frames are not multiples of the span (3): the reference would trim; we return every frame.
    stages = []
    out = decode(model, *text(), num_frames, config(span_arrangement=arrangement, span_scoring=scoring),
                 generator=seeded(), on_stage_end=lambda k, codes: stages.append((k, codes.clone())))
    assert out.shape == (2, K, num_frames)
    assert [k for k, _ in stages] == list(range(K))
    for k, codes in stages:
        assert not (codes[:, : k + 1] == MASK).any(), f"MASK left in stages <= {k}"
        assert (codes[:, k + 1:] == MASK).all(), f"stages above {k} must stay MASK while decoding {k}"
    assert ((out >= 0) & (out < V)).all()


MONOTONE = [("nonoverlap", "max", "reference"), ("nonoverlap", "prod", "reference"), ("stride1", "max", "minimal")]


@pytest.mark.parametrize("arrangement,scoring,cover", MONOTONE)
def test_remasking_is_monotone_and_fixed_tokens_never_change(model, monkeypatch, arrangement, scoring, cover):
    calls = record_inputs(model, monkeypatch)
    cfg = config(decoding_steps=(6, 3, 3, 3), span_arrangement=arrangement, span_scoring=scoring, stride1_cover=cover)
    out = decode(model, *text(), 31, cfg, generator=seeded())
    assert len(calls) == sum(cfg.decoding_steps)
    index = 0
    for stage, steps in enumerate(cfg.decoding_steps):
        masks = [calls[index + j][1][:2, stage] == MASK for j in range(steps)]  # cond rows, [B, T]
        inputs = [calls[index + j][1][:2, stage] for j in range(steps)]
        index += steps
        assert masks[0].all(), "the first step of a stage predicts every frame"
        for j in range(1, steps):
            assert not (masks[j] & ~masks[j - 1]).any(), "a frame fixed at an earlier step was re-masked"
            assert masks[j].sum() < masks[j - 1].sum() or masks[j].sum() <= cfg.span_len
        # Every token not masked at step j already has its final value: once fixed, never re-predicted.
        for j in range(steps):
            kept = ~masks[j]
            assert torch.equal(inputs[j][kept], out[:, stage][kept])
        assert 1 <= masks[-1].sum(dim=-1).max() <= cfg.span_len, "the last step re-predicts about one span"


def test_reference_stride1_masks_unions_of_spans_and_keeps_unmasked_tokens(model, monkeypatch):
    # The reference's binary search may re-mask a token decoded earlier, but every step masks a union of whole
    # spans and every token it leaves unmasked keeps its value at that step.
    calls = record_inputs(model, monkeypatch)
    cfg = config(decoding_steps=(6, 3, 3, 3), span_arrangement="stride1")
    decode(model, *text(), 31, cfg, generator=seeded())
    for j in range(1, 6):
        before, now = calls[j - 1][1][:2, 0], calls[j][1][:2, 0]
        masked = now == MASK
        full = masked.unfold(1, 3, 1).all(dim=-1).float()  # window starting at s fully masked
        covered = torch.nn.functional.max_pool1d(torch.nn.functional.pad(full[:, None], (2, 2)), 3, 1)[:, 0]
        assert (covered.bool() | ~masked).all(), "isolated masked tokens: not a union of spans"
        assert masked.any(dim=1).all()
        written = before != MASK
        assert torch.equal(now[written & ~masked], before[written & ~masked]) or j == 1


def test_nonoverlap_masks_follow_the_schedule(model, monkeypatch):
    calls = record_inputs(model, monkeypatch)
    cfg = config(decoding_steps=(8, 2, 2, 2))
    decode(model, *text(batch=1), 30, cfg, generator=seeded())  # 10 chunks of 3 frames
    sched = stage_schedule(8, torch.tensor([10]), cfg)
    masked_chunks = [(c[1][0, 0] == MASK).view(10, 3) for c in calls[:8]]
    for j, chunks in enumerate(masked_chunks):
        assert (chunks.all(dim=1) | ~chunks.any(dim=1)).all(), "whole chunks are re-masked"
        assert chunks.all(dim=1).sum() == sched.mask_counts[j, 0]


def test_schedule_endpoints():
    cfg = DecodingConfig(decoding_steps=(20, 10, 10, 10), max_cfg_coef=10.0, min_cfg_coef=1.0, temperature=3.0)
    sched = stage_schedule(20, torch.tensor([167, 3]), cfg)
    assert sched.cfg_coef[0] == 10.0 and abs(sched.cfg_coef[-1] - 1.0) < 1e-6
    # The reference's temperature: T0 * steps_left / s, so it starts below T0 and ends at 0.
    torch.testing.assert_close(sched.temperature, 3.0 * torch.arange(19, -1, -1) / 20, rtol=0, atol=1e-6)
    assert (sched.cfg_coef.diff() <= 0).all() and (sched.temperature.diff() < 0).all()
    assert sched.mask_counts[0].tolist() == [167, 3] and sched.mask_counts[-1].tolist() == [1, 1]
    assert (sched.mask_counts.diff(dim=0) <= 0).all()
    from_t0 = stage_schedule(20, torch.tensor([4]), cfg.replace(anneal_from_initial=True))
    assert from_t0.temperature[0] == 3.0 and from_t0.temperature[-1] == 0.0
    flat = stage_schedule(5, torch.tensor([4]), cfg.replace(anneal_temperature=False))
    assert (flat.temperature == 3.0).all()
    none_free = stage_schedule(5, torch.tensor([0]), cfg)
    assert (none_free.mask_counts == 0).all()


def test_mask_counts_truncate_the_float32_rate_as_the_reference():
    # tau = 2/3 gives cos(pi / 3): exactly 0.5 in real numbers, 0.49999997 in the reference's float32, so 20 units
    # give 9 masked units there (and 10 in float64).
    cfg = DecodingConfig(decoding_steps=(10, 10, 10, 10))
    sched = stage_schedule(10, torch.tensor([20]), cfg)
    gamma = torch.cos(torch.linspace(0, 1, 10)[6] * torch.pi * 0.5)
    assert float(gamma) < 0.5 and sched.mask_counts[6, 0] == int(float(gamma) * 20) == 9


def test_cfg_and_temperature_used_at_first_and_last_step(model, monkeypatch):
    calls = record_inputs(model, monkeypatch)
    temps, mixed = [], []
    original = decoding.sample_tokens

    def spy(logits, temperature, noise, *args):
        temps.append(float(temperature))
        mixed.append(logits.clone())
        return original(logits, temperature, noise, *args)

    monkeypatch.setattr(decoding, "sample_tokens", spy)
    cfg = config(max_cfg_coef=7.0, min_cfg_coef=1.5, temperature=2.5)
    decode(model, *text(), 12, cfg, generator=seeded())
    first, last = 0, cfg.decoding_steps[0] - 1
    steps = cfg.decoding_steps[0]
    assert temps[first] == pytest.approx(2.5 * (steps - 1) / steps) and temps[last] == 0.0
    for step, coef in ((first, 7.0), (last, 1.5)):
        logits = calls[step][2]
        cond, null = logits[:2], logits[2:]
        assert calls[step][1].shape[0] == 4, "cond and null rows are batched together"
        torch.testing.assert_close(mixed[step], null + coef * (cond - null))


def test_same_seed_same_tokens(model):
    cfg = config(top_k=5, top_p=0.0)
    a = decode(model, *text(), 20, cfg, generator=seeded(3))
    b = decode(model, *text(), 20, cfg, generator=seeded(3))
    c = decode(model, *text(), 20, cfg, generator=seeded(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_prompt_tokens_are_kept(model):
    prompt = torch.randint(0, V, (2, K, 7))  # 7 frames: not a multiple of the span
    given, fixed = continuation(prompt, 20, MASK)
    for arrangement in ("nonoverlap", "stride1"):
        out = decode(model, *text(), 20, config(span_arrangement=arrangement), given=given, fixed=fixed,
                     generator=seeded())
        assert torch.equal(out[..., :7], prompt)
        assert not (out == MASK).any()


def test_infilling_changes_only_the_range(model):
    original = decode(model, *text(), 24, config(), generator=seeded(1))
    given, fixed = infilling(original, 8, 17)
    for arrangement in ("nonoverlap", "stride1"):
        out = decode(model, *text(seed=9), 24, config(span_arrangement=arrangement), given=given, fixed=fixed,
                     generator=seeded(2))
        assert torch.equal(out[..., :8], original[..., :8]) and torch.equal(out[..., 17:], original[..., 17:])
        assert not torch.equal(out[..., 8:17], original[..., 8:17]), "the range was not regenerated"
        assert not (out == MASK).any()


def test_constraints_are_checked(model):
    given, fixed = continuation(torch.randint(0, V, (2, K, 4)), 10, MASK)
    given[0, 0, 0] = MASK
    with pytest.raises(ValueError, match="fixed frames"):
        decode(model, *text(), 10, config(), given=given, fixed=fixed)
    with pytest.raises(ValueError, match="both"):
        decode(model, *text(), 10, config(), given=given)
    with pytest.raises(ValueError, match="more than"):
        continuation(torch.zeros(1, K, 12, dtype=torch.long), 10, MASK)
    with pytest.raises(ValueError, match="infill range"):
        infilling(torch.zeros(1, K, 10, dtype=torch.long), 5, 11)


def test_unconditional_generation_has_no_null_batch(model, monkeypatch):
    calls = record_inputs(model, monkeypatch)
    out = decode(model, None, None, 13, config(), batch_size=3, generator=seeded())
    assert out.shape == (3, K, 13) and not (out == MASK).any()
    assert all(c[1].shape[0] == 3 for c in calls)
    with pytest.raises(ValueError, match="batch_size"):
        decode(model, None, None, 13, config())


def test_decoding_steps_must_match_codebooks(model):
    with pytest.raises(ValueError, match="4 codebooks"):
        decode(model, *text(), 10, DecodingConfig(decoding_steps=(20, 10, 10)))
    with pytest.raises(ValueError, match="span_arrangement"):
        DecodingConfig(span_arrangement="overlap")


def test_presets():
    music, audio = decoding_preset("music", 10.0), decoding_preset("audio", 10.0)
    assert music.decoding_steps == (20, 10, 10, 10) and decoding_preset("music", 30.0).decoding_steps[0] == 60
    assert (audio.top_p, audio.temperature, audio.max_cfg_coef) == (0.8, 3.5, 20.0)
    assert (music.top_p, music.temperature, music.max_cfg_coef) == (0.9, 3.0, 10.0)
    assert decoding_preset("audio", top_p=0.5).top_p == 0.5
    with pytest.raises(ValueError, match="preset"):
        decoding_preset("speech")


def test_greedy_decoding_is_deterministic_without_generator(model):
    cfg = config(use_sampling=False)
    torch.manual_seed(1)
    a = decode(model, *text(), 15, cfg)
    torch.manual_seed(2)
    assert torch.equal(a, decode(model, *text(), 15, cfg))


@pytest.mark.parametrize("arrangement,scoring", ARRANGEMENTS)
def test_fast_path_equals_plain_path(model, arrangement, scoring):
    fast = FastDecoder(model)  # CPU: static buffers, step run eagerly
    assert not fast.cuda_graphs
    given, fixed = continuation(torch.randint(0, V, (2, K, 5)), 23, MASK)
    for seed, filters in ((0, {"top_k": 6, "top_p": 0.0}), (1, {}), (2, {"use_sampling": False})):
        cfg = config(span_arrangement=arrangement, span_scoring=scoring, **filters)
        plain = decode(model, *text(seed=seed), 23, cfg, generator=seeded(seed), given=given, fixed=fixed)
        fast_out = fast.decode(*text(seed=seed), 23, cfg, generator=seeded(seed), given=given, fixed=fixed)
        assert torch.equal(plain, fast_out)
    fast_out = fast.decode(*text(seed=2), 23, cfg, given=given, fixed=fixed)  # cached greedy buffers reused
    assert torch.equal(plain, fast_out)
    cfg = config(span_arrangement=arrangement, span_scoring=scoring)
    uncond = decode(model, None, None, 23, cfg, batch_size=2, generator=seeded(5))
    assert torch.equal(uncond, fast.decode(None, None, 23, cfg, batch_size=2, generator=seeded(5)))


def test_minimal_stride1_covers_at_least_the_count_with_spans():
    g = torch.Generator().manual_seed(0)
    cfg = DecodingConfig(span_arrangement="stride1", span_len=3, stride1_cover="minimal")
    fixed = torch.zeros(3, 40, dtype=torch.bool)
    fixed[1, :10] = True
    scores = unit_scores(torch.rand(3, 40, generator=g), ~fixed, cfg)
    counts = torch.tensor([7, 12, 1])
    masked = remask(scores, counts, fixed, cfg)
    assert (masked.sum(dim=1) >= counts).all() and (masked.sum(dim=1) < counts + 3).all()
    assert not (masked & fixed).any()
    # Every masked frame lies in a fully masked window of span length (a union of spans, not isolated tokens).
    full = masked.unfold(1, 3, 1).all(dim=-1).float()  # [B, 38]: window starting at s fully masked
    covered = torch.nn.functional.max_pool1d(torch.nn.functional.pad(full[:, None], (2, 2)), 3, 1)[:, 0]  # [B, 40]
    assert (covered.bool() | ~masked).all()


@pytest.mark.gpu
def test_cuda_graph_path_matches_eager_fast_path(model):
    cuda_model = MagnetTransformer(model.cfg).cuda().eval()
    cuda_model.load_state_dict(model.state_dict())
    cfg = config()
    states, mask = (t.cuda() for t in text())
    graphed = FastDecoder(cuda_model, dtype=torch.float32, autocast=False)
    eager = FastDecoder(cuda_model, cuda_graphs=False, dtype=torch.float32, autocast=False)
    def gen():
        return torch.Generator("cuda").manual_seed(0)
    a = graphed.decode(states, mask, 31, cfg, generator=gen())
    b = graphed.decode(states, mask, 31, cfg, generator=gen())  # replay of captured graphs
    c = eager.decode(states, mask, 31, cfg, generator=gen())
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not (a == MASK).any()
    fast_bf16 = FastDecoder(cuda_model, compile=False)  # defaults on CUDA: graphs, bf16 weights, autocast
    for arrangement in ("nonoverlap", "stride1"):
        out = fast_bf16.decode(states, mask, 31, config(span_arrangement=arrangement), generator=gen())
        assert out.shape == (2, K, 31) and ((out >= 0) & (out < V)).all()
        assert torch.equal(out, fast_bf16.decode(states, mask, 31, config(span_arrangement=arrangement),
                                                 generator=gen()))
