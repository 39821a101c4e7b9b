"""Generation API and CLI end to end on CPU: a tiny checkpoint written like Lightning's, a random-weight T5 and a
tiny random-weight HF EnCodec saved to disk (16 kHz, 50 Hz, K=4, V=64)."""

import json
import subprocess
import sys

import pytest
import soundfile
import torch
from support.tiny_generator import STEPS

from magnet_lightning.cli.generate import main
from magnet_lightning.data.prompts import read_prompts
from magnet_lightning.generation.generator import generate


def test_generate_tokens_and_audio_full_length(gen):
    result = gen.generate(["calm piano", "fast drums"], seed=0)
    assert result.tokens.shape == (2, 4, 25)
    assert ((result.tokens >= 0) & (result.tokens < 64)).all()
    assert result.audio.shape == (2, 1, 25 * 320) and result.sample_rate == 16000
    assert result.config.decoding_steps == tuple(STEPS) and result.config.span_len == 3
    again = gen.generate(["calm piano", "fast drums"], seed=0)
    assert torch.equal(result.tokens, again.tokens)


def test_unconditional_and_mixed_batches(gen):
    assert gen.generate(num_samples=3, seed=1, decode_audio=False).tokens.shape == (3, 4, 25)
    assert gen.generate(["rain", None], seed=1, decode_audio=False).tokens.shape == (2, 4, 25)


def test_prompt_continuation_keeps_prompt_tokens(gen):
    prompt = torch.randint(0, 64, (4, 10))
    result = gen.generate(["jazz", "rock"], prompt=prompt, duration=1.0, seed=0, decode_audio=False)
    assert result.tokens.shape == (2, 4, 50)
    assert torch.equal(result.tokens[..., :10], prompt.expand(2, -1, -1))


def test_audio_prompt_and_infill(gen):
    t = torch.arange(16000) / 16000
    clip = (0.5 * torch.sin(2 * torch.pi * 220 * t * (1 + t)) + 0.1 * torch.randn(16000))[None]  # [1, N], 1 s
    original = gen.codec.encode(clip[None], 16000)
    edited = gen.generate(["birds"], prompt=clip, prompt_sample_rate=16000, infill=(0.3, 0.62), seed=0)
    start, end = 15, 31  # floor(0.3 * 50), floor(0.62 * 50)
    assert edited.tokens.shape == original.shape
    assert torch.equal(edited.tokens[..., :start], original[..., :start])
    assert torch.equal(edited.tokens[..., end:], original[..., end:])
    assert not torch.equal(edited.tokens[..., start:end], original[..., start:end])
    # 1 s from a 0.5-s checkpoint: long-form, continuing a prompt shorter than one window
    cont = gen.generate(["birds"], prompt=clip[..., :6400], prompt_sample_rate=16000, duration=1.0, seed=0)
    assert cont.tokens.shape[-1] == 50 and torch.equal(cont.tokens[..., :20],
                                                       gen.codec.encode(clip[None, :, :6400], 16000))


def test_bad_requests(gen):
    with pytest.raises(ValueError, match="codebook"):
        gen.generate(["x"], decoding_steps=[3, 2, 2])
    with pytest.raises(ValueError, match="infill"):
        gen.generate(["x"], infill=(0.1, 0.2))
    with pytest.raises(ValueError, match="more than"):
        gen.generate(["x"], prompt=torch.zeros(4, 40, dtype=torch.long), duration=0.5)


def test_module_level_generate(assets):
    result = generate(["soft strings"], ckpt=assets[0], device="cpu", seed=3, decode_audio=False,
                      temperature=1.0, span_arrangement="stride1")
    assert result.tokens.shape == (1, 4, 25) and result.config.span_arrangement == "stride1"
    with pytest.raises(ValueError, match="ckpt"):
        generate(["x"])


def test_package_level_call(assets):
    import magnet_lightning
    import magnet_lightning.generate

    result = magnet_lightning.generate(["organ"], ckpt=assets[0], device="cpu", seed=0, decode_audio=False)
    assert result.tokens.shape == (1, 4, 25)


