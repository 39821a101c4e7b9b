"""`magnet-evaluate` on a melody-conditioned checkpoint (tiny, random weights): as audiocraft's MusicGen solver
evaluates, each item is generated with its own reference clip as the melody and the report gains the chroma cosine
similarity of the generations against those references; `--no-melody` and text-only checkpoints keep the usual
report; a melody evaluation without references is one line before the model loads."""

import math

import pytest
import soundfile
import torch
from support.evaluation import EMBEDDER_ARGS, RATE, bench
from support.melody_files import melody_module

from magnet_lightning.cli import evaluate
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.metrics.chroma import ChromaCosineSimilarity

pytestmark = pytest.mark.usefixtures("one_thread", "toy_clap_registered")  # the toy CLAP embedder


@pytest.fixture(scope="module")
def melody_ckpt(assets):
    root = assets[0]
    torch.manual_seed(0)
    module = melody_module("magnet", "frames", codec=str(root / "codec"), sample_rate=RATE, frame_rate=50.0,
                           segment_duration=1.2, decoding={"decoding_steps": [2, 1, 1, 1]})
    path = root / "melody.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path


@pytest.fixture
def spy(monkeypatch):
    """The melodies and audio of every generation of the evaluation."""
    calls, original = [], MagnetGenerator.generate

    def generate(self, texts, **kwargs):
        result = original(self, texts, **kwargs)
        calls.append((kwargs.get("melody"), kwargs.get("melody_sample_rate"), result.audio))
        return result

    monkeypatch.setattr(MagnetGenerator, "generate", generate)
    return calls


def run(assets, ckpt, *extra, reference=True):
    root, _, csv, audio = assets
    out = root / "melody_report.json"
    args = ["--ckpt", str(ckpt), "--prompts", str(csv), "--out", str(out), "--batch-size", "2", "--limit", "2",
            "--seed", "1", "--no-progress", "--device", "cpu", "--metrics", "clap", *EMBEDDER_ARGS, *extra]
    assert evaluate.main(args + (["--reference", str(audio)] if reference else [])) == 0
    import json

    return json.loads(out.read_text())


def test_each_item_follows_its_reference_and_the_report_has_chroma(assets, melody_ckpt, spy):
    report = run(assets, melody_ckpt)
    assert report["settings"]["melody"] == "reference" and set(report["metrics"]) == {"clap", "chroma_cosine"}
    [(melodies, rate, audio)] = spy  # one batch of the 2 items
    assert rate == RATE and len(melodies) == 2
    references = []
    for key, melody in zip(("clip0", "clip1"), melodies):
        wav, ref_rate = soundfile.read(str(assets[3] / f"{key}.wav"), dtype="float32", always_2d=True)
        assert ref_rate == 32000 and melody.shape[-1] == round(wav.shape[0] / 2)  # the reference, at the model rate
        references.append(melody)
    # the figure: chroma cosine of each generation (cut to its reference) against the reference it followed
    expected = ChromaCosineSimilarity(sample_rate=RATE)
    longest = max(r.shape[-1] for r in references)
    pad = [torch.nn.functional.pad(r, (0, longest - r.shape[-1])) for r in references]
    cut = [torch.nn.functional.pad(a[..., :r.shape[-1]], (0, longest - r.shape[-1])) for a, r in zip(audio, references)]
    expected.update(torch.stack(cut), torch.stack(pad), torch.tensor([r.shape[-1] for r in references]), RATE)
    assert math.isclose(report["metrics"]["chroma_cosine"], float(expected.compute()), rel_tol=1e-4)  # loudness-free


def test_a_benchmark_run_follows_each_clip_and_scores_chroma_per_clip(audiocaps, melody_ckpt, tmp_path,
                                                                       spy):
    _, data = audiocaps
    assert evaluate.main(["--benchmark", "audiocaps", "--data", str(data), "--prepare"]) == 0
    out = tmp_path / "report.json"
    assert bench(melody_ckpt, data, out, "--metrics", "clap") == 0
    import json

    report = json.loads(out.read_text())
    entry, clips = report["metrics"]["chroma_cosine"], report["per_clip"]
    assert report["settings"]["melody"] == "reference" and 0 <= entry["value"] <= 1 and entry["frames"] == 3 * 5
    assert entry["ci95"][0] <= entry["value"] <= entry["ci95"][1]
    assert entry["value"] == pytest.approx(sum(c["chroma_cosine"] for c in clips.values()) / 3)  # 5 frames each
    assert "| Chroma cosine (melody: its reference) |" in out.with_suffix(".md").read_text()
    melodies = [m for call in spy for m in call[0]]
    for item, melody in zip(sorted(clips), melodies):  # each caption generated with its own eval-set clip
        clip, _ = soundfile.read(str(data / "eval_set-audiocaps" / f"{item}.wav"), dtype="float32", always_2d=True)
        assert torch.equal(melody, torch.from_numpy(clip.T))
    assert len(melodies) == 3 and all(call[1] == RATE for call in spy)


def test_no_melody_and_text_only_checkpoints_keep_the_usual_report(assets, melody_ckpt, spy):
    report = run(assets, melody_ckpt, "--no-melody")
    assert report["settings"]["melody"] is None and set(report["metrics"]) == {"clap"}
    assert spy[-1][0] is None
    report = run(assets, assets[1])  # the text-only checkpoint
    assert "melody" not in report["settings"] and set(report["metrics"]) == {"clap"}


def test_a_melody_evaluation_without_references_is_one_line(assets, melody_ckpt, capsys, spy):
    with pytest.raises(SystemExit) as exit_info:
        run(assets, melody_ckpt, reference=False)
    assert exit_info.value.code == 2 and "pass --reference" in str(exit_info.value) and not spy


def test_each_clip_is_scored_against_its_own_reference():
    from magnet_lightning.metrics.generation_eval import update_chroma

    t = torch.arange(24000) / RATE
    refs = [0.3 * torch.sin(2 * math.pi * f * t[: 20000 + 4000 * i])[None] for i, f in enumerate((220.0, 311.0))]
    same = ChromaCosineSimilarity(sample_rate=RATE)  # each clip as its reference (louder, stereo): 1
    update_chroma(same, [2 * refs[0].expand(2, -1), refs[1], refs[0]], [refs[0], refs[1], None], RATE)
    swapped = ChromaCosineSimilarity(sample_rate=RATE)  # another pitch: 0 (argmax chroma, as the reference)
    update_chroma(swapped, [refs[1][..., :20000], refs[0].expand(1, -1)], refs, RATE)
    assert float(same.compute()) == pytest.approx(1.0) and float(same.weight) == 5 + 6
    assert float(swapped.compute()) == pytest.approx(0.0)
