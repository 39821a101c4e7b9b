"""Long-form generation by windowed extension: audiocraft's own extension tokens reproduced (the shared fixture), the
window arithmetic of the reference's loop, exact output lengths, no seam regenerated (every window's given frames
are the previous window's tail, kept as they were), MAGNeT long-form equal to chained continuation calls, infilling
inside one window of a longer clip, one progress bar over every window, and the errors."""


import pytest
import torch
from support.paths import SHARED_FIXTURES
from support.tiny_releases import tiny_ar

from magnet_lightning.checkpoint.audiocraft import from_audiocraft
from magnet_lightning.config import model_preset
from magnet_lightning.generation import autoregressive, hybrid_magnet, long_form, magnet
from magnet_lightning.generation.autoregressive import ARDecodingConfig
from magnet_lightning.generation.magnet import continuation, decode, infilling
from magnet_lightning.generation.magnet_config import DecodingConfig
from magnet_lightning.models.hybrid import HybridMagnetTransformer
from magnet_lightning.models.magnet import MagnetTransformer

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURE = SHARED_FIXTURES / "audiocraft_musicgen" / "musicgen-small-public"
V, K, E = 16, 4, 8
STEPS = DecodingConfig(decoding_steps=(3, 2, 1, 1))


def _tiny(cls):
    torch.manual_seed(0)
    return cls(model_preset("tiny", dim=32, num_heads=4, num_layers=2, ffn_dim=64, codebook_size=V, num_codebooks=K,
                            text_dim=E, subcodes_context=2)).eval()


@pytest.fixture(scope="module")
def models():
    return {"magnet": _tiny(MagnetTransformer), "ar": tiny_ar(),
            "hybrid": _tiny(HybridMagnetTransformer)}


def _text(batch=2):
    g = torch.Generator().manual_seed(3)
    return torch.randn(batch, 3, E, generator=g), torch.ones(batch, 3, dtype=torch.bool)


def _seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def reference_loop(total, window, stride, prompt_len):
    """audiocraft `_generate_tokens`' loop in frames, written independently: (start, length, prompt) per window."""
    out, offset, plen = [], 0, prompt_len
    if total <= window:
        return [(0, total, prompt_len)]
    while offset + plen < total:
        gen_len = min(total - offset, window)
        out.append((offset, gen_len, plen))
        plen, offset = gen_len - stride, offset + stride
    return out


@pytest.mark.parametrize("total,window,stride,prompt", [
    (34, 12, 7, 0), (29, 12, 8, 4), (12, 12, 5, 0), (13, 12, 11, 0), (100, 10, 1, 3), (1500, 500, 300, 0),
    (9000, 1500, 900, 0), (9001, 1500, 900, 149), (7, 12, 4, 7)])
def test_windows_are_the_reference_loop_and_cover_exactly_the_length(total, window, stride, prompt):
    windows = long_form.plan_windows(total, window, stride, prompt)
    assert [(w.start, w.length, w.prompt) for w in windows] == reference_loop(total, window, stride, prompt)
    assert windows[-1].end == total and len(windows) == long_form.num_windows(total, window, stride)
    assert prompt + sum(w.length - w.prompt for w in windows) == total  # new frames + prompt = T, nothing twice
    for before, after in zip(windows, windows[1:]):
        assert after.start == before.start + stride and after.prompt == before.end - after.start > 0


@pytest.mark.parametrize("name", ["scratch", "prompted"])
def test_autoregressive_extension_equals_audiocraft_tokens(name):
    ref = torch.load(FIXTURE / "extend.pt", weights_only=True)
    case = ref["cases"][name]
    model = from_audiocraft(FIXTURE / "state_dict.bin")
    config = ARDecodingConfig(use_sampling=ref["use_sampling"], cfg_coef=ref["cfg_coef"], top_k=ref["top_k"])
    tokens = autoregressive.generate(model, case["text_states"], case["text_mask"].bool(), case["total_frames"],
                                     config, case["prompt"], window_frames=case["window_frames"],
                                     stride_frames=case["stride_frames"])
    assert len(long_form.plan_windows(case["total_frames"], case["window_frames"], case["stride_frames"],
                                      0 if case["prompt"] is None else case["prompt"].shape[-1])) == case["windows"]
    assert torch.equal(tokens, case["tokens"]), int((tokens != case["tokens"]).sum())


