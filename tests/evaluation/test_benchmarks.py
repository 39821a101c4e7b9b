"""Benchmarks as data: the published metadata files, --prepare (cuts, missing audio refused or allowed, resumable),
the eval set's checks, and the evaluator end to end on a tiny checkpoint (report, card table, resume, refusals)."""
import json
import os
import subprocess
import sys

import julius
import numpy as np
import pytest
import soundfile
import torch
from support.evaluation import EMBEDDER_ARGS, bench, tone, write_csv
from support.helpers import free_port
from support.paths import ROOT, TESTS

from magnet_lightning.cli import evaluate
from magnet_lightning.errors import UserError
from magnet_lightning.metrics.benchmarks.cards import card_for
from magnet_lightning.metrics.benchmarks.evalset import load_eval_set, load_stats, save_stats
from magnet_lightning.metrics.benchmarks.formats import BENCHMARKS, read_rows
from magnet_lightning.metrics.benchmarks.prepare import prepare

pytestmark = pytest.mark.usefixtures("toy_clap_registered")  # the toy CLAP embedder (support/metric_assets.py)

MUSICCAPS = BENCHMARKS["musiccaps"]


def musiccaps_row(ytid, start, end, caption="a tune"):
    return [ytid, start, end, "/m/04rlf", "['x']", caption, 0, False, True]


def test_readers_take_the_published_columns(tmp_path):
    rows = read_rows(MUSICCAPS, write_csv(tmp_path / "m.csv", MUSICCAPS.columns, [musiccaps_row("a", 30, 40)]))
    assert (rows[0].id, rows[0].start, rows[0].end, rows[0].audio) == ("a", 30.0, 40.0, "a")
    sd = BENCHMARKS["song-describer"]
    sd_rows = [[1, 7, "piano", True, 2, 3, 4, "00/7.2min.mp3", 120.0], [2, 7, "bad", False, 2, 3, 4, "x.mp3", 1.0]]
    assert [r.id for r in read_rows(sd, write_csv(tmp_path / "s.csv", sd.columns, sd_rows))] == ["1"]  # valid only
    ac = BENCHMARKS["audiocaps"]
    row = read_rows(ac, write_csv(tmp_path / "a.csv", ac.columns, [[91139, "Zn4ViKWcw", 130, "water pours"]]))[0]
    assert (row.id, row.audio, row.start, row.end) == ("91139", "Zn4ViKWcw", 130.0, 140.0)
    with pytest.raises(UserError, match="missing column.*aspect_list"):
        read_rows(MUSICCAPS, write_csv(tmp_path / "bad.csv", ["ytid", "start_s", "end_s", "caption"],
                                       [["a", 0, 1, "x"]]))
    with pytest.raises(UserError, match=r"dup.csv:3: id 'a' is duplicated"):
        read_rows(MUSICCAPS, write_csv(tmp_path / "dup.csv", MUSICCAPS.columns, [musiccaps_row("a", 0, 10)] * 2))
    with pytest.raises(UserError, match="not a number"):
        read_rows(MUSICCAPS, write_csv(tmp_path / "t.csv", MUSICCAPS.columns, [musiccaps_row("a", "x", 10)]))


@pytest.fixture
def download(tmp_path):
    """A MusicCaps-format download: a whole-video file, an already-cut clip, a missing and a too-short item."""
    data = tmp_path / "data"
    data.mkdir()
    tone(data / "full.wav", 5.0, 16000, channels=2)  # clip [1.5, 3.5) is cut from it
    tone(data / "cut.flac", 2.0, 44100, freq=440.0)  # already the clip
    tone(data / "short.wav", 0.5, 16000)
    rows = [musiccaps_row("full", 1.5, 3.5), musiccaps_row("cut", 20, 22), musiccaps_row("gone", 0, 2),
            musiccaps_row("short", 10, 12)]
    write_csv(data / MUSICCAPS.csv_name, MUSICCAPS.columns, rows)
    return data


