"""evaluation/evaluate.py on a tiny checkpoint: CSV + audio folder and token shards -> JSON report with FAD, KL and
CLAP, settings and seeds; missing / unreadable references are errors or counted skips; 2 torchrun ranks give the
1-rank numbers."""

import io
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from support.evaluation import EMBEDDER_ARGS, RATE
from support.helpers import free_port
from support.paths import ROOT, TESTS

from magnet_lightning.cli import evaluate

pytestmark = pytest.mark.usefixtures("toy_clap_registered")  # the toy CLAP embedder (support/metric_assets.py)


def run(assets, *extra, out_name="report.json"):
    root, ckpt, csv, audio = assets
    out = root / out_name
    args = ["--ckpt", str(ckpt), "--prompts", str(csv), "--reference", str(audio), "--out", str(out),
            "--batch-size", "2", "--seed", "7", "--no-progress", "--device", "cpu", *EMBEDDER_ARGS, *extra]
    assert evaluate.main(args) == 0
    return json.loads(out.read_text())


def test_csv_and_audio_folder_report(assets):
    report = run(assets)
    assert set(report["metrics"]) == {"fad", "kl", "clap"}
    assert all(math.isfinite(v) for v in report["metrics"].values())
    assert report["num_items"] == 3 and report["skipped"]["missing_reference"] == 0
    settings = report["settings"]
    assert settings["decoding"]["decoding_steps"] == [2, 1, 1, 1] and settings["lufs"] == -14.0
    assert settings["random_embedders"] is True and settings["embedders"]["clap"] == "toy_clap"
    assert report["seeds"]["items"] == {"clip0": 7, "clip1": 7, "clip2": 9}  # seed + first index of the batch
    again = run(assets, out_name="again.json")
    assert again["metrics"] == report["metrics"]  # seeded: reproducible


def test_missing_and_unreadable_references(assets):
    root, ckpt, csv, audio = assets
    bad_csv = root / "bad.csv"
    bad_csv.write_text(csv.read_text() + 'nofile,"missing clip"\nbroken,"corrupt clip"\n')
    (audio / "broken.wav").write_bytes(b"RIFF not really a wav")
    base = ["--ckpt", str(ckpt), "--prompts", str(bad_csv), "--reference", str(audio), "--no-progress",
            "--device", "cpu", "--metrics", "clap", "--clap-embedder", "toy_clap"]
    with pytest.raises(SystemExit, match="nofile"):  # one line naming the ids, exit code 2
        evaluate.main([*base, "--out", str(root / "x.json")])
    (audio / "nofile.wav").write_bytes(b"")  # now present but unreadable too
    with pytest.raises(SystemExit, match="unreadable"):
        evaluate.main([*base, "--out", str(root / "x.json")])
    (audio / "nofile.wav").unlink()
    evaluate.main([*base, "--out", str(root / "skip.json"), "--skip-bad"])
    report = json.loads((root / "skip.json").read_text())
    assert report["skipped"]["missing_reference"] == 1 and report["skipped"]["unreadable_reference"] == 1
    assert report["num_items"] == 3 and set(report["metrics"]) == {"clap"}
    (audio / "broken.wav").unlink()


def write_shards(folder, codec_dir):
    from magnet_lightning.codec.codecs import load_codec
    from magnet_lightning.data.shards import TarShardWriter, write_manifest

    codec = load_codec(codec_dir)
    folder.mkdir()
    with TarShardWriter(folder / "val-000000.tar") as sink:
        for i in range(2):
            t = torch.arange(int(RATE * 1.2)) / RATE
            codes = codec.encode(torch.sin(2 * torch.pi * 300 * (i + 1) * t)[None, None] * 0.3, RATE)[0]
            buf = io.BytesIO()
            np.save(buf, codes.numpy().astype(np.int16))
            sink.write(f"item{i}", {"codes.npy": buf.getvalue(), "json": json.dumps({"caption": f"tone {i}"}).encode()})
    info = {"name": codec.name, "sample_rate": RATE, "frame_rate": 50.0, "num_codebooks": 4, "codebook_size": 16,
            "channels": 1}
    write_manifest(folder, info, [{"url": "val-000000.tar", "num_samples": 2}])


def test_shard_prompts_use_their_own_codes_as_reference(assets):
    root, ckpt, _, _ = assets
    write_shards(root / "shards", str(root / "codec"))
    out = root / "shards.json"
    evaluate.main(["--ckpt", str(ckpt), "--prompts", str(root / "shards"), "--out", str(out), "--no-progress",
                   "--device", "cpu", *EMBEDDER_ARGS])
    report = json.loads(out.read_text())
    assert report["num_items"] == 2 and set(report["seeds"]["items"]) == {"item0", "item1"}
    assert all(math.isfinite(v) for v in report["metrics"].values())


def test_two_torchrun_ranks_match_one(assets, tmp_path):
    _root, ckpt, csv, audio = assets
    single = run(assets, out_name="single.json")
    out = tmp_path / "ddp.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{TESTS}{os.pathsep}{ROOT}")
    script = ("import sys, support.metric_assets as t; from magnet_lightning.cli import evaluate; "
              "from magnet_lightning.metrics.embedders import register_embedder; "
              "register_embedder('toy_clap', lambda **kw: t.ToyClap()); sys.exit(evaluate.main(sys.argv[1:]))")
    (tmp_path / "launch.py").write_text(script + "\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
           str(tmp_path / "launch.py"), "--ckpt", str(ckpt), "--prompts", str(csv), "--reference", str(audio),
           "--out", str(out), "--batch-size", "2", "--seed", "7", "--no-progress", "--device", "cpu", *EMBEDDER_ARGS]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads(out.read_text())
    assert ddp["settings"]["world_size"] == 2 and ddp["num_items"] == 3
    for name, value in single["metrics"].items():
        assert ddp["metrics"][name] == pytest.approx(value, rel=1e-4, abs=1e-5)


def test_long_references_are_generated_in_windows_with_the_given_stride(assets):
    # references of 1.1-1.3 s against a 1.2-s checkpoint: the 1.3-s batch runs as long-form, stride 0.4 s
    report = run(assets, "--extend-stride", "0.4", "--metrics", "clap", out_name="long.json")
    assert report["settings"]["extend_stride"] == 0.4 and report["num_items"] == 3
    with pytest.raises(SystemExit, match="--extend-stride 1.2: must be shorter than the checkpoint's 1.2-s segment"):
        run(assets, "--extend-stride", "1.2", out_name="bad.json")