def _spy(monkeypatch, module, name):
    """Record (kwargs, output) of every window call the windowed decoder makes to module.name."""
    calls, original = [], getattr(module, name)

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append((args, kwargs, out.clone()))
        return out

    monkeypatch.setattr(module, name, spy)
    return original, calls


def _window_prompt(family, args, kwargs):
    if family == "magnet":
        given, fixed = kwargs["given"], kwargs["fixed"]
        return None if fixed is None else given[..., : long_form.leading_prompt(fixed)]
    return kwargs.get("prompt", args[5] if family == "ar" and len(args) > 5 else None)


FAMILIES = {
    "magnet": (magnet, "decode", lambda m, t, n, **kw: (m, *t, n, STEPS), {}),
    "ar": (autoregressive, "generate", lambda m, t, n, **kw: (m, *t, n, ARDecodingConfig(top_k=4)), {}),
    "hybrid": (hybrid_magnet, "generate", lambda m, t, n, **kw: (m, *t, n, 5, STEPS, ARDecodingConfig(top_k=4)), {}),
}


@pytest.mark.parametrize("family", ["magnet", "ar", "hybrid"])
@pytest.mark.parametrize("total,window,stride,prompt", [(40, 16, 10, 0), (33, 16, 5, 3), (16, 16, 9, 0)])
def test_no_seam_is_regenerated_and_the_length_is_exact(models, monkeypatch, family, total, window, stride, prompt):
    module, name, args, _ = FAMILIES[family]
    model = models["ar" if family == "ar" else family]
    user = torch.randint(0, V, (2, K, prompt)) if prompt else None
    kwargs = {"generator": _seeded(), "window_frames": window, "stride_frames": stride}
    if family == "magnet" and user is not None:
        kwargs["given"], kwargs["fixed"] = continuation(user, total, V)
    elif user is not None:
        kwargs["prompt"] = user
    original, calls = _spy(monkeypatch, module, name)
    tokens = original(*args(model, _text(), total), **kwargs)
    windows = long_form.plan_windows(total, window, stride, prompt)
    assert tokens.shape == (2, K, total) and len(calls) == len(windows)
    assert bool(((tokens >= 0) & (tokens < V)).all())
    if user is not None:
        assert torch.equal(tokens[..., :prompt], user)
    for w, (call_args, call_kwargs, out) in zip(windows, calls):
        assert out.shape[-1] == w.length
        assert torch.equal(out, tokens[..., w.start:w.end])  # every kept frame is the window's, none redone
        given = _window_prompt(family, call_args, call_kwargs)
        assert (0 if given is None else given.shape[-1]) == w.prompt
        if w.index > 0:  # the window's given frames are the previous window's frames from the stride on
            previous = calls[w.index - 1][2]
            assert torch.equal(given, previous[..., stride:]) and torch.equal(out[..., : w.prompt], given)


@pytest.mark.parametrize("prompt", [0, 4])
def test_magnet_long_form_equals_chained_continuation_calls(models, prompt):
    model, (states, mask), total, window, stride = models["magnet"], _text(), 45, 15, 9
    user = torch.randint(0, V, (2, K, prompt))
    given, fixed = continuation(user, total, V)
    tokens = decode(model, states, mask, total, STEPS, given=given, fixed=fixed, generator=_seeded(7),
                    window_frames=window, stride_frames=stride)
    g = _seeded(7)
    chained = decode(model, states, mask, window, STEPS, generator=g, **dict(zip(("given", "fixed"),
                                                                              continuation(user, window, V))))
    out, start = chained, 0
    while start + window < total:  # each call continues the last window - stride frames
        start += stride
        frames = min(total - start, window)
        out = decode(model, states, mask, frames, STEPS, generator=g,
                     **dict(zip(("given", "fixed"), continuation(out[..., stride:], frames, V))))
        chained = torch.cat([chained, out[..., window - stride:]], dim=-1)
    assert chained.shape[-1] == total and torch.equal(tokens, chained)


