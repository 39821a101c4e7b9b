"""Loading without a second copy (checkpoint/lazy_load.py, issue 18): float32 results bit-identical to the copying
loader, the requested dtype and device, no random initialisation, no aliasing of the file, one copy of memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.audiocraft_files import lm_state_dict_bin, tiny_xp_cfg
from support.paths import ROOT, TESTS
from support.tiny_releases import copying_load

from magnet_lightning.checkpoint.audiocraft import convert_audiocraft, from_audiocraft
from magnet_lightning.checkpoint.export import export
from magnet_lightning.checkpoint.lazy_load import empty_model, resolve_dtype
from magnet_lightning.checkpoint.pretrained import load_pretrained
from magnet_lightning.config import ModelConfig
from magnet_lightning.generation.generator import MagnetGenerator

SIZES = {"dim": 32, "num_heads": 4, "num_layers": 2}


def release_file(path: Path, name: str = "magnet-small-10secs", **sizes) -> Path:
    """A release-format file of `name`'s real config at small sizes, float16 weights as Meta's files hold."""
    return lm_state_dict_bin(path, tiny_xp_cfg(name, **(sizes or SIZES)), dtype=torch.float16)


def assert_identical(model: torch.nn.Module, reference: torch.nn.Module, dtype=torch.float32) -> None:
    ours, ref = model.state_dict(), reference.state_dict()
    assert ours.keys() == ref.keys()
    for name, value in ref.items():
        assert ours[name].dtype == dtype, name
        assert torch.equal(ours[name], value.to(dtype)), name
    for (name, buffer), (_, ref_buffer) in zip(model.named_buffers(), reference.named_buffers()):
        assert not buffer.is_meta and torch.equal(buffer, ref_buffer), name  # non-persistent buffers computed


@pytest.mark.parametrize("name", ["magnet-small-10secs", "musicgen-small"])
def test_float32_is_bit_identical_to_the_copying_loader(tmp_path, name):
    path = release_file(tmp_path / "state_dict.bin", name)
    model, reference = from_audiocraft(path), copying_load(path)
    assert type(model) is type(reference)
    assert_identical(model, reference)
    codes = torch.randint(0, 2048, (2, 4, 12))
    states, mask = torch.randn(2, 5, 768), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        if model.family == "magnet":
            out, ref = model(codes, states, mask, 1), reference(codes, states, mask, 1)
        else:
            out, ref = model(codes, states, mask).logits, reference(codes, states, mask).logits
    torch.testing.assert_close(out, ref, rtol=0, atol=0, equal_nan=True)  # AR: NaN where not predicted


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", torch.bfloat16])
def test_requested_dtype(tmp_path, dtype):
    path = release_file(tmp_path / "state_dict.bin")
    model = from_audiocraft(path, dtype=dtype, device="cpu")
    assert_identical(model, copying_load(path), resolve_dtype(dtype))
    assert model._code_offsets.dtype == torch.long  # integer tensors keep their dtype


@pytest.mark.gpu
def test_loads_straight_onto_cuda(tmp_path):
    path = release_file(tmp_path / "state_dict.bin")
    model = from_audiocraft(path, dtype="bfloat16", device="cuda")
    assert {t.device.type for t in [*model.parameters(), *model.buffers()]} == {"cuda"}
    assert_identical(model.cpu(), copying_load(path), torch.bfloat16)


def test_no_random_initialisation_runs(tmp_path):
    path = release_file(tmp_path / "state_dict.bin")
    state = torch.get_rng_state()
    from_audiocraft(path)
    assert torch.equal(torch.get_rng_state(), state)  # nothing drew random numbers
    copying_load(path)
    assert not torch.equal(torch.get_rng_state(), state)  # (the copying loader does: the check can fail)


def test_empty_model_has_meta_parameters_and_real_buffers():
    model = empty_model("magnet", ModelConfig(dim=16, num_heads=2, num_layers=1, codebook_size=8, num_codebooks=3))
    assert all(p.is_meta for p in model.parameters())
    assert torch.equal(model._code_offsets, torch.tensor([[0], [9], [18]]))


def test_lightning_checkpoint_and_exports_load_identically(tmp_path):
    path = release_file(tmp_path / "state_dict.bin")
    reference = copying_load(path)
    convert_audiocraft(path, tmp_path / "model.ckpt")
    assert_identical(load_pretrained(tmp_path / "model.ckpt").model, reference)
    assert_identical(load_pretrained(tmp_path / "model.ckpt", dtype="float16").model, reference, torch.float16)
    export(tmp_path / "model.ckpt", tmp_path / "fp32")
    assert_identical(load_pretrained(tmp_path / "fp32").model, reference)
    export(tmp_path / "model.ckpt", tmp_path / "bf16", dtype="bfloat16")
    bf16 = load_pretrained(tmp_path / "bf16", dtype="bfloat16").model
    assert_identical(bf16, reference, torch.bfloat16)


def test_model_does_not_alias_the_file(tmp_path):
    """The file is mapped, not kept: rewriting it in place (as a training run rewrites last.ckpt) leaves the loaded
    model as it was."""
    path = release_file(tmp_path / "state_dict.bin")
    convert_audiocraft(path, tmp_path / "model.ckpt")
    export(tmp_path / "model.ckpt", tmp_path / "export")
    for source in (path, tmp_path / "model.ckpt", tmp_path / "export"):
        model = load_pretrained(source).model
        before = {k: v.clone() for k, v in model.state_dict().items()}
        weights = source / "model.safetensors" if source.is_dir() else source
        size = weights.stat().st_size
        with open(weights, "r+b") as f:
            f.write(b"\x00" * size)
        assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items()), source


def test_legacy_format_file_loads(tmp_path):
    path = release_file(tmp_path / "zip.bin")
    legacy = tmp_path / "legacy.bin"
    torch.save(torch.load(path, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    assert_identical(from_audiocraft(legacy), copying_load(path))


def test_bad_dtype_is_named(tmp_path):
    with pytest.raises(ValueError, match="dtype 'int8'"):
        from_audiocraft(release_file(tmp_path / "state_dict.bin"), dtype="int8")


PEAK = """
import json, sys, torch
from magnet_lightning.checkpoint.audiocraft import from_audiocraft
sys.path.insert(0, {tests!r})
from support.tiny_releases import copying_load
status = open("/proc/self/status").read()
baseline = int(status.split("VmRSS:")[1].split()[0]) * 1024
model = copying_load({path!r}) if {reference} else from_audiocraft({path!r}, dtype={dtype!r})
size = sum(p.numel() * p.element_size() for p in model.parameters())
peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
print(json.dumps({{"above_baseline_over_model": (peak - baseline) / size}}))
"""


def _peak_over_model(path: Path, reference: bool, dtype: str = "float32") -> float:
    """The peak is VmHWM, this process image's own high-water mark: `ru_maxrss` of a child started by a large
    process (pytest, here) starts at the parent's peak, which Linux folds into it at exec."""
    code = PEAK.format(tests=str(TESTS), path=str(path), reference=reference, dtype=dtype)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["above_baseline_over_model"]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads VmRSS from /proc")
def test_peak_memory_is_one_copy_of_the_model(tmp_path):
    """A 110 M-parameter float16 file: the load's own peak (above the process's RSS after the imports) stays within
    1.25x the model in float32 and in float16; the copying loader's does not (so the measurement can fail)."""
    path = release_file(tmp_path / "state_dict.bin", dim=512, num_heads=8, num_layers=24)
    assert _peak_over_model(path, reference=False) <= 1.25
    assert _peak_over_model(path, reference=False, dtype="float16") <= 1.25
    assert _peak_over_model(path, reference=True) > 1.4


def test_generator_loads_in_the_requested_dtype(tmp_path):
    path = release_file(tmp_path / "state_dict.bin")
    generator = MagnetGenerator.from_pretrained(path, device="cpu", dtype="bfloat16", text_encoder=False, codec=False)
    assert_identical(generator.model, copying_load(path), torch.bfloat16)
