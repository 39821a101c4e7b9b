"""Two-model compositions through the generator and the CLI, on tiny checkpoints: hybrid inference (the AR model's
prompt, MAGNeT's rest) and rescoring a MAGNeT generation with an autoregressive checkpoint."""

import json

import pytest
import torch
from support.tiny_generator import DURATION, STEPS

from magnet_lightning.cli.generate import main
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.generation.two_model import hybrid_generate


@pytest.fixture(scope="module")
def pair(assets, ar_ckpt):
    magnet = MagnetGenerator.from_pretrained(assets[0], device="cpu")
    ar = MagnetGenerator.from_pretrained(ar_ckpt, device="cpu", text_encoder=magnet.text_encoder, codec=False)
    return magnet, ar


def test_hybrid_prompt_is_the_ar_models_generation(pair):
    magnet, ar = pair
    texts = ["calm piano", "fast drums"]
    result = hybrid_generate(magnet, ar, texts, duration=DURATION, prompt_seconds=0.2, seed=4, decode_audio=False,
                             decoding=magnet.decoding_config(DURATION, decoding_steps=STEPS))
    alone = ar.generate(texts, duration=0.2, seed=4, decode_audio=False).tokens  # 10 frames
    assert result.tokens.shape == (2, 4, 25) and torch.equal(result.tokens[..., :10], alone)
    assert ((result.tokens >= 0) & (result.tokens < 64)).all()
    with pytest.raises(ValueError, match="prompt_seconds"):
        hybrid_generate(magnet, ar, texts, duration=DURATION, prompt_seconds=DURATION)
    with pytest.raises(ValueError, match="MAGNeT generator and an autoregressive"):
        hybrid_generate(ar, magnet, texts, duration=DURATION)


def test_generator_rescoring_uses_the_ar_model(pair):
    magnet, ar = pair
    config = magnet.decoding_config(DURATION, decoding_steps=STEPS, use_sampling=False)
    base = magnet.generate(["calm piano"], decoding=config, decode_audio=False).tokens
    with pytest.raises(ValueError, match="needs rescore_weight W with 0 <= W < 1"):  # as the command line says
        magnet.generate(["calm piano"], decoding=config, decode_audio=False, rescorer=ar)
    rescored = magnet.generate(["calm piano"], decoding=config.replace(rescore_weight=0.0), decode_audio=False,
                               rescorer=ar).tokens
    assert not torch.equal(base, rescored)
    with pytest.raises(ValueError, match="needs a rescorer"):
        magnet.generate(["x"], decoding=config.replace(rescore_weight=0.5))


def test_cli_hybrid_and_rescoring(assets, ar_ckpt, tmp_path):
    ckpt, _ = assets
    out = tmp_path / "hybrid"
    assert main(["--ckpt", str(ckpt), "--hybrid-ar", str(ar_ckpt), "--hybrid-prompt-seconds", "0.2", "--text", "x",
                 "--steps", *map(str, STEPS), "--out", str(out), "--seed", "0"]) == 0
    record = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    assert record["hybrid_ar"] == str(ar_ckpt) and record["frames"] == 25
    out = tmp_path / "rescored"
    assert main(["--ckpt", str(ckpt), "--rescorer", str(ar_ckpt), "--rescore-weight", "0.5", "--text", "x",
                 "--steps", *map(str, STEPS), "--out", str(out)]) == 0
    record = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    assert record["rescorer"] == str(ar_ckpt) and record["decoding"]["rescore_weight"] == 0.5


@pytest.mark.parametrize("extra,message", [
    (["--rescorer", "AR"], "needs --rescore-weight"),
    (["--rescore-weight", "0.5"], "needs --rescorer"),
    (["--rescorer", "AR", "--rescore-weight", "1.2"], "0 <= W < 1"),
    (["--rescorer", "MAGNET", "--rescore-weight", "0.5"], "needs an autoregressive checkpoint"),
    (["--hybrid-ar", "AR", "--hybrid-prompt-seconds", "9"], "--hybrid-prompt-seconds 9"),
])
def test_cli_partner_mistakes_are_one_line(assets, ar_ckpt, tmp_path, capsys, extra, message):
    ckpt, _ = assets
    extra = [str(ar_ckpt) if a == "AR" else str(ckpt) if a == "MAGNET" else a for a in extra]
    with pytest.raises(SystemExit) as exit_info:
        main(["--ckpt", str(ckpt), "--text", "x", "--out", str(tmp_path / "o"), *extra])
    assert exit_info.value.code == 2 and message in str(exit_info.value)
    assert not (tmp_path / "o").exists()


def test_partners_share_the_text_encoder_a_checkpoint_names(pair):
    magnet, _ = pair
    encoder = magnet.text_encoder  # random:tiny, the checkpoints' text encoder
    assert encoder.serves("random:tiny") and encoder.serves("tiny")
    assert not encoder.serves("t5-base") and not encoder.serves(None)