def test_within_one_window_nothing_changes(models):
    model, (states, mask) = models["magnet"], _text()
    plain = decode(model, states, mask, 20, STEPS, generator=_seeded(1))
    assert torch.equal(decode(model, states, mask, 20, STEPS, generator=_seeded(1), window_frames=20,
                              stride_frames=12), plain)
    ar = models["ar"]
    plain = autoregressive.generate(ar, states, mask, 20, ARDecodingConfig(), generator=_seeded(1))
    assert torch.equal(autoregressive.generate(ar, states, mask, 20, ARDecodingConfig(), generator=_seeded(1),
                                               window_frames=24, stride_frames=12), plain)


def test_infilling_a_long_clip_decodes_one_window_around_the_region(models, monkeypatch):
    model, (states, mask) = models["magnet"], _text()
    clip = torch.randint(0, V, (2, K, 50))
    original, calls = _spy(monkeypatch, magnet, "decode")
    given, fixed = infilling(clip, 30, 38)
    tokens = original(model, states, mask, 50, STEPS, given=given, fixed=fixed, generator=_seeded(),
                      window_frames=16, stride_frames=8)
    assert len(calls) == 1 and calls[0][0][3] == 16  # one window of W frames
    assert torch.equal(tokens[..., :30], clip[..., :30]) and torch.equal(tokens[..., 38:], clip[..., 38:])
    assert not torch.equal(tokens[..., 30:38], clip[..., 30:38])
    given, fixed = infilling(clip, 10, 27)
    with pytest.raises(ValueError, match="spans 17 frames, more than one window"):
        original(model, states, mask, 50, STEPS, given=given, fixed=fixed, window_frames=16, stride_frames=8)


@pytest.mark.parametrize("family", ["magnet", "ar", "hybrid"])
def test_one_progress_bar_counts_every_window(models, family):
    module, name, args, _ = FAMILIES[family]
    model, seen = models["ar" if family == "ar" else family], []
    getattr(module, name)(*args(model, _text(), 40), generator=_seeded(), window_frames=16, stride_frames=10,
                          progress=lambda done, total: seen.append((done, total)))
    dones, totals = [d for d, _ in seen], {t for _, t in seen}
    assert len(totals) == 1 and dones == sorted(dones) and dones[-1] == totals.pop() == len(seen)


def test_bad_windows_are_named(models):
    model, (states, mask) = models["ar"], _text()
    with pytest.raises(ValueError, match="shorter than the window"):
        autoregressive.generate(model, states, mask, 40, window_frames=16, stride_frames=16)
    with pytest.raises(ValueError, match="not shorter than one window"):
        autoregressive.generate(model, states, mask, 40, prompt=torch.zeros(2, K, 16, dtype=torch.long),
                                window_frames=16, stride_frames=8)
    with pytest.raises(ValueError, match="needs both"):
        decode(models["magnet"], states, mask, 40, STEPS, window_frames=16)


def test_fast_decoder_long_form_equals_the_plain_one(models):
    from magnet_lightning.generation.fast import FastDecoder

    model, (states, mask) = models["magnet"], _text()
    user = torch.randint(0, V, (2, K, 5))
    given, fixed = continuation(user, 40, V)
    kwargs = dict(given=given, fixed=fixed, window_frames=16, stride_frames=10)
    plain = decode(model, states, mask, 40, STEPS, generator=_seeded(2), **kwargs)
    fast = FastDecoder(model).decode(states, mask, 40, STEPS, generator=_seeded(2), **kwargs)
    assert torch.equal(fast, plain)
