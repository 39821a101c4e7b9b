"""Adding a family means adding its files (docs/ARCHITECTURE.md, "Adding a family"): the toy family of
tests/support/toy_family.py is registered in the family tables only, and its new decoding option then appears,
checked, in magnet-generate's and magnet-evaluate's flags, in --dry-run, in the app's controls and requests, and
in generation."""

from pathlib import Path

import pytest
import torch
from support import toy_family
from support.cli_runs import assert_one_line, in_process
from support.helpers import TINY_MODEL, tiny_module

from magnet_lightning.app.engine import Loaded, Request, plan_request
from magnet_lightning.app.requests import changed
from magnet_lightning.app.traits import PageNames, traits_of
from magnet_lightning.cli import evaluate
from magnet_lightning.cli.generate import build_parser, main
from magnet_lightning.config import ModelConfig
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.generation.options import OptionError
from magnet_lightning.models.magnet import MagnetTransformer

STEPS = [2, 1, 1, 1]


def _save(path: Path, family: str) -> Path:
    torch.manual_seed(0)
    module = tiny_module(family=family, segment_duration=0.5, frame_rate=50.0, sample_rate=16000,
                         decoding={"decoding_steps": STEPS})
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path


@pytest.fixture
def ckpts(monkeypatch, tmp_path):
    toy_family.register(monkeypatch)
    monkeypatch.setattr(MagnetGenerator, "from_pretrained", lambda *a, **k: pytest.fail("loaded a model"))
    return {name: _save(tmp_path / f"{name}.ckpt", name) for name in (toy_family.NAME, "magnet")}


def test_the_option_is_a_flag_of_generate_and_evaluate(ckpts):
    for parser in (build_parser(), evaluate.build_parser()):
        text = " ".join(parser.format_help().split())
        assert "--boost BOOST toy option: added to the sampling temperature of every stage (in [0, 2]) " \
               f"[{toy_family.LABEL}]" in text


def test_dry_run_prints_it_and_a_wrong_value_is_one_line(ckpts, tmp_path, capfd):
    out = tmp_path / "out"
    base = ["--ckpt", str(ckpts[toy_family.NAME]), "--text", "x", "--out", str(out), "--dry-run"]
    assert main([*base, "--boost", "0.5"]) == 0
    printed = capfd.readouterr().out
    assert "Boosted-MAGNeT" in printed and "boost=0.5*" in printed and "temperature=3," in printed
    assert_one_line(in_process(main, [*base, "--boost", "5"], capfd), "--boost must be in [0, 2], got 5")
    assert not out.exists()


def test_other_families_refuse_it_naming_the_family_that_takes_it(ckpts, tmp_path, capfd):
    err = in_process(main, ["--ckpt", str(ckpts["magnet"]), "--text", "x", "--boost", "0.5", "--out",
                            str(tmp_path / "o")], capfd)
    assert_one_line(err, "--boost: not an option of the MAGNeT family", "the Boosted-MAGNeT family takes it")


def test_evaluate_checks_it_before_loading(ckpts, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("calm piano\n")
    args = evaluate.build_parser().parse_args(["--ckpt", str(ckpts[toy_family.NAME]), "--prompts", str(prompts),
                                               "--metrics", "clap", "--out", str(tmp_path / "r.json"),
                                               "--boost", "2.5"])
    with pytest.raises(Exception, match="--boost must be in \\[0, 2\\], got 2.5"):
        evaluate.check_args(args)


def _generators():
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY_MODEL)
    boosted = toy_family.BoostedMagnet(cfg).eval()
    plain = MagnetTransformer(cfg).eval()
    plain.load_state_dict(boosted.state_dict())
    kwargs = dict(segment_duration=0.5, frame_rate=50.0, decoding_defaults={"decoding_steps": STEPS})
    return MagnetGenerator(boosted, **kwargs), MagnetGenerator(plain, **kwargs)


def test_the_app_shows_and_checks_it(ckpts):
    boosted, _ = _generators()
    control = traits_of(boosted).control("boost")
    assert (control.kind, control.default) == ("float", 0.0) and "temperature" in control.help
    loaded = Loaded("boosted.ckpt", boosted, traits_of(boosted), 1.0)
    options = changed(loaded, {"boost": "3"})  # the page's text, as the option's type
    assert options == {"boost": 3.0}
    with pytest.raises(OptionError) as err:
        plan_request({loaded.name: loaded}, Request(loaded.name, ("x",), 0.5, options=tuple(options.items())))
    assert err.value.render(PageNames()) == "boost must be in [0, 2], got 3"


def test_it_generates_as_declared(ckpts):
    boosted, plain = _generators()

    def tokens(gen, **options):
        return gen.generate(num_samples=2, seed=4, decode_audio=False, **options).tokens

    assert torch.equal(tokens(boosted), tokens(plain))  # boost 0: MAGNeT's decoding
    assert torch.equal(tokens(boosted, boost=1.5), tokens(plain, temperature=4.5))  # 3.0 + 1.5
    assert not torch.equal(tokens(boosted, boost=1.5), tokens(plain))
