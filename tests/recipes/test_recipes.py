"""Every recipe config parses, builds its module (on the meta device: no memory for 1.8B weights) and datamodule, and
states the paper's hyper-parameters (magnet_spec.md §6/§7); the global-batch arithmetic; the FSDP2 strategy with EMA."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from support.paths import CONFIGS
from support.recipes import build_recipe

from magnet_lightning.cli.train import accumulation_for, main
from magnet_lightning.generation.magnet_config import DecodingConfig
from magnet_lightning.training.strategies import MagnetFSDPStrategy

PAPER = {  # name: (params (M) range, global batch, segment s, optimizer, lr, schedule, warmup, steps, text dim)
    "music_small_10s": ((400, 440), 576, 10.0, "dadam", 1.0, "cosine", 4000, 1_000_000, 768),
    "music_small_30s": ((400, 440), 192, 30.0, "dadam", 1.0, "cosine", 4000, 1_000_000, 768),
    "music_medium_10s": ((1780, 1900), 576, 10.0, "dadam", 1.0, "cosine", 4000, 1_000_000, 768),
    "music_medium_30s": ((1780, 1900), 192, 30.0, "adamw", 1e-4, "cosine", 4000, 1_000_000, 768),
    "audio_small": ((400, 440), 128, 10.0, "adamw", 5e-4, "inverse_sqrt", 3000, 200_000, 1024),
    "audio_medium": ((1780, 1900), 128, 10.0, "adamw", 5e-4, "inverse_sqrt", 3000, 200_000, 1024),
}


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train_music.py"])


FAMILY = {  # the other families' recipes: (family, params (M) range, optimizer, lr, EMA every n steps, strategy)
    "musicgen_small": ("musicgen", (400, 440), "dadam", 1.0, 10, "ddp"),
    "musicgen_medium": ("musicgen", (1780, 1900), "adamw", 1e-4, 10, "fsdp2"),
    "hybrid_magnet_small_30s": ("hybrid", (400, 440), "dadam", 1.0, 10, "ddp"),
}
DEMOS = {"demo_music": "magnet", "demo_musicgen": "musicgen", "demo_hybrid": "hybrid", "demo_sharded": "magnet"}
OWN_AUDIO = {"cpu_own_audio"}  # README "Your own audio on a CPU machine" (tests/docs/test_own_audio.py runs it)


LORA_RECIPES = {  # LoRA fine-tuning on one GPU: (family, base repo id, model preset)
    "finetune_lora_magnet_small": ("magnet", "facebook/magnet-small-10secs", "small"),
    "finetune_lora_magnet_medium": ("magnet", "facebook/magnet-medium-10secs", "medium"),
    "finetune_lora_musicgen_small": ("musicgen", "facebook/musicgen-small", "small"),
    "finetune_lora_musicgen_medium": ("musicgen", "facebook/musicgen-medium", "medium"),
    "finetune_lora_musicgen_stereo_small": ("musicgen", "facebook/musicgen-stereo-small", "small"),
}
STEREO = {"num_codebooks": 8}  # the stereo releases: 4 codebooks per channel, interleaved


def test_every_config_is_listed():
    assert {p.stem for p in CONFIGS.glob("*.yaml")} == (set(PAPER) | set(FAMILY) | set(DEMOS) | OWN_AUDIO
                                                        | set(LORA_RECIPES) | {"demo_lora"}
                                                        | {"demo_melody", "finetune_melody_magnet_small"})


@pytest.mark.parametrize("name", sorted(LORA_RECIPES))
def test_lora_recipes_adapt_the_released_sizes_on_one_gpu(name, meta_models):
    """The release's sizes and family, one GPU, a valid lora block, headed by its launch command and GPU memory
    (built without the base: --model.lora null)."""
    import yaml

    from magnet_lightning.config import model_preset
    from magnet_lightning.lora import LoraConfig

    family, repo, preset = LORA_RECIPES[name]
    text = (CONFIGS / f"{name}.yaml").read_text()
    raw = yaml.safe_load(text)
    assert raw["init_from"] == repo and LoraConfig(**raw["model"]["lora"]).rank >= 1
    assert f"python recipes/train_music.py fit --config recipes/configs/{name}.yaml" in text
    assert "GPU memory meant for: one 24 GB GPU" in text
    cli = build_recipe(CONFIGS / f"{name}.yaml", "--init_from", "", "--model.lora", "null")
    assert cli.model.family == family and cli.trainer_kwargs["devices"] == 1
    stereo = "stereo" in repo
    expected = model_preset(preset, text_dim=768, subcodes_context=cli.model.model_cfg.subcodes_context,
                            **(STEREO if stereo else {}))
    assert cli.model.model_cfg == expected
    assert cli.model.hparams.codec.startswith("stereo:") == stereo
    if stereo:
        assert list(cli.model.model.pattern.delays) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_demo_lora_builds_and_names_a_lora_block(meta_models):
    cli = build_recipe(CONFIGS / "demo_lora.yaml", "--demo.enabled", "false", "--model.lora", "null")
    assert cli.trainer_kwargs["accelerator"] == "cpu" and cli.config.demo.root == "outputs/demo/corpus"
    demo = build_recipe(CONFIGS / "demo_music.yaml", "--demo.enabled", "false")
    assert cli.config.model.model == demo.config.model.model


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_family_config_builds_with_its_reference_hyperparameters(name, meta_models):
    """MusicGen small / medium as their released xp.cfg; Hybrid-MAGNeT small as the branch's config."""
    family, params, opt, lr, ema_every, strategy = FAMILY[name]
    cli = build_recipe(CONFIGS / f"{name}.yaml")
    hp, trainer, model = cli.model.hparams, cli.trainer_kwargs, cli.model.model
    assert model.family == family and hp.family == family and model.pattern.delays == (0, 1, 2, 3)
    assert params[0] <= cli.model.model_cfg.num_parameters() / 1e6 <= params[1]
    o = cli.model.optim_cfg
    assert (o.name, o.lr, o.schedule, o.warmup_steps, tuple(o.betas), o.weight_decay) == (
        opt, lr, "cosine", 4000, (0.9, 0.95), 0.1)
    assert (hp.cfg_dropout, hp.word_dropout, hp.text_encoder, hp.ema_every_n_steps) == (0.3, 0.3, "t5-base",
                                                                                       ema_every)
    assert cli.config.global_batch_size == 192 and hp.segment_duration == 30.0
    chosen = trainer["strategy"]
    assert (chosen if isinstance(chosen, str) else type(chosen).__name__).rsplit(".", 1)[-1] == strategy
    from magnet_lightning.callbacks import AudioDemoCallback, AudioMetricsCallback
    from magnet_lightning.generation.plan import decoding_config_for

    decoding = decoding_config_for(family, hp.decoding, span_len=3, segment_duration=30.0, num_codebooks=4)
    if family == "musicgen":
        assert (decoding.top_k, decoding.temperature, decoding.cfg_coef) == (250, 1.0, 3.0)
    else:
        assert decoding.decoding_steps == (60, 10, 10, 10) and hp.decoding["prompt_seconds"] == 3.0
        assert cli.model.masking_cfg.per_sample_stage and cli.model.masking_cfg.span_len == 3
    (metrics,) = [c for c in trainer["callbacks"] if isinstance(c, AudioMetricsCallback)]
    assert metrics.metric_names == ["fad", "kl", "clap"] and not metrics.allow_random_embedders
    (demo,) = [c for c in trainer["callbacks"] if isinstance(c, AudioDemoCallback)]
    assert 1.0 in demo.cfg_coefs and len(demo.prompts) >= 3