def test_read_prompts(tmp_path):
    (tmp_path / "p.txt").write_text("a calm piano\n\n  drums  \n")
    assert read_prompts(tmp_path / "p.txt") == [("0000", "a calm piano"), ("0001", "drums")]
    (tmp_path / "p.csv").write_text("name,caption\nfirst,warm pad\nsecond,\"bass, deep\"\n")
    assert read_prompts(tmp_path / "p.csv") == [("first", "warm pad"), ("second", "bass, deep")]
    (tmp_path / "p.jsonl").write_text('{"text": "choir"}\n{"text": "organ", "name": "o"}\n')
    assert read_prompts(tmp_path / "p.jsonl") == [("0000", "choir"), ("o", "organ")]
    (tmp_path / "bad.jsonl").write_text('{"description": "no caption"}\n')
    with pytest.raises(ValueError, match="record 1"):
        read_prompts(tmp_path / "bad.jsonl")


def test_cli_writes_normalised_wavs(assets, tmp_path):
    import pyloudnorm

    ckpt, _ = assets
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano\nfast drums\nwarm pad\n")
    out = tmp_path / "out"
    assert main(["--ckpt", str(ckpt), "--prompts", str(prompts), "--duration", "1.0", "--out", str(out),
                 "--batch-size", "2", "--seed", "0", "--save-tokens", "--steps", "2", "2", "1", "1"]) == 0
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records] == ["calm piano", "fast drums", "warm pad"]
    for record in records:
        wav, sr = soundfile.read(out / record["file"])
        assert sr == 16000 and wav.shape == (16000,) and record["frames"] == 50
        assert pyloudnorm.Meter(sr).integrated_loudness(wav) == pytest.approx(-14.0, abs=0.1)
    assert len(list(out.glob("*.codes.npy"))) == 3


def test_cli_infill(assets, tmp_path):
    ckpt, _ = assets
    clip = 0.3 * torch.randn(16000).numpy()
    soundfile.write(tmp_path / "clip.wav", clip, 16000)
    out = tmp_path / "edit"
    main(["--ckpt", str(ckpt), "--text", "add a bell", "--prompt-audio", str(tmp_path / "clip.wav"),
          "--infill", "0.2", "0.6", "--out", str(out), "--seed", "1", "--no-normalize"])
    wavs = list(out.glob("*.wav"))
    assert len(wavs) == 1 and soundfile.read(wavs[0])[0].shape == (16000,)


def test_python_dash_m_entry_point():
    cmd = [sys.executable, "-m", "magnet_lightning.generate", "--help"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--infill" in proc.stdout and "--prompt-audio" in proc.stdout


def test_cli_missing_weights_exit_with_the_reason(assets, tmp_path):
    ckpt, _ = assets
    with pytest.raises(SystemExit, match="absent.ckpt not found"):
        main(["--ckpt", str(tmp_path / "absent.ckpt"), "--text", "x", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="(?s)t5-base.*hf download"):
        main(["--ckpt", str(ckpt), "--text-encoder", "t5-base", "--text", "x", "--out", str(tmp_path / "o")])


def test_cli_unreadable_prompt_audio_exits_with_the_reason(assets, tmp_path):
    ckpt, _ = assets
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(SystemExit, match="--prompt-audio: cannot read audio file .*bad.wav"):
        main(["--ckpt", str(ckpt), "--text", "x", "--prompt-audio", str(tmp_path / "bad.wav"),
              "--out", str(tmp_path / "o")])


def test_cli_expands_home_in_every_path(assets, tmp_path, monkeypatch):
    import shutil

    ckpt, _ = assets
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copy(ckpt, tmp_path / "model.ckpt")
    (tmp_path / "captions.txt").write_text("calm piano\n")
    assert main(["--ckpt", "~/model.ckpt", "--prompts", "~/captions.txt", "--out", "~/samples", "--steps",
                 *map(str, STEPS)]) == 0
    assert (tmp_path / "samples" / "0000.wav").is_file() and not (tmp_path / "~").exists()


def test_a_seed_per_row_makes_each_clip_independent_of_its_batch(gen):
    """seed=[...]: row b samples from its own generator, so a caption keeps its tokens in another batch position
    (the benchmark's one seed per caption); one seed for the batch is one stream, where the position matters."""
    first = gen.generate(["calm piano", "fast drums"], seed=[5, 6], decode_audio=False).tokens
    moved = gen.generate(["rain", "calm piano"], seed=[7, 5], decode_audio=False).tokens
    assert torch.equal(first[0], moved[1])
    shared = gen.generate(["rain", "calm piano"], seed=5, decode_audio=False).tokens
    assert not torch.equal(first[0], shared[1])
    with pytest.raises(ValueError, match="2 seeds for 3 rows"):
        gen.generate(["a", "b", "c"], seed=[1, 2], decode_audio=False)
