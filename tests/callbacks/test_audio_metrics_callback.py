"""AudioMetricsCallback inside tiny CPU training runs: FAD / KL / CLAP logged (and to an offline W&B run with audio,
table and mel images), EMA weights scored, train mode restored, embedders kept out of the module; the evaluation
loop's rank split (equal generate calls, rank-independent audio); codec latents; mel pictures."""

import glob
import json
import logging
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from support.helpers import FixedBatches, loader
from support.metric_assets import FRAMES, RATE, TINY_VGGISH, make_module
from support.paths import ROOT, TESTS

from magnet_lightning.callbacks import AudioMetricsCallback
from magnet_lightning.callbacks.spectrogram import colorize, mel_image
from magnet_lightning.metrics.eval_set import EvalItem
from magnet_lightning.metrics.generation_eval import evaluate_items, rank_batches
from magnet_lightning.metrics.suite import AudioEvalSuite

pytestmark = pytest.mark.usefixtures("toy_clap_registered")  # the toy CLAP embedder (support/metric_assets.py)

TINY_EMBEDDERS = {"embedders": {"fad": "vggish", "kl": "passt", "clap": "toy_clap"},
                  "embedder_kwargs": {"vggish": {"cfg": TINY_VGGISH}, "passt": {"tiny": {"max_seconds": 1.0}}},
                  "allow_random_embedders": True}


def trainer(tmp_path, callbacks, logger=False, max_steps=2):
    return L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, val_check_interval=2, limit_val_batches=2,
                     num_sanity_val_steps=0, logger=logger, callbacks=callbacks, enable_checkpointing=False,
                     enable_model_summary=False, default_root_dir=tmp_path)


def test_callback_logs_three_metrics_and_wandb_media(tmp_path, codec_dir, monkeypatch, caplog):
    from lightning.pytorch.loggers import WandbLogger

    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))  # table artifacts stage here, not in ~/.local
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("MAGNET_WEIGHTS_DIR", str(tmp_path / "no_weights"))
    module = make_module(codec_dir)
    keys_before = set(module.state_dict())
    callback = AudioMetricsCallback(every_n_steps=2, num_prompts=3, batch_size=2, max_duration=2.0,
                                    decoding_steps=[2, 1, 1, 1], log_examples=2, **TINY_EMBEDDERS)
    logger = WandbLogger(project="t", save_dir=str(tmp_path), offline=True)
    train, val = loader(FixedBatches(4, frames=FRAMES, vary=True)), loader(FixedBatches(2, frames=FRAMES, seed=7))
    with caplog.at_level(logging.WARNING):
        run = trainer(tmp_path, [callback], logger)
        run.fit(module, train, val)
    assert "RANDOM-WEIGHT VGGISH EMBEDDER" in caplog.text  # never a silent fallback
    fit_results = dict(callback.last_results)
    assert set(fit_results) == {"fad", "kl", "clap"}
    assert all(math.isfinite(v) for v in fit_results.values())
    assert len(callback._items) == 3 and callback._items[0].codes.shape == (4, FRAMES - 5)  # padding removed
    assert module.model.training  # train mode restored after generating
    assert set(module.state_dict()) == keys_before  # embedders / codec never joined the module
    validated = run.validate(module, val, verbose=False)[0]
    assert {"eval/fad", "eval/kl", "eval/clap"} <= set(validated)
    # Same weights, prompts and seeds as the evaluation at the end of fit: the same numbers.
    assert validated["eval/clap"] == pytest.approx(fit_results["clap"], abs=1e-5)
    assert validated["eval/fad"] == pytest.approx(fit_results["fad"], rel=1e-4)
    logger.experiment.finish()
    run_dir = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))[0]
    tables = glob.glob(f"{run_dir}/files/media/table/eval/examples_*.table.json")
    audio = glob.glob(f"{run_dir}/files/media/audio/**/*.wav", recursive=True)
    images = glob.glob(f"{run_dir}/files/media/images/**/*.png", recursive=True)
    assert len(tables) == 2 and len(audio) == 2 * 2 * 2 and len(images) == 2 * 2  # 2 runs x 2 examples
    table = json.loads(Path(tables[0]).read_text())
    assert table["columns"][:5] == ["id", "prompt", "generated", "reference", "clap"]
    assert len(table["data"]) == 2 and table["data"][0][1].startswith("calm piano")
    assert isinstance(table["data"][0][4], float)


