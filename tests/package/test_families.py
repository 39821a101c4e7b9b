"""The family tables: every layer registers the same families, no code outside them asks which family a model is,
and each family's generation options and inputs are checked through its table (before any model is loaded)."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from support.cli_runs import assert_one_line, in_process
from support.paths import ROOT
from support.tiny_generator import DURATION

from magnet_lightning.checkpoint.audiocraft_families import AUDIOCRAFT_IMPORTS
from magnet_lightning.cli.generate import main
from magnet_lightning.cli.options import decoding_options
from magnet_lightning.generation.families import DECODER_FAMILIES, decoder_family
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.models.registry import MODEL_FAMILIES
from magnet_lightning.training.families import TRAINING_FAMILIES

NAMES = set(MODEL_FAMILIES)


def test_every_layer_registers_the_same_families():
    assert set(DECODER_FAMILIES) == set(TRAINING_FAMILIES) == set(AUDIOCRAFT_IMPORTS) == NAMES
    assert all(spec.name == name for name, spec in MODEL_FAMILIES.items())


def _family_comparisons(path: Path) -> list[str]:
    """`x == 'magnet'`-style comparisons (==, !=, in, not in) against a registered family's name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Constant) and o.value in NAMES for o in operands):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_code_compares_against_a_family_name():
    folders = ("magnet_lightning", "recipes", "data", "evaluation")
    files = [p for folder in folders for p in (ROOT / folder).rglob("*.py")]
    found = [hit for path in files for hit in _family_comparisons(path)]
    assert found == [], f"ask the family tables instead: {found}"


@pytest.fixture
def ckpts(assets, ar_ckpt, hybrid_ckpt):
    by_family = {"magnet": assets[0], "musicgen": ar_ckpt, "hybrid": hybrid_ckpt}
    assert set(by_family) == NAMES
    return by_family


def _refused_options():
    """(family, flag, its value): every declared option another family takes and this one does not."""
    for family, spec in DECODER_FAMILIES.items():
        for name, (declared, _) in decoding_options().items():
            if name not in spec.options:
                value = {"steps": ["2", "1", "1", "1"], "bool": [], "choice": list(declared.option.choices[-1:])}.get(
                    declared.kind, ["0.5"])
                yield family, declared.flag, value


@pytest.mark.parametrize("family,flag,value", list(_refused_options()))
def test_an_option_the_family_does_not_take_is_one_line_before_loading(ckpts, family, flag, value, tmp_path, capfd,
                                                                       no_loading):
    out = tmp_path / "out"
    err = in_process(main, ["--ckpt", str(ckpts[family]), "--text", "x", flag, *value, "--out", str(out)], capfd)
    assert_one_line(err, flag, f"not an option of the {MODEL_FAMILIES[family].label} family")
    assert not out.exists()


@pytest.mark.parametrize("family", sorted(name for name, spec in DECODER_FAMILIES.items() if spec.presets))
def test_steps_are_checked_against_the_codebooks_before_loading(ckpts, family, tmp_path, capfd, no_loading):
    err = in_process(main, ["--ckpt", str(ckpts[family]), "--text", "x", "--steps", "2", "1", "1",
                            "--out", str(tmp_path / "o")], capfd)
    assert_one_line(err, "--steps has 3 entries", "4 codebooks")


def _clip(path: Path, seconds: float = 0.2) -> Path:
    sf.write(path, (np.random.default_rng(0).standard_normal(int(16000 * seconds)) * 0.1).astype(np.float32), 16000)
    return path


@pytest.mark.parametrize("family", sorted(name for name, spec in DECODER_FAMILIES.items() if not spec.infill))
def test_infill_is_refused_naming_the_family(ckpts, family, tmp_path, capfd, no_loading):
    clip = str(_clip(tmp_path / "c.wav"))
    err = in_process(main, ["--ckpt", str(ckpts[family]), "--text", "x", "--prompt-audio", clip,
                            "--infill", "0.1", "0.2", "--out", str(tmp_path / "o")], capfd)
    assert_one_line(err, "--infill", f"a {MODEL_FAMILIES[family].label} checkpoint, which does not infill")


@pytest.mark.parametrize("family", sorted(name for name, spec in DECODER_FAMILIES.items() if not spec.rescored))
def test_partners_are_refused_naming_the_family(ckpts, family, tmp_path, capfd, no_loading):
    err = in_process(main, ["--ckpt", str(ckpts[family]), "--text", "x", "--rescorer", str(ckpts["musicgen"]),
                            "--rescore-weight", "0.5", "--out", str(tmp_path / "o")], capfd)
    assert_one_line(err, "--rescorer", MODEL_FAMILIES[family].label)


def test_hybrid_magnet_continues_a_prompt(hybrid_ckpt):
    gen = MagnetGenerator.from_pretrained(hybrid_ckpt, device="cpu")
    prompt = torch.randint(0, 64, (4, 8))  # 8 frames, longer than the checkpoint's 0.1 s (5-frame) AR prompt
    config = gen.decoding_config(DURATION, use_sampling=False)
    result = gen.generate(["calm piano"], prompt=prompt, decoding=config, decode_audio=False)
    assert result.tokens.shape == (1, 4, 25) and torch.equal(result.tokens[0, :, :8], prompt)
    short = prompt[:, :3]  # shorter than the AR prompt: the autoregressive part continues it to 5 frames
    again = gen.generate(["calm piano"], prompt=short, decoding=config, decode_audio=False).tokens
    assert torch.equal(again[0, :, :3], short)
    alone = gen.generate(["calm piano"], decoding=config, decode_audio=False).tokens
    assert not torch.equal(again, alone)
    with pytest.raises(ValueError, match="Hybrid-MAGNeT family takes no infilling"):
        gen.generate(["x"], prompt=prompt, infill=(0.0, 0.1))


def test_hybrid_magnet_cli_continuation_and_prompt_seconds(hybrid_ckpt, tmp_path):
    out = tmp_path / "out"
    assert main(["--ckpt", str(hybrid_ckpt), "--text", "x", "--prompt-audio", str(_clip(tmp_path / "c.wav")),
                 "--hybrid-prompt-seconds", "0.3", "--greedy", "--out", str(out)]) == 0
    record = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    assert record["frames"] == 25 and record["decoding"]["prompt_seconds"] == 0.3


def test_every_family_generates_through_its_table(ckpts):
    for family, path in ckpts.items():
        gen = MagnetGenerator.from_pretrained(path, device="cpu")
        assert gen.decoder is decoder_family(family)
        config = gen.decoding_config(DURATION, use_sampling=False)
        assert isinstance(config, gen.decoder.config_class)
        tokens = gen.generate(["x"], decoding=config, decode_audio=False).tokens
        assert tokens.shape == (1, 4, 25) and int(tokens.max()) < 64
