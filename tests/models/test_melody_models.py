"""Melody conditioning for every family: a tiny model trained on batches whose codes follow their chroma learns to
read it (its loss is low with its own chroma, high with another item's), and its generations follow a given chroma
wherever it decodes: from scratch, continuing a prompt, infilling, and past its segment in long-form windows (each
window reads its own frames' chroma). MAGNeT and Hybrid-MAGNeT take the chroma per frame, the autoregressive family
prepended (MusicGen-melody's fusion)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from support.helpers import loader, trainer
from support.melody_files import MelodyBatches, chroma_classes, melody_batch, melody_module

from magnet_lightning.generation.autoregressive import ARDecodingConfig
from magnet_lightning.generation.autoregressive import generate as ar_generate
from magnet_lightning.generation.hybrid_magnet import generate as hybrid_generate
from magnet_lightning.generation.magnet import continuation, decode, infilling
from magnet_lightning.generation.magnet_config import DecodingConfig
from magnet_lightning.models.melody import ChromaCondition, ChromaInput, frame_indices

STEPS = {"magnet": 100, "hybrid": 100, "musicgen": 200}
FUSE = {"magnet": "frames", "hybrid": "frames", "musicgen": "prepend"}
GREEDY = DecodingConfig(decoding_steps=[4, 2, 2, 2], use_sampling=False, max_cfg_coef=1.0, min_cfg_coef=1.0)


def _trained(tmp_path_factory, family):
    L.seed_everything(0)
    module = melody_module(family, FUSE[family], model={"dim": 64})
    trainer(tmp_path_factory.mktemp(family), STEPS[family]).fit(module, loader(MelodyBatches(STEPS[family])))
    return module.eval()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cache = {}

    def get(family):
        if family not in cache:
            cache[family] = _trained(tmp_path_factory, family)
        return cache[family]

    return get


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("family", ["magnet", "hybrid", "musicgen"])
def test_melody_model_learns_to_read_its_chroma(tmp_path, trained, family):
    module = trained(family)
    t = trainer(tmp_path, 1)
    own = t.validate(module, loader([melody_batch(1000 + i, batch=8) for i in range(3)]), verbose=False)[0]
    other = t.validate(module, loader([melody_batch(1000 + i, batch=8, shuffle=True) for i in range(3)]),
                       verbose=False)[0]
    assert own["val/loss"] < 0.5 * other["val/loss"], (own["val/loss"], other["val/loss"])


def _frames_condition(classes_per_frame: torch.Tensor) -> ChromaCondition:
    rows = torch.nn.functional.one_hot(classes_per_frame, 12).float()
    cond = ChromaInput.of(rows)
    return ChromaCondition(cond, cond.dropped(), True)


def _expected(classes_per_frame: torch.Tensor) -> torch.Tensor:
    return classes_per_frame % 16  # stream 0 of frame t: its chroma class


def _text(module, batch):
    return module.encode_text(["calm piano"] * batch)


def _agreement(tokens, classes) -> float:
    return float((tokens[:, 0] == _expected(classes)).float().mean())


@pytest.mark.usefixtures("one_thread")
def test_magnet_generations_follow_the_chroma_everywhere(trained):
    module = trained("magnet")
    model, (states, mask) = module.model, _text(module, 2)
    g = torch.Generator().manual_seed(5)
    classes = chroma_classes(2, 60, g)  # per frame, each class held 4 frames
    melody = _frames_condition(classes)
    tokens = decode(model, states, mask, 24, GREEDY, melody=melody.window(0, 0, 24))
    assert _agreement(tokens, classes[:, :24]) > 0.8
    shuffled = _frames_condition(classes.roll(1, dims=0))
    assert _agreement(decode(model, states, mask, 24, GREEDY, melody=shuffled.window(0, 0, 24)), classes[:, :24]) < 0.5
    long = decode(model, states, mask, 60, GREEDY, melody=melody, window_frames=24, stride_frames=12)
    assert long.shape == (2, 4, 60) and _agreement(long[..., 24:], classes[:, 24:]) > 0.75  # later windows too
    prompt = long[..., :8]
    given, fixed = continuation(prompt, 24, model.mask_token_id)
    cont = decode(model, states, mask, 24, GREEDY, given=given, fixed=fixed, melody=melody.window(0, 0, 24))
    assert torch.equal(cont[..., :8], prompt) and _agreement(cont[..., 8:], classes[:, 8:24]) > 0.75
    clip = torch.randint(0, 16, (2, 4, 24), generator=g)
    given, fixed = infilling(clip, 8, 16)
    edited = decode(model, states, mask, 24, GREEDY, given=given, fixed=fixed, melody=melody.window(0, 0, 24))
    assert torch.equal(edited[..., :8], clip[..., :8]) and _agreement(edited[..., 8:16], classes[:, 8:16]) > 0.7


@pytest.mark.usefixtures("one_thread")
def test_hybrid_generations_follow_the_chroma(trained):
    module = trained("hybrid")
    model, (states, mask) = module.model, _text(module, 2)
    classes = chroma_classes(2, 48, torch.Generator().manual_seed(6))
    melody = _frames_condition(classes)
    ar = ARDecodingConfig(use_sampling=False, cfg_coef=1.0)
    tokens = hybrid_generate(model, states, mask, 24, 6, GREEDY, ar, melody=melody.window(0, 0, 24))
    assert _agreement(tokens, classes[:, :24]) > 0.75
    long = hybrid_generate(model, states, mask, 48, 6, GREEDY, ar, melody=melody, window_frames=24, stride_frames=12)
    assert _agreement(long[..., 24:], classes[:, 24:]) > 0.7


@pytest.mark.usefixtures("one_thread")
def test_prepended_melody_autoregressive_generation_follows_the_chroma(trained):
    module = trained("musicgen")
    model, (states, mask) = module.model, _text(module, 2)
    rows = chroma_classes(2, 26, torch.Generator().manual_seed(7))  # the prefix: chroma rows at 50 frames/s
    prefix = ChromaInput.of(torch.nn.functional.one_hot(rows, 12).float())
    melody = ChromaCondition(prefix, prefix.dropped(), False)
    tokens = ar_generate(model, states, mask, 24, ARDecodingConfig(use_sampling=False, cfg_coef=1.0), melody=melody)
    per_frame = rows.gather(1, frame_indices(24, 50.0, 50.0, 26).expand(2, -1))
    other = ChromaInput.of(prefix.values.roll(1, dims=0))
    shuffled = ar_generate(model, states, mask, 24, ARDecodingConfig(use_sampling=False, cfg_coef=1.0),
                           melody=ChromaCondition(other, other.dropped(), False))
    own, other_agreement = _agreement(tokens, per_frame), _agreement(shuffled, per_frame)
    assert own > 0.4 and own > other_agreement + 0.15, (own, other_agreement)
    uncached = ar_generate(model, states, mask, 24, ARDecodingConfig(use_sampling=False, cfg_coef=1.0),
                           melody=melody, cache=False)
    assert torch.equal(tokens, uncached)  # the prefix in the KV cache gives the uncached forward's tokens