def test_metrics_use_ema_weights_and_run_only_every_n_steps(tmp_path, codec_dir):
    from magnet_lightning.training.ema import EMA

    module = make_module(codec_dir, ema_every_n_steps=1, ema_decay=0.5)
    seen = []

    class Spy(AudioMetricsCallback):
        def run(self, trainer, pl_module):
            ema = next(c for c in trainer.callbacks if isinstance(c, EMA))
            # inside the validation window the EMA callback has swapped: its copy holds the live weights
            live = [p.detach().clone() for p in ema._average_model.module.model.parameters()]
            seen.append((trainer.global_step, [p.detach().clone() for p in pl_module.model.parameters()], live))
            return super().run(trainer, pl_module)

    callback = Spy(every_n_steps=4, num_prompts=2, batch_size=2, metrics=["fad"], embedders={"fad": "codec"},
                   decoding_steps=[1, 1, 1, 1], progress_bar=False)
    run = trainer(tmp_path, [callback], max_steps=4)
    run.fit(module, loader(FixedBatches(4, frames=FRAMES, vary=True)), loader(FixedBatches(1, frames=FRAMES)))
    assert [step for step, *_ in seen] == [4]  # validations at steps 2 and 4; every_n_steps=4 -> only at 4
    _, scored, live = seen[0]
    final_ema = list(module.model.parameters())  # at train end the EMA callback copies the average in
    assert all(torch.equal(a, b) for a, b in zip(scored, final_ema))
    assert not all(torch.equal(a, b) for a, b in zip(scored, live))
    assert math.isfinite(callback.last_results["fad"])


class CountingGenerator:
    """Stands in for MagnetGenerator: deterministic audio from (seed, row); counts generate calls."""

    sample_rate, frame_rate, codec = RATE, 50.0, None

    def __init__(self):
        self.calls = []

    def generate(self, texts, duration, seed, progress=None, decode_audio=True, **_):
        self.calls.append((len(texts), seed))
        n = round((duration or 1.0) * 50) * 320  # None: the generator's default length
        g = torch.Generator().manual_seed(seed)
        audio = torch.randn(len(texts), 1, n, generator=g) * 0.1
        return type("R", (), {"audio": audio})()


def toy_suite():
    return AudioEvalSuite(["fad", "kl", "clap"], TINY_EMBEDDERS["embedders"], TINY_EMBEDDERS["embedder_kwargs"],
                          allow_random_embedders=True)


def items_with_references(n):
    g = torch.Generator().manual_seed(1)
    refs = {f"id{i}": torch.randn(1, RATE + 160 * i, generator=g) * 0.1 for i in range(n)}
    return [EvalItem(k, f"caption {k}") for k in refs], refs


def test_rank_split_equal_calls_and_same_result_as_one_rank():
    items, refs = items_with_references(5)
    assert rank_batches(5, 2, 0, 2) == ([0, 2], 2) and rank_batches(5, 2, 1, 2) == ([1], 2)
    single, gen1 = toy_suite(), CountingGenerator()
    evaluate_items(gen1, single, items, batch_size=2, seed=3, references=lambda item: refs[item.key], lufs=None)
    ranks, gens = [toy_suite(), toy_suite()], [CountingGenerator(), CountingGenerator()]
    for rank in (0, 1):
        evaluate_items(gens[rank], ranks[rank], items, rank=rank, world_size=2, batch_size=2, seed=3,
                       references=lambda item: refs[item.key], lufs=None)
    assert len(gens[0].calls) == len(gens[1].calls) == 2  # rank 1 pads with a throw-away batch
    assert sorted(gens[0].calls + gens[1].calls[:1]) == sorted(gen1.calls)  # same batches, same seeds
    for name in ("fad", "kl", "clap"):  # summing the ranks' states == one rank over everything
        ranks[0].metrics[name].merge_state(ranks[1].metrics[name])
    merged, whole = ranks[0].compute(), single.compute()
    for name in whole:
        assert merged[name] == pytest.approx(whole[name], rel=1e-5, abs=1e-6)


