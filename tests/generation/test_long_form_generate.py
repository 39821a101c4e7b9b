"""Long-form generation through the generator API, every family: a duration past the checkpoint's segment runs in
windows by default and says so in one log line, the whole length comes back (tokens and audio), extend_stride sets
the windows, one progress count covers them, nothing changes within the segment, and a stride of a whole window, a
prompt of a whole window or an infill region longer than one window are refused."""

import json
import logging
import re

import pytest
import soundfile
import torch

from magnet_lightning.cli.generate import main
from magnet_lightning.config import model_preset
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.generation.long_form import num_windows
from magnet_lightning.models.registry import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = [3, 2, 2, 2]


@pytest.fixture(scope="module")
def tokens_only():
    """family -> a generator of a tiny random model, 0.5-s segment (25 frames), no codec or text encoder."""
    torch.manual_seed(0)
    out = {}
    for family in ("magnet", "musicgen", "hybrid"):
        cfg = model_preset("tiny", dim=32, num_heads=4, num_layers=2, ffn_dim=64, codebook_size=16, text_dim=8,
                           subcodes_context=-1 if family == "musicgen" else 3)
        model = build_model(family, cfg).eval()
        defaults = {} if family == "musicgen" else {"decoding_steps": STEPS, "prompt_seconds": 0.2}
        out[family] = MagnetGenerator(model, segment_duration=0.5, frame_rate=50.0, decoding_defaults=defaults)
    return out


def _long_form_lines(caplog):
    return [r for r in caplog.records if "long-form generation" in r.getMessage()]


def test_a_duration_past_the_segment_is_generated_in_windows_with_audio_for_the_whole_length(gen, caplog):
    caplog.set_level(logging.INFO, logger="magnet_lightning.generation.generator")
    seen = []
    result = gen.generate(["calm piano"], duration=2.0, seed=0, progress=lambda d, t: seen.append((d, t)))
    assert result.tokens.shape == (1, 4, 100) and result.audio.shape == (1, 1, 100 * 320)
    (line,) = _long_form_lines(caplog)
    windows = num_windows(100, 25, int(gen.default_stride() * gen.frame_rate + 1e-6))
    assert f"in {windows} windows" in line.getMessage() and "--extend-stride" in line.getMessage()
    assert seen[-1] == (windows * sum(STEPS),) * 2 == (gen.num_steps(result.config, 2.0),) * 2
    gen.generate(["calm piano"], duration=2.0, seed=1, decode_audio=False)
    assert len(_long_form_lines(caplog)) == 1  # the same plan again: no second line


def test_extend_stride_sets_the_windows_and_within_the_segment_nothing_changes(gen, caplog):
    caplog.set_level(logging.INFO, logger="magnet_lightning.generation.generator")
    seen = []
    gen.generate(["rain"], duration=2.0, seed=0, extend_stride=0.2, decode_audio=False,
                 progress=lambda d, t: seen.append(t))
    assert set(seen) == {9 * sum(STEPS)}  # 1 + ceil((100 - 25) / 10) windows
    caplog.clear()
    plain = gen.generate(["rain"], duration=0.5, seed=0, decode_audio=False).tokens
    assert torch.equal(gen.generate(["rain"], duration=0.5, seed=0, extend_stride=0.3, decode_audio=False).tokens,
                       plain)
    assert not _long_form_lines(caplog)


@pytest.mark.parametrize("family", ["magnet", "musicgen", "hybrid"])
@pytest.mark.parametrize("duration,stride", [(0.5, None), (1.3, None), (2.0, 0.1), (3.02, 0.45)])
def test_every_family_returns_exactly_the_requested_length(tokens_only, family, duration, stride):
    g = tokens_only[family]
    seen = []
    result = g.generate(num_samples=2, duration=duration, seed=0, extend_stride=stride, decode_audio=False,
                        progress=lambda d, t: seen.append((d, t)))
    frames = round(duration * 50)
    assert result.tokens.shape == (2, 4, frames) and bool((result.tokens < 16).all())
    total = g.num_steps(result.config, duration, stride)
    assert {t for _, t in seen} == {total} and seen[-1][0] == total


def test_a_prompt_is_continued_over_windows_and_kept_in_front(tokens_only):
    for family in ("magnet", "musicgen"):
        prompt = torch.randint(0, 16, (4, 12))
        result = tokens_only[family].generate(num_samples=2, duration=1.6, prompt=prompt, seed=0,
                                              decode_audio=False)
        assert result.tokens.shape == (2, 4, 80) and torch.equal(result.tokens[..., :12], prompt.expand(2, -1, -1))


