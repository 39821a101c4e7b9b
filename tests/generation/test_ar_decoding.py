"""Autoregressive decoding: audiocraft's greedy CFG tokens reproduced exactly (the shared fixture: 30 frames, and
the continuation of a 7-frame prompt), the KV-cached loop equal to the uncached one token for token, prompts kept,
the full length returned, and the sampling rules (greedy limits, seeds) of the reference."""


import pytest
import torch
from support.paths import SHARED_FIXTURES
from support.tiny_releases import tiny_ar

from magnet_lightning.checkpoint.audiocraft import from_audiocraft
from magnet_lightning.generation.autoregressive import ARDecodingConfig, generate

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURE = SHARED_FIXTURES / "audiocraft_musicgen" / "musicgen-small-public"
GREEDY_CFG3 = ARDecodingConfig(use_sampling=False, cfg_coef=3.0)


@pytest.fixture(scope="module")
def reference():
    return from_audiocraft(FIXTURE / "state_dict.bin"), torch.load(FIXTURE / "generate.pt", weights_only=True)


@pytest.mark.parametrize("cache", [True, False])
def test_greedy_cfg_generation_equals_audiocraft_tokens(reference, cache):
    model, ref = reference
    assert ref["max_gen_len"] == 30 and ref["cfg_coef"] == 3.0 and not ref["use_sampling"] and not ref["two_step_cfg"]
    tokens = generate(model, ref["text_states"], ref["text_mask"].bool(), 30, GREEDY_CFG3, cache=cache)
    assert torch.equal(tokens, ref["tokens"]), int((tokens != ref["tokens"]).sum())


@pytest.mark.parametrize("cache", [True, False])
def test_greedy_continuation_equals_audiocraft_tokens(reference, cache):
    model, ref = reference
    cont = ref["continuation"]
    tokens = generate(model, ref["text_states"], ref["text_mask"].bool(), 30, GREEDY_CFG3, prompt=cont["prompt"],
                      cache=cache)
    assert torch.equal(tokens, cont["tokens"]), int((tokens != cont["tokens"]).sum())


CASES = {
    "greedy_cfg": dict(config=ARDecodingConfig(use_sampling=False), text=True, prompt=0),
    "topk_cfg_prompt": dict(config=ARDecodingConfig(top_k=5), text=True, prompt=4),
    "topp_uncond": dict(config=ARDecodingConfig(top_p=0.8, temperature=1.3), text=False, prompt=0),
    "plain_no_cfg_prompt": dict(config=ARDecodingConfig(top_k=0, cfg_coef=1.0), text=True, prompt=9),
}


def _inputs(case, model, batch=3, frames=14):
    g = torch.Generator().manual_seed(5)
    states = mask = None
    if case["text"]:
        states = torch.randn(batch, 4, model.cfg.text_dim, generator=g)
        mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    prompt = torch.randint(0, model.cfg.codebook_size, (batch, model.cfg.num_codebooks, case["prompt"]), generator=g)
    return states, mask, frames, prompt if case["prompt"] else None


@pytest.mark.parametrize("name", sorted(CASES))
def test_kv_cached_generation_equals_uncached_generation_token_for_token(name):
    case = CASES[name]
    model = tiny_ar(delays=(0, 1, 2, 3))
    states, mask, frames, prompt = _inputs(case, model)
    runs = {}
    for cache in (True, False):
        generator = torch.Generator().manual_seed(11)
        runs[cache] = generate(model, states, mask, frames, case["config"], prompt, batch_size=3, generator=generator,
                               cache=cache)
    assert torch.equal(runs[True], runs[False])
    tokens = runs[True]
    assert tokens.shape == (3, 4, frames) and tokens.dtype == torch.long
    assert ((tokens >= 0) & (tokens < model.cfg.codebook_size)).all()
    if prompt is not None:
        assert torch.equal(tokens[..., : prompt.shape[-1]], prompt)


def test_greedy_limits_of_sampling_give_the_greedy_tokens():
    model = tiny_ar()
    states, mask, frames, _ = _inputs(CASES["greedy_cfg"], model)
    greedy = generate(model, states, mask, frames, ARDecodingConfig(use_sampling=False))
    for config in (ARDecodingConfig(top_k=1), ARDecodingConfig(top_p=1e-6), ARDecodingConfig(temperature=0.0)):
        sampled = generate(model, states, mask, frames, config, generator=torch.Generator().manual_seed(0))
        assert torch.equal(sampled, greedy), config


def test_seeds_reproduce_and_differ():
    model = tiny_ar()
    states, mask, frames, _ = _inputs(CASES["topk_cfg_prompt"], model)

    def run(seed):
        return generate(model, states, mask, frames, ARDecodingConfig(), generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))


def test_guidance_changes_the_tokens_and_progress_counts_every_step():
    model = tiny_ar()
    states, mask, frames, _ = _inputs(CASES["greedy_cfg"], model)
    calls = []
    guided = generate(model, states, mask, frames, ARDecodingConfig(use_sampling=False),
                      progress=lambda done, total: calls.append((done, total)))
    plain = generate(model, states, mask, frames, ARDecodingConfig(use_sampling=False, cfg_coef=1.0))
    assert not torch.equal(guided, plain)
    steps = frames + 3  # T + max_delay steps after the start token
    assert calls == [(i, steps) for i in range(1, steps + 1)]


def test_bad_inputs_are_named():
    model = tiny_ar()
    with pytest.raises(ValueError, match="more than the 5"):
        generate(model, None, None, 5, prompt=torch.zeros(1, 4, 6, dtype=torch.long), batch_size=1)
    with pytest.raises(ValueError, match=r"prompt codes must be in \[0, 16\)"):
        generate(model, None, None, 5, prompt=torch.full((1, 4, 2), 16), batch_size=1)
    with pytest.raises(ValueError, match=r"prompt must be integer codes \[2, 4, Tp\]"):
        generate(model, None, None, 5, prompt=torch.zeros(1, 4, 2, dtype=torch.long), batch_size=2)
    with pytest.raises(ValueError, match="temperature"):
        ARDecodingConfig(temperature=-1.0)


@pytest.mark.parametrize("top_k,top_p", [(3, 0.0), (0, 0.6), (0, 0.0)])
def test_sampling_draws_from_the_reference_distribution(top_k, top_p):
    """softmax(logits / T), then top-p when top_p > 0 (keep while the mass before a token is <= p), else top-k (keep
    the k most probable): audiocraft's sample_top_p / sample_top_k, renormalised."""
    from magnet_lightning.generation.sampling import draw_noise, sample_next_tokens

    logits = torch.tensor([2.0, 1.5, 0.3, 0.1, -1.0])
    probs = torch.softmax(logits / 0.7, dim=-1)
    if top_p:
        keep = (probs.cumsum(0) - probs) <= top_p  # probs are already sorted
    else:
        keep = torch.arange(5) < (top_k or 5)
    expected = probs * keep / (probs * keep).sum()
    draws = 40000
    noise = draw_noise((draws, 5), torch.Generator().manual_seed(0), torch.device("cpu"))
    tokens = sample_next_tokens(logits.expand(draws, -1), 0.7, noise, top_k, top_p)
    freq = torch.bincount(tokens, minlength=5).float() / draws
    assert (freq[~keep] == 0).all()
    torch.testing.assert_close(freq, expected, atol=0.01, rtol=0)
