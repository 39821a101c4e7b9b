"""The autoregressive model: audiocraft's own teacher-forced logits reproduced (the shared fixture, made with
audiocraft from the real musicgen-small config), every released MusicGen config converted and checked against an
independent causal forward, causality proven by gradient and by perturbation, and the KV-cached forward equal to the
full one."""


import pytest
import torch
from support.audiocraft_files import MUSICGEN, lm_best_state, lm_state_dict_bin, tiny_xp_cfg
from support.paths import SHARED_FIXTURES
from support.tiny_releases import TINY, reference_logits, tiny_ar

import magnet_lightning
from magnet_lightning.checkpoint.audiocraft import from_audiocraft, read_audiocraft
from magnet_lightning.models.ar import ARTransformer
from magnet_lightning.models.kv_cache import KVCache

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURE = SHARED_FIXTURES / "audiocraft_musicgen" / "musicgen-small-public"


def test_teacher_forced_logits_equal_audiocraft_compute_predictions():
    parity = torch.load(FIXTURE / "parity.pt", weights_only=True)
    model = from_audiocraft(FIXTURE / "state_dict.bin")
    assert isinstance(model, ARTransformer) and model.pattern.delays == tuple(parity["delays"])
    assert model.special_token_id == parity["special_token_id"]
    with torch.no_grad():
        out = model(parity["codes"], parity["text_states"], parity["text_mask"].bool())
    ref, valid = parity["logits"], parity["logits_mask"]
    assert torch.equal(out.mask, valid)
    ours = out.logits[..., parity["vocab_index"]]
    assert torch.isnan(ours[~valid]).all() and torch.isnan(ref[~valid]).all()
    err = (ours[valid] - ref[valid]).abs()
    assert err.max() < 1e-5 and err.norm() / ref[valid].norm() < 1e-6, (err.max(), err.norm() / ref[valid].norm())


@pytest.mark.parametrize("name", MUSICGEN)
def test_released_musicgen_configs_convert_and_match_an_independent_causal_forward(tmp_path, name):
    cfg = tiny_xp_cfg(name, **TINY)
    state = lm_best_state(cfg, seed=3)
    ckpt = read_audiocraft(lm_state_dict_bin(tmp_path / "state_dict.bin", cfg, state))
    assert ckpt.metadata["family"] == "musicgen" and ckpt.metadata["delays"] == [0, 1, 2, 3]
    assert ckpt.metadata["decoding"] == {"use_sampling": True, "temperature": 1.0, "top_k": 250, "top_p": 0.0,
                                         "cfg_coef": 3.0, "two_step_cfg": False}
    assert ckpt.metadata["text_encoder"] == "t5-base" and ckpt.metadata["codec"] == "facebook/encodec_32khz"
    model = ckpt.build_model()
    assert isinstance(model, ARTransformer)
    assert (model.cfg.dim, model.cfg.num_layers, model.cfg.codebook_size, model.cfg.text_dim) == (32, 2, 2048, 768)
    codes = torch.randint(0, 2048, (2, 4, 9))
    t5 = torch.randn(2, 5, 768)
    mask = torch.tensor([[1] * 5, [1] * 2 + [0] * 3], dtype=torch.bool)
    with torch.no_grad():
        out = model(codes, t5, mask)
    sequence = model.pattern.build(codes, 2048, length=9)
    ref = reference_logits(state, sequence, t5, mask, 0, heads=TINY["num_heads"], causal=True)  # [B, K, S, V]
    expected, valid = model.pattern.revert_logits(ref)
    assert (out.logits[:, valid] - expected[:, valid]).norm() / expected[:, valid].norm() < 1e-5


def test_logit_at_step_s_depends_on_no_later_step_of_the_delayed_sequence():
    """Gradient of every output step (all K streams' logits, in a random projection so that nothing cancels) with
    respect to the embedded input steps: zero for later steps, non-zero for the step itself and earlier ones."""
    model = tiny_ar().double()
    steps = 10
    sequence = torch.randint(0, 17, (1, 4, steps))
    memory = model.prepare_text(torch.randn(1, 3, 8, dtype=torch.double), torch.ones(1, 3, dtype=torch.bool))
    x0 = model.embed(sequence).detach().requires_grad_(True)
    model.embed = lambda codes, positions=None: x0  # the graph starts at the embedded sequence
    logits = model.forward_sequence(sequence, memory)  # [1, K, S, V]
    projection = torch.randn(4, 16, dtype=torch.double)
    for s in range(steps):
        (grad,) = torch.autograd.grad((logits[0, :, s] * projection).sum(), x0, retain_graph=True)
        per_step = grad[0].abs().sum(-1)  # [S]
        assert (per_step[s + 1:] == 0).all(), s
        assert (per_step[: s + 1] > 0).all(), s


@pytest.mark.parametrize("delays", [(0, 1, 2, 3), (0, 2, 2, 3)])
def test_teacher_forced_logit_of_a_code_depends_only_on_codes_before_it_in_the_pattern(delays):
    """Code (k', t') sits at step t' + 1 + d_k'; the logit of code (k, t) is output t + d_k: it may depend on
    (k', t') only when t' + 1 + d_k' <= t + d_k (in particular never on itself)."""
    model = tiny_ar(delays).double()
    num_frames = 7
    codes = torch.randint(0, 16, (1, 4, num_frames))
    text, mask = torch.randn(1, 3, 8, dtype=torch.double), torch.ones(1, 3, dtype=torch.bool)
    d = torch.tensor(delays)
    with torch.no_grad():
        base = model(codes, text, mask)
        for k2 in range(4):
            for t2 in range(num_frames):
                other = codes.clone()
                other[0, k2, t2] = (other[0, k2, t2] + 1) % 16
                out = model(other, text, mask)
                changed = (out.logits - base.logits)[0].abs().amax(-1) > 1e-9  # [K, T] (NaN compares False)
                allowed = (torch.arange(num_frames)[None, :] + d[:, None]) >= t2 + 1 + delays[k2]
                assert not (changed & ~allowed).any(), (k2, t2)
                assert (changed == (allowed & base.mask[0])).all(), (k2, t2)


def test_kv_cached_steps_equal_the_full_causal_forward():
    model = tiny_ar()
    sequence = torch.randint(0, 17, (3, 4, 12))
    memory = model.prepare_text(torch.randn(3, 2, 8), torch.ones(3, 2, dtype=torch.bool))
    with torch.no_grad():
        full = model.forward_sequence(sequence, memory)
        cache = KVCache.for_model(model, rows=3, capacity=12)
        parts = [model.forward_cached(sequence[..., :5], memory, cache, torch.arange(5))]  # a prompt in one call
        for s in range(5, 12):
            parts.append(model.forward_cached(sequence[..., s:s + 1], memory, cache, torch.tensor([s])))
    torch.testing.assert_close(torch.cat(parts, dim=2), full, atol=1e-5, rtol=1e-5)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="3 delays"):
        tiny_ar((0, 1, 2))
    with pytest.raises(ValueError, match=r"\[B, 4, T\]"):
        tiny_ar()(torch.zeros(1, 3, 5, dtype=torch.long), torch.zeros(1, 1, 8), torch.ones(1, 1, dtype=torch.bool))


def test_public_names_resolve_to_the_models_package():
    from magnet_lightning.models.magnet import MagnetTransformer

    assert magnet_lightning.MagnetTransformer is MagnetTransformer
    assert magnet_lightning.ARTransformer is ARTransformer
    assert magnet_lightning.from_audiocraft is from_audiocraft