def test_min_calls_pads_a_rank_without_items():
    gen = CountingGenerator()
    assert evaluate_items(gen, toy_suite(), [], batch_size=2, min_calls=2, default_duration=1.0) == []
    assert len(gen.calls) == 2
    with pytest.raises(ValueError, match="empty"):
        evaluate_items(gen, toy_suite(), [], batch_size=2)


def test_too_short_items_are_counted_not_lost(caplog):
    items, refs = items_with_references(2)
    refs["id1"] = refs["id1"][..., :8000]  # 0.5 s: below VGGish's 0.975 s
    suite = toy_suite()
    with caplog.at_level(logging.WARNING):
        evaluate_items(CountingGenerator(), suite, items, batch_size=2, references=lambda item: refs[item.key],
                       lufs=None)
    assert suite.skipped == 1 and "shorter than" in caplog.text
    assert int(suite.metrics["kl"].count) >= 1


def test_callback_argument_checks():
    with pytest.raises(ValueError, match="reference"):
        AudioMetricsCallback(prompts="p.csv")
    with pytest.raises(ValueError, match="prompts"):
        AudioMetricsCallback(reference_audio="refs/")
    AudioMetricsCallback(prompts="p.csv", metrics=["clap"])  # CLAP needs no reference


def test_random_embedders_need_the_opt_in(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGNET_WEIGHTS_DIR", str(tmp_path))
    kwargs = {"vggish": {"cfg": TINY_VGGISH}}
    with pytest.raises(FileNotFoundError, match="vggish-10086976.pth"):
        AudioEvalSuite(["fad"], embedder_kwargs=kwargs)
    a = AudioEvalSuite(["fad"], embedder_kwargs=kwargs, allow_random_embedders=True, seed=5)
    b = AudioEvalSuite(["fad"], embedder_kwargs=kwargs, allow_random_embedders=True, seed=5)
    for p, q in zip(a.embedders["vggish"].parameters(), b.embedders["vggish"].parameters()):
        assert torch.equal(p, q)  # seeded


@pytest.mark.parametrize("family", ["hf", "pkg"])
def test_codec_encode_latents_shapes(family):
    from support.tiny_codecs import tiny_hf_model, tiny_pkg_model

    from magnet_lightning.codec.codecs import EncodecPackageCodec, HFEncodecCodec

    codec = HFEncodecCodec(tiny_hf_model(), "t") if family == "hf" else EncodecPackageCodec(tiny_pkg_model())
    wav = torch.randn(2, 2, 3000)  # stereo at 24 kHz: down-mixed and resampled like encode()
    latents = codec.encode_latents(wav, 24000)
    codes = codec.encode(wav, 24000)
    assert latents.shape == (2, codec.latent_dim, codes.shape[-1]) and latents.dtype == torch.float32
    mono = codec.encode_latents(wav.mean(1, keepdim=True), 24000)
    torch.testing.assert_close(latents, mono)


def test_mel_image_and_colormap():
    t = torch.arange(RATE) / RATE
    low = mel_image(torch.sin(2 * torch.pi * 200 * t)[None], RATE, n_mels=40)
    high = mel_image(torch.sin(2 * torch.pi * 6000 * t)[None], RATE, n_mels=40)
    assert low.shape == (40, 101, 3) and low.dtype == np.uint8
    # brightest row: near the bottom for a low tone, near the top for a high one
    assert low.sum(axis=(1, 2)).argmax() > 30 and high.sum(axis=(1, 2)).argmax() < 15
    ramp = colorize(np.linspace(0, 1, 5)[None])
    assert ramp[0, 0].tolist() == [0, 0, 4] and ramp[0, -1].tolist() == [252, 253, 191]
    assert (np.diff(ramp[0].astype(int).sum(-1)) > 0).all()  # brighter with level


def test_byte_tokenizer_is_for_random_clap_only(tmp_path):
    from magnet_lightning.metrics.embedders.clap import ByteTokenizer, load_clap

    out = ByteTokenizer()(["ab", ""], max_length=6)
    assert out["input_ids"].tolist() == [[0, 3 + 97, 3 + 98, 2, 1, 1], [0, 2, 1, 1, 1, 1]]
    assert out["attention_mask"].sum(1).tolist() == [4, 2]
    fake = tmp_path / "clap.pt"
    fake.write_bytes(b"x")
    with pytest.raises(ValueError, match="random-weight demos"):
        load_clap(checkpoint=fake, tokenizer="bytes")


DDP_SCRIPT = """
import json, os, sys
import lightning as L
sys.path[:0] = [{root!r}, {tests!r}]
from support.helpers import FixedBatches, loader
import support.metric_assets as t
from magnet_lightning.callbacks import AudioMetricsCallback
from magnet_lightning.metrics.embedders import register_embedder

if __name__ == "__main__":
    register_embedder("toy_clap", lambda **kw: t.ToyClap())
    # rank 0 sees 3 validation items, rank 1 only 1: 2 vs 1 generate calls unless padded
    rows = 3 if os.environ.get("LOCAL_RANK", "0") == "0" else 1
    module = t.make_module({codec!r})
    callback = AudioMetricsCallback(every_n_steps=2, num_prompts=6, batch_size=2, decoding_steps=[1, 1, 1, 1],
                                    progress_bar=False, embedders={{"fad": "codec", "kl": "passt", "clap": "toy_clap"}},
                                    embedder_kwargs={{"passt": {{"tiny": {{"max_seconds": 1.0}}}}}})
    calls = []
    original = AudioMetricsCallback._generator
    def counting(self, pl_module, codec):
        gen = original(self, pl_module, codec)
        generate = gen.generate
        gen.generate = lambda *a, **k: calls.append(1) or generate(*a, **k)
        return gen
    AudioMetricsCallback._generator = counting
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=1, val_check_interval=2, num_sanity_val_steps=0, callbacks=[callback],
                        use_distributed_sampler=False)
    trainer.fit(module, loader(FixedBatches(2, frames=t.FRAMES, vary=True)),
                loader(FixedBatches(1, batch=rows, frames=t.FRAMES, seed=trainer.global_rank)))
    out = {{"rank": trainer.global_rank, "items": len(callback._items), "calls": len(calls),
           "results": callback.last_results}}
    with open(os.path.join({out!r}, f"rank{{trainer.global_rank}}.json"), "w") as f:
        json.dump(out, f)
"""


def test_two_process_ddp_unequal_prompts_same_calls_same_numbers(tmp_path, codec_dir):
    import os
    import subprocess
    import sys

    script = tmp_path / "ddp_metrics.py"
    script.write_text(DDP_SCRIPT.format(root=str(ROOT), tests=str(TESTS), codec=codec_dir, out=str(tmp_path)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script)], check=False, cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["items"] for r in ranks] == [3, 1]
    assert [r["calls"] for r in ranks] == [2, 2]  # rank 1 made a throw-away call
    assert set(ranks[0]["results"]) == {"fad", "kl", "clap"}
    assert ranks[0]["results"] == ranks[1]["results"]  # reduced over both ranks' 4 items


def test_callback_builds_from_yaml_like_lightning_cli():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(AudioMetricsCallback, "audio_metrics")
    cfg = parser.parse_string("""
audio_metrics:
  every_n_steps: 100
  num_prompts: 8
  decoding_steps: [4, 2, 2, 2]
  decoding: {temperature: 2.5}
  metrics: [fad, clap]
  embedders: {fad: codec}
  embedder_kwargs: {passt: {pretrained_length: 10}}
  allow_random_embedders: true
""")
    callback = parser.instantiate_classes(cfg).audio_metrics
    assert isinstance(callback, AudioMetricsCallback)
    assert callback.decoding == {"temperature": 2.5, "decoding_steps": [4, 2, 2, 2]}
    assert callback.metric_names == ["fad", "clap"] and callback.embedders == {"fad": "codec"}
    assert callback.allow_random_embedders and callback.every_n_steps == 100
