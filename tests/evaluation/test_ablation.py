"""evaluation/ablation.py on tiny checkpoints of the three families (one codec): every row, latency and metrics, the
Markdown table; rows that must equal another do (w = 1 is MAGNeT); wrong checkpoints are one-line errors."""

import json
import sys
from dataclasses import asdict

import pytest
import torch
from support.evaluation import EMBEDDER_ARGS, RATE
from support.helpers import TINY_MODEL, tiny_module
from support.paths import ROOT

sys.path.insert(0, str(ROOT / "evaluation"))
import ablation

from magnet_lightning.config import ModelConfig
from magnet_lightning.models.registry import build_model


def _family_ckpt(root, family, hparams):
    torch.manual_seed(3)
    model = build_model(family, ModelConfig(**TINY_MODEL))
    hp = {**hparams, "model": asdict(model.cfg), "family": family, "delays": [0, 1, 2, 3],
          "decoding": {"decoding_steps": [2, 1, 1, 1], "prompt_seconds": 0.3} if family == "hybrid" else {"top_k": 8}}
    path = root / f"{family}.ckpt"
    torch.save({"hyper_parameters": hp, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}},
               path)
    return path


@pytest.fixture(scope="module")
def ckpts(assets):
    root, magnet, csv, audio = assets
    hp = dict(tiny_module(codec=str(root / "codec"), sample_rate=RATE, frame_rate=50.0, segment_duration=1.2).hparams)
    return magnet, _family_ckpt(root, "musicgen", hp), _family_ckpt(root, "hybrid", hp), csv, audio, root


@pytest.mark.usefixtures("toy_clap_registered")
def test_ablation_rows_table_and_consistency(ckpts):
    magnet, ar, hybrid, csv, audio, root = ckpts
    out = root / "ablation.json"
    args = ["--magnet", str(magnet), "--ar", str(ar), "--hybrid", str(hybrid), "--prompts", str(csv),
            "--reference", str(audio), "--out", str(out), "--weights", "0.5", "--hybrid-prompt-seconds", "0.3",
            "--latency-runs", "1", "--latency-batches", "1", "2", "--batch-size", "2", "--device", "cpu",
            "--steps", "2", "1", "1", "1", *EMBEDDER_ARGS]
    assert ablation.main(args) == 0
    report = json.loads(out.read_text())
    names = [row["name"] for row in report["rows"]]
    assert names == ["MAGNeT", "MAGNeT + AR rescoring (w=0.5)", "AR prompt 0.3 s + MAGNeT (two models)",
                     "Hybrid-MAGNeT (one model)", "AR alone"]
    for row in report["rows"]:
        assert set(row["latency_s"]) == {"b1", "b2"} and all(v > 0 for v in row["latency_s"].values())
        assert set(row["metrics"]) == {"fad", "kl", "clap", "token_fad"} and row["metrics"]["token_fad"] > 0
    assert report["num_items"] == 3 and report["settings"]["random_embedders"] is True
    table = out.with_suffix(".md").read_text()
    assert table.count("\n|") == 6 and "(random weights)" in table and "latency b1 (s)" in table
    # w = 1 is the MAGNeT row itself: as a rescoring weight it is refused
    with pytest.raises(SystemExit):
        ablation.main([*args[:args.index("--weights")], "--weights", "1.0", *args[args.index("--weights") + 2:]])


def test_wrong_checkpoints_are_one_line_errors(ckpts, capsys):
    magnet, ar, hybrid, csv, audio, root = ckpts
    base = ["--prompts", str(csv), "--reference", str(audio), "--out", str(root / "x.json")]
    cases = ((["--magnet", str(ar), "--ar", str(ar)], "--magnet: needs a magnet checkpoint"),
             (["--magnet", str(magnet), "--ar", str(magnet)], "--ar: needs a musicgen checkpoint"),
             (["--magnet", str(magnet), "--ar", str(ar), "--hybrid", str(ar)], "--hybrid: needs a hybrid"))
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            ablation.main([*args, *base])
        assert exit_info.value.code == 2 and message in str(exit_info.value)
    assert not (root / "x.json").exists()


def test_token_fad_is_zero_for_the_same_tokens_and_grows_with_a_shift(assets):
    from magnet_lightning.codec.codecs import load_codec

    codec = load_codec(str(assets[0] / "codec"))
    g = torch.Generator().manual_seed(0)
    real = [torch.randint(0, 8, (4, 40), generator=g) for _ in range(6)]
    other = [torch.randint(8, 16, (4, 40), generator=g) for _ in range(6)]
    assert ablation.token_fad(codec, real, real) == pytest.approx(0.0, abs=1e-6)
    assert ablation.token_fad(codec, other, real) > 5 * ablation.token_fad(codec, real[:3], real[3:])