@pytest.mark.parametrize("name", sorted(DEMOS))
def test_demo_configs_share_the_corpus_and_differ_by_family(name):
    cli = build_recipe(CONFIGS / f"{name}.yaml", "--demo.enabled", "false")
    assert cli.model.model.family == DEMOS[name] and cli.config.demo.root == "outputs/demo/corpus"
    assert cli.config.run.root == ("outputs/demo/runs" if name == "demo_music" else f"outputs/{name}/runs")


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_config_builds_with_reference_hyperparameters(name, meta_models):
    params, global_batch, segment, opt, lr, schedule, warmup, steps, text_dim = PAPER[name]
    cli = build_recipe(CONFIGS / f"{name}.yaml")
    cfg, hp, trainer = cli.config, cli.model.hparams, cli.trainer_kwargs

    assert params[0] <= cli.model.model_cfg.num_parameters() / 1e6 <= params[1]
    assert sum(p.numel() for p in cli.model.model.parameters()) == cli.model.model_cfg.num_parameters()
    assert cli.model.model_cfg.text_dim == text_dim
    assert (hp.text_encoder == "t5-base") == (text_dim == 768) and not hp.allow_random_text_encoder
    o = cli.model.optim_cfg
    assert (o.name, o.lr, o.schedule, o.warmup_steps, tuple(o.betas), o.weight_decay) == (
        opt, lr, schedule, warmup, (0.9, 0.95), 0.1)
    assert (hp.ema_decay, hp.ema_every_n_steps, cli.model.masking_cfg.span_len) == (0.99, 10, 3)
    assert hp.segment_duration == cli.datamodule.hparams.segment_duration == segment
    assert cli.datamodule.hparams.seed == hp.seed

    assert trainer["max_steps"] == steps and trainer["gradient_clip_val"] == 1.0
    assert trainer["precision"] in ("16-mixed", "bf16-mixed")
    world = trainer["devices"] * trainer["num_nodes"]
    assert cfg.global_batch_size == global_batch
    accumulation = accumulation_for(global_batch, cli.datamodule.hparams.batch_size, world)
    assert accumulation * cli.datamodule.hparams.batch_size * world == global_batch

    decoding = {k: v for k, v in hp.decoding.items() if k != "preset"}
    DecodingConfig(**decoding).check(cli.model.model_cfg.num_codebooks)
    assert decoding["decoding_steps"][0] == (60 if segment == 30.0 else 20)
    names = [type(c).__name__ for c in trainer["callbacks"]]
    assert {"ModelCheckpoint", "LearningRateMonitor", "GradNormMonitor"} <= set(names)
    assert any(getattr(c, "save_last", False) for c in trainer["callbacks"])
    assert [type(lg).__name__ for lg in trainer["logger"]] == ["WandbLogger"]

    # FAD (VGGish), KL (PaSST), CLAP and KAD on the held-out validation items, with real weights only
    from magnet_lightning.callbacks import AudioDemoCallback, AudioMetricsCallback

    (metrics,) = [c for c in trainer["callbacks"] if isinstance(c, AudioMetricsCallback)]
    assert metrics.metric_names == ["fad", "kl", "clap", "kad"] and metrics.prompts is None
    assert {**{"fad": "vggish", "kl": "passt", "clap": "clap"}, **metrics.embedders} == {
        "fad": "vggish", "kl": "passt", "clap": "clap"} and not metrics.allow_random_embedders
    assert metrics.embedder_kwargs.get("passt", {}).get("pretrained_length", 20) == (10 if text_dim == 1024 else 20)
    assert metrics.every_n_steps > 0 and len(metrics.decoding["decoding_steps"]) == 4
    # the fixed-prompt demo: curated prompts, a CFG sweep that includes no guidance
    (demo,) = [c for c in trainer["callbacks"] if isinstance(c, AudioDemoCallback)]
    assert len(demo.prompts) >= 3 and len(demo.cfg_coefs) >= 2 and 1.0 in demo.cfg_coefs and demo.every_n_steps > 0
    # everything in this run's folder (SLURM's hpc_ckpt_N.ckpt go to default_root_dir)
    assert cli.run_dir.parent == (Path.cwd() / "outputs" / name) and trainer["default_root_dir"] == str(cli.run_dir)
    assert {c.dirpath for c in trainer["callbacks"] if type(c).__name__ == "ModelCheckpoint"} == {
        str(cli.run_dir / "checkpoints")}
    assert trainer["logger"][0].save_dir == str(cli.run_dir)