def test_long_form_mistakes_are_named(tokens_only, gen):
    with pytest.raises(ValueError, match="below the checkpoint's 0.5-s segment"):
        tokens_only["musicgen"].generate(num_samples=1, duration=2.0, extend_stride=0.5, decode_audio=False)
    with pytest.raises(ValueError, match="not shorter than the checkpoint's 0.5-s segment"):
        tokens_only["magnet"].generate(num_samples=1, duration=2.0, prompt=torch.zeros(4, 25, dtype=torch.long),
                                       decode_audio=False)
    clip = torch.randint(0, 64, (1, 4, 100))
    edited = gen.generate(["birds"], prompt=clip, infill=(1.0, 1.3), seed=0, decode_audio=False).tokens
    assert torch.equal(edited[..., :50], clip[..., :50]) and torch.equal(edited[..., 65:], clip[..., 65:])
    with pytest.raises(ValueError, match="more than one window"):
        gen.generate(["birds"], prompt=clip, infill=(0.2, 1.0), decode_audio=False)


def test_cli_long_form_writes_the_whole_length_with_one_log_line(assets, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="magnet_lightning.generation.generator")
    out = tmp_path / "long"
    assert main(["--ckpt", str(assets[0]), "--text", "calm piano", "--text", "rain", "--duration", "1.5",
                 "--extend-stride", "0.3", "--out", str(out), "--batch-size", "1", "--seed", "0",
                 "--steps", "2", "1", "1", "1"]) == 0
    for wav in sorted(out.glob("*.wav")):
        assert soundfile.read(wav)[0].shape == (24000,)
    (line,) = _long_form_lines(caplog)
    assert "in 5 windows" in line.getMessage()  # 1 + ceil((75 - 25) / 15)
    records = [json.loads(r) for r in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["long_form"] for r in records] == [{"windows": 5, "window_seconds": 0.5, "stride_seconds": 0.3}] * 2
    assert [r["adapter"] for r in records] == [None, None]


@pytest.mark.parametrize("extra,message", [
    (["--extend-stride", "0.5"], "--extend-stride 0.5: must be shorter than the checkpoint's 0.5-s segment"),
    (["--extend-stride", "0"], "--extend-stride must be a positive number"),
    (["--prompt-audio", "{half}"], "--prompt-audio is 0.50 s: a generation longer than the checkpoint's 0.5-s"),
    (["--prompt-audio", "{long}", "--infill", "0.1", "0.9"], "regenerates 0.8 s, more than the checkpoint's 0.5-s"),
])
def test_cli_long_form_mistakes_are_one_line_before_loading(assets, tmp_path, monkeypatch, extra, message):
    for name, seconds in (("half", 0.5), ("long", 1.0)):
        soundfile.write(tmp_path / f"{name}.wav", 0.1 * torch.randn(int(16000 * seconds)).numpy(), 16000)
    extra = [arg.format(half=tmp_path / "half.wav", long=tmp_path / "long.wav") for arg in extra]
    monkeypatch.setattr(MagnetGenerator, "from_pretrained", lambda *a, **k: pytest.fail("loaded a model"))
    with pytest.raises(SystemExit, match=re.escape(message)):
        main(["--ckpt", str(assets[0]), "--text", "x", "--duration", "2", "--out", str(tmp_path / "o"), *extra])
    assert not (tmp_path / "o").exists()


def test_rescoring_runs_per_window(tokens_only, monkeypatch):
    from magnet_lightning.generation.rescoring import ARRescorer

    widths, original = [], ARRescorer.__call__

    def spy(self, codes, stage):
        widths.append(codes.shape[-1])
        return original(self, codes, stage)

    monkeypatch.setattr(ARRescorer, "__call__", spy)
    result = tokens_only["magnet"].generate(num_samples=2, duration=1.3, seed=0, decode_audio=False,
                                            rescorer=tokens_only["musicgen"], rescore_weight=0.5, extend_stride=0.3)
    assert result.tokens.shape == (2, 4, 65)
    assert len(widths) == 4 * sum(STEPS) and set(widths) == {25, 20}  # windows [0, 25) [15, 40) [30, 55) [45, 65)
