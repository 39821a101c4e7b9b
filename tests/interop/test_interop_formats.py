"""`magnet-export --format` without a client library: what each format refuses in one line, an existing target
(replaced only with --force, atomically), the model card, and --push-to-hub of every format through a fake HfApi."""

from __future__ import annotations

import pytest
import torch
from support.audiocraft_files import lm_state_dict_bin, tiny_xp_cfg
from support.cli_runs import assert_one_line
from support.helpers import tiny_module

from magnet_lightning.checkpoint.audiocraft import convert_audiocraft
from magnet_lightning.cli.export import main as export_main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Our checkpoints of a tiny MAGNeT and a tiny MusicGen release (real released configs, random weights)."""
    root = tmp_path_factory.mktemp("formats")
    out = {}
    for name in ("magnet-small-10secs", "musicgen-small"):
        lm_state_dict_bin(root / f"{name}.bin", tiny_xp_cfg(name))
        convert_audiocraft(root / f"{name}.bin", root / f"{name}.ckpt")
        out[name] = root / f"{name}.ckpt"
    return out


def refused(capsys, argv, *needles):
    with pytest.raises(SystemExit) as err:
        export_main(argv)
    assert err.value.code == 2
    return assert_one_line(capsys.readouterr().err, *needles)


@pytest.mark.parametrize("fmt, files", [
    ("magnet_lightning", ["README.md", "config.json", "model.safetensors"]),
    ("audiocraft", ["README.md", "compression_state_dict.bin", "state_dict.bin"]),
])
def test_push_to_hub_uploads_each_format_with_its_card(converted, tmp_path, fake_hub, capsys, fmt, files):
    out = tmp_path / fmt
    assert export_main([str(converted["musicgen-small"]), str(out), "--format", fmt, "--push-to-hub", "me/tiny",
                        "--public"]) == 0
    assert fake_hub == [("create_repo", "me/tiny", False, "model"), ("upload_folder", "me/tiny", files)]
    assert "uploaded to https://hub.example/me/tiny" in capsys.readouterr().out
    card = (out / "README.md").read_text()
    for field in ("license: cc-by-nc-4.0", "| autoregressive |", "nothing: audiocraft's weights, converted",
                  "| format | family | base | license | fine-tuned |"):
        assert field in card, field


def test_an_existing_target_is_replaced_only_with_force(converted, tmp_path, capsys):
    out = tmp_path / "export"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    argv = [str(converted["magnet-small-10secs"]), str(out), "--format", "audiocraft"]
    refused(capsys, argv, "exists", "--force")
    assert (out / "mine.txt").read_text() == "keep me"  # untouched
    assert export_main([*argv, "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "compression_state_dict.bin", "state_dict.bin"]
    assert not list(tmp_path.glob(".export.*"))  # no staging or old folder left behind


def test_what_a_format_cannot_hold_is_one_line(converted, tmp_path, capsys):
    refused(capsys, [str(converted["magnet-small-10secs"]), str(tmp_path / "tf"), "--format", "transformers"],
            "transformers' MusicGen holds autoregressive models only", "MAGNeT")
    refused(capsys, [str(converted["magnet-small-10secs"]), str(tmp_path / "ac"), "--format", "audiocraft",
                     "--adapter-only", "--adapter", str(tmp_path)], "audiocraft has no adapter format")
    module = tiny_module()  # a random T5 stand-in: audiocraft loads its T5 by name
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, tmp_path / "own.ckpt")
    refused(capsys, [str(tmp_path / "own.ckpt"), str(tmp_path / "ac"), "--format", "audiocraft", "--license", "mit"],
            "audiocraft's T5 conditioner loads its T5 by name")
    assert not (tmp_path / "tf").exists() and not (tmp_path / "ac").exists()


def test_adapter_folders_are_readable_like_every_export(converted, tmp_path):
    import os

    from magnet_lightning.checkpoint.pretrained import load_pretrained
    from magnet_lightning.lora.adapters import LoraConfig, apply_lora, lora_state_dict
    from magnet_lightning.lora.files import Adapter, BaseIdentity, base_fingerprint, write_adapter_folder

    base = converted["magnet-small-10secs"]
    model = load_pretrained(base).model
    identity = BaseIdentity(str(base), base_fingerprint(model))
    apply_lora(model, LoraConfig(rank=2))
    write_adapter_folder(Adapter(model.lora_config, lora_state_dict(model), identity, model.family, "t"),
                         tmp_path / "adapter")
    umask = os.umask(0o022)
    try:
        assert export_main([str(base), str(tmp_path / "out"), "--adapter-only", "--adapter",
                            str(tmp_path / "adapter")]) == 0
    finally:
        os.umask(umask)
    assert [oct(p.stat().st_mode & 0o777) for p in sorted((tmp_path / "out").iterdir())] == ["0o644", "0o644"]