def test_demo_config_builds_without_preparing_the_corpus(meta_models):
    cli = build_recipe(CONFIGS / "demo_music.yaml", "--demo.enabled", "false")
    assert cli.config.demo.root == "outputs/demo/corpus"
    assert cli.trainer_kwargs["accelerator"] == "cpu"
    assert cli.model.hparams.allow_random_text_encoder  # demo only
    assert cli.model.model_cfg.num_parameters() < 20e6


def test_dotted_overrides(meta_models):
    cli = build_recipe(CONFIGS / "music_small_10s.yaml", "--data.batch_size", "9", "--model.optimizer.lr", "0.5",
                 "--trainer.max_steps", "7", "--model.model.num_layers", "3")
    assert cli.datamodule.hparams.batch_size == 9 and cli.model.optim_cfg.lr == 0.5
    assert cli.trainer_kwargs["max_steps"] == 7 and len(cli.model.model.transformer.layers) == 3


def test_fine_tune_from_audiocraft_checkpoint_via_recipe(tmp_path):
    """--init_from a converted-format audiocraft state_dict.bin loads its weights (and wins over model.init_from)."""
    from support.tiny_releases import D, E, H, K, L, V, W, best_state, write

    from magnet_lightning.checkpoint.pretrained import load_pretrained

    src = write(tmp_path / "state_dict.bin", best_state(seed=3))
    sizes = {"dim": D, "num_heads": H, "num_layers": L, "ffn_dim": 4 * D, "num_codebooks": K, "codebook_size": V,
             "text_dim": E,
                 "subcodes_context": W}
    args = [f"--model.model.{k}={v}" for k, v in sizes.items()]
    cli = build_recipe(CONFIGS / "demo_music.yaml", "--demo.enabled", "false", "--model.init_from", "ignored.ckpt",
                 "--init_from", str(src), *args)
    expected = load_pretrained(src).model.state_dict()
    got = cli.model.model.state_dict()
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], msg=name)