def test_prepare_refuses_missing_audio_then_cuts_resamples_and_resumes(download, tmp_path):
    out = tmp_path / "set"
    with pytest.raises(UserError, match=r"2 of 4 musiccaps items have no usable audio .*1 missing, 1 too_short.*"
                                        r"--allow-missing 2"):
        prepare(MUSICCAPS, download / MUSICCAPS.csv_name, download, out)
    assert not out.exists()  # nothing half-written
    manifest = prepare(MUSICCAPS, download / MUSICCAPS.csv_name, download, out, allow_missing=2)
    assert [i["id"] for i in manifest["items"]] == ["full", "cut"]
    assert manifest["skipped"] == {"missing": ["gone"], "too_short": ["short"]}
    full, rate = soundfile.read(out / "full.wav", always_2d=True)
    source, _ = soundfile.read(download / "full.wav", always_2d=True, dtype="float32")
    expected = julius.resample_frac(torch.from_numpy(source[24000:56000].T.copy()), 16000, 32000).numpy().T
    assert rate == 32000 and full.shape == (64000, 2)
    assert np.abs(full - expected).max() < 2e-4  # the [1.5 s, 3.5 s) cut, resampled, 16-bit
    assert soundfile.info(out / "cut.wav").frames == 64000 and manifest["items"][1]["cut"] == "pre-cut"
    (out / "manifest.json").unlink()  # interrupted before the manifest: the clips already written are kept
    before = (out / "full.wav").stat().st_mtime_ns
    again = prepare(MUSICCAPS, download / MUSICCAPS.csv_name, download, out, allow_missing=2)
    assert (out / "full.wav").stat().st_mtime_ns == before and again["items"] == manifest["items"]
    evalset = load_eval_set(out, "musiccaps")
    assert evalset.sample_rate == 32000 and len(evalset.items) == 2
    soundfile.write(out / "cut.wav", np.zeros(100, np.float32), 32000)
    with pytest.raises(UserError, match="changed since --prepare"):
        load_eval_set(out)