def test_init_from_missing_file_fails_clearly():
    with pytest.raises(SystemExit, match="nope.ckpt"):  # one line naming it, exit code 2
        main("demo_music.yaml", ["fit", "--config", str(CONFIGS / "demo_music.yaml"), "--demo.enabled", "false",
                                 "--init_from", "nope.ckpt", "--trainer.logger", "false"])


@pytest.mark.parametrize("global_batch,per_device,world,expected", [(192, 6, 32, 1), (192, 3, 32, 2),
                                                                     (576, 18, 8, 4), (8, 2, 2, 2)])
def test_accumulation_keeps_global_batch(global_batch, per_device, world, expected):
    assert accumulation_for(global_batch, per_device, world) == expected


@pytest.mark.parametrize("global_batch,per_device,world", [(192, 5, 32), (192, 8, 32), (100, 3, 1)])
def test_accumulation_refuses_indivisible_global_batch(global_batch, per_device, world):
    with pytest.raises(ValueError, match="not a multiple"):
        accumulation_for(global_batch, per_device, world)


def test_print_config_through_the_script_implies_fit():
    import os
    import subprocess

    import yaml

    root = CONFIGS.parent.parent
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, str(root / "recipes" / "train_music.py"), "--config",
                           str(CONFIGS / "music_small_30s.yaml"), "--data.batch_size", "3", "--print_config"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = yaml.safe_load(proc.stdout)
    assert printed["global_batch_size"] == 192 and printed["data"]["batch_size"] == 3
    assert printed["data"]["segment_duration"] == 30.0
    assert "segment_duration" not in printed["model"]  # a link target: it always follows data.segment_duration


def test_wandb_goes_offline_without_a_key(monkeypatch, tmp_path):
    from magnet_lightning.cli.wandb_setup import choose_wandb_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert choose_wandb_mode() == "offline"
    import os

    assert os.environ["WANDB_MODE"] == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")  # a user's choice is kept
    assert choose_wandb_mode() == "disabled"


def test_hub_goes_offline_only_without_network(monkeypatch):
    import os

    from magnet_lightning.utils import network

    for v in network.HUB_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(network, "reachable", lambda host: True)
    network.hub_offline_without_network()
    assert not any(v in os.environ for v in network.HUB_VARIABLES)
    monkeypatch.setattr(network, "reachable", lambda host: False)
    network.hub_offline_without_network()
    assert all(os.environ[v] == "1" for v in network.HUB_VARIABLES)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the user's choice wins
    monkeypatch.setattr(network, "reachable", lambda host: pytest.fail("probed although the user chose"))
    network.hub_offline_without_network()


def _fake_trainer(strategy, world_size: int):
    from types import SimpleNamespace

    return SimpleNamespace(strategy=strategy, world_size=world_size, accumulate_grad_batches=1, loggers=[],
                           max_steps=-1, is_global_zero=False)


def test_before_fit_sets_accumulation_from_world_size(meta_models):
    from lightning.pytorch.strategies import DDPStrategy

    cli = build_recipe(CONFIGS / "music_small_30s.yaml", "--data.batch_size", "6")
    for world, expected in ((32, 1), (8, 4), (4, 8)):
        cli.trainer = _fake_trainer(DDPStrategy(), world)
        cli.before_fit()
        assert cli.trainer.accumulate_grad_batches == expected
    cli.trainer = _fake_trainer(DDPStrategy(), 5)
    with pytest.raises(ValueError, match="192"):
        cli.before_fit()


def test_fsdp2_with_ema_is_accepted(meta_models):
    """EMA under FSDP2 averages each rank's shards (training/ema.py): the sharded medium recipe keeps its EMA."""
    cli = build_recipe(CONFIGS / "music_medium_30s.yaml", "--trainer.strategy", "fsdp2")
    assert cli.model.hparams.ema_every_n_steps == 10 and cli.trainer_kwargs["strategy"] == "fsdp2"
    cli.trainer = _fake_trainer(MagnetFSDPStrategy(), 64)
    cli.before_fit()
    assert cli.trainer.accumulate_grad_batches == 1