def test_a_file_whose_length_fits_no_rule_is_refused(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    tone(data / "odd.wav", 6.0, 16000)  # neither the whole video (clip ends at 12 s) nor a cut 2-s clip
    write_csv(data / MUSICCAPS.csv_name, MUSICCAPS.columns, [musiccaps_row("odd", 10, 12)])
    with pytest.raises(UserError, match="1 ambiguous_length"):
        prepare(MUSICCAPS, data / MUSICCAPS.csv_name, data, tmp_path / "o")


def test_reference_stats_from_another_protocol_are_refused(tmp_path):
    protocol = {"benchmark": "musiccaps", "embedders": {"distribution": {"name": "vggish", "weights": "1.0/5"}}}
    path = tmp_path / "stats.pt"
    save_stats(path, protocol, ["a"], {"kl": [torch.rand(2, 3)]})
    assert load_stats(path, protocol)["ids"] == ["a"]
    other = {"benchmark": "musiccaps", "embedders": {"distribution": {"name": "clap", "weights": "1.0/5"}}}
    with pytest.raises(UserError, match=r"another protocol \(embedders.distribution.name 'vggish' \(file\) vs "
                                        r"'clap' \(this run\)"):
        load_stats(path, other)


def test_card_figures():
    assert card_for("facebook/magnet-small-10secs", "musiccaps")[1].fad == 4.22
    assert card_for("audio-magnet-medium", "audiocaps")[1].kl == 1.64
    assert card_for("facebook/magnet-small-10secs", "audiocaps") is None and card_for("x.ckpt", "musiccaps") is None


def test_benchmark_end_to_end_resumes_and_refuses_other_settings(audiocaps, tmp_path):
    ckpt, data = audiocaps
    assert evaluate.main(["--benchmark", "audiocaps", "--data", str(data), "--prepare"]) == 0
    out = tmp_path / "r" / "report.json"
    assert bench(ckpt, data, out) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 3 and report["sample_rate"] == 16000 and report["benchmark"] == "audiocaps"
    for key in ("fad", "kad", "fad_inf", "kl", "kl_gen_ref", "clap"):
        entry = report["metrics"][key]
        assert np.isfinite(entry["value"]) and (entry["ci95"] is None or entry["ci95"][0] <= entry["ci95"][1])
    assert set(report["per_clip"]) == {"100", "101", "102"} and "clap" in report["per_clip"]["100"]
    assert report["generation"]["clips"] == 3 and report["generation"]["rtf"] > 0
    assert report["embedders"]["distribution"]["random"] and "RANDOM WEIGHTS" in report["random_weights"]["note"]
    table = out.with_suffix(".md").read_text()
    assert "| FAD (vggish) |" in table and "| KAD (vggish, ×100) |" in table
    stats = list((data / "eval_set-audiocaps").glob("reference_stats-*.pt"))
    assert len(stats) == 1
    assert bench(ckpt, data, out) == 0  # resumed: nothing to generate, statistics from the cache
    again = json.loads(out.read_text())
    assert again["generation"]["calls"] == 0
    assert again["metrics"]["fad"]["value"] == pytest.approx(report["metrics"]["fad"]["value"], rel=1e-6)
    generated = out.with_name("report_generated")
    (generated / "101.wav").unlink()  # an interrupted run: a clip lost, a journal line cut short
    with open(generated / "generated.rank0.jsonl", "a") as journal:
        journal.write('{"id": "102", "fi')
    assert bench(ckpt, data, out) == 0
    resumed = json.loads(out.read_text())
    assert resumed["generation"]["calls"] == 1 and resumed["generation"]["clips"] == 2  # only 101's batch again
    assert resumed["metrics"]["kl"]["value"] == pytest.approx(report["metrics"]["kl"]["value"], rel=1e-5)  # seeded
    with pytest.raises(SystemExit, match=r"other settings \(seed differ\)"):
        bench(ckpt, data, out, "--seed", "4")
    kwargs = json.loads(EMBEDDER_ARGS[-1])
    kwargs["vggish"]["cfg"]["fc_dim"] = 12
    other = [*EMBEDDER_ARGS[:-1], json.dumps(kwargs)]
    with pytest.raises(SystemExit, match="computed under another protocol"):
        evaluate.main(["--benchmark", "audiocaps", "--data", str(data), "--ckpt", str(ckpt), "--out",
                       str(tmp_path / "x.json"), "--device", "cpu", "--reference-stats", str(stats[0]), *other])
    assert not (tmp_path / "x.json").exists()


def test_benchmark_refusals_are_one_line(audiocaps, tmp_path, capsys):
    ckpt, data = audiocaps
    with pytest.raises(SystemExit, match="--prepare"):  # not prepared yet
        bench(ckpt, data, tmp_path / "a.json")
    mc = tmp_path / "mc"
    mc.mkdir()
    tone(mc / "m0.wav", 2.0, 32000)
    write_csv(mc / MUSICCAPS.csv_name, MUSICCAPS.columns, [musiccaps_row("m0", 0, 2)])
    assert evaluate.main(["--benchmark", "musiccaps", "--data", str(mc), "--prepare"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit, match="sample-rate mismatch"):
        evaluate.main(["--benchmark", "musiccaps", "--data", str(mc), "--ckpt", str(ckpt), "--out",
                       str(tmp_path / "b.json"), "--device", "cpu", *EMBEDDER_ARGS])
    assert len([line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]) == 1
    os.remove(data / "yt2.wav")
    with pytest.raises(SystemExit, match="--allow-missing 1"):
        evaluate.main(["--benchmark", "audiocaps", "--data", str(data), "--prepare"])


def test_two_torchrun_ranks_match_one(audiocaps, tmp_path):
    ckpt, data = audiocaps
    assert evaluate.main(["--benchmark", "audiocaps", "--data", str(data), "--prepare"]) == 0
    assert bench(ckpt, data, tmp_path / "one.json") == 0
    single = json.loads((tmp_path / "one.json").read_text())
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{TESTS}{os.pathsep}{ROOT}")
    script = ("import sys, support.metric_assets as t; from magnet_lightning.cli import evaluate; "
              "from magnet_lightning.metrics.embedders import register_embedder; "
              "register_embedder('toy_clap', lambda **kw: t.ToyClap()); sys.exit(evaluate.main(sys.argv[1:]))")
    (tmp_path / "launch.py").write_text(script + "\n")
    out = tmp_path / "two.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
           str(tmp_path / "launch.py"), "--benchmark", "audiocaps", "--data", str(data), "--ckpt", str(ckpt),
           "--out", str(out), "--device", "cpu", "--batch-size", "2", "--seed", "3", "--bootstrap", "50",
           "--fad-inf-bootstrap", "5", "--reference-stats", str(tmp_path / "stats"), *EMBEDDER_ARGS]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(out.read_text())
    assert two["generation"]["world_size"] == 2 and two["generation"]["clips"] == 3
    assert len(list((tmp_path / "stats").glob("reference_stats-*.pt"))) == 1  # embedded by both ranks, saved once
    for key in ("fad", "kad", "kl", "clap"):
        assert two["metrics"][key]["value"] == pytest.approx(single["metrics"][key]["value"], rel=1e-4, abs=1e-6)


def test_a_late_rank_still_generates_its_share(tmp_path):
    """Two ranks, the second starting 3 s late: every clip is generated (each rank's share is cut from one snapshot
    of the folder; a rank that looked at the folder after another had written would skip batches)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{TESTS}{os.pathsep}{ROOT}")
    proc = subprocess.run([sys.executable, str(TESTS / "support" / "benchmark_ranks.py"), str(tmp_path / "gen"),
                           str(free_port())], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.stem for p in (tmp_path / "gen").glob("*.wav")) == [f"clip{i}" for i in range(6)]
