"""The training command line behind recipes/train_music.py and recipes/train_audio.py (LightningCLI).

`MagnetCLI` adds to Lightning's CLI (``--config``, ``--print_config``, dotted overrides, ``fit --ckpt_path``):
- ``--global_batch_size N``: kept whatever the world size, by setting ``accumulate_grad_batches = N / (batch × world)``
  (an error if it does not divide);
- ``--init_from PATH``: start from our checkpoint or a converted audiocraft one (fine-tuning), same as
  ``--model.init_from``;
- ``--demo.enabled true``: build (once, cached) the synthetic demo corpus and point the data and codec at it;
- W&B offline automatically when no API key or no network; the resolved config logged to the run;
- atomic checkpoint writes (`AtomicCheckpointIO`), gradient-norm and D-Adaptation step-size logging
  (`GradNormMonitor`), FSDP with the transformer `Layer` as wrap unit (`MagnetFSDPStrategy`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from magnet_lightning.convert import CheckpointError
from magnet_lightning.data.datamodule import TokenDataModule
from magnet_lightning.demo.corpus import DemoConfig
from magnet_lightning.errors import pop_debug_flag, user_errors
from magnet_lightning.lit_module import MagnetLightningModule
from magnet_lightning.network import reachable
from magnet_lightning.startup import check_training_config, remove_stale_checkpoint_temporaries

log = logging.getLogger(__name__)
SUBCOMMANDS = {"fit", "validate", "test", "predict"}
RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


# ------------------------------------------------------------------------------------------------ checkpoint writes
class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file *in the target folder*, fsyncs it, then renames it over the target.

    Lightning's own writer stages local files in the system temp folder and moves them: across file systems (node
    /tmp -> shared storage) that move is a copy, so a job killed mid-copy leaves a truncated ``last.ckpt``. A rename
    within one folder is atomic: readers see the old or the new checkpoint, never half of one. Remote URLs
    (s3://, gs://, ...) use Lightning's writer (object stores replace objects atomically).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse directory fsync
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------ logging callback
def total_grad_norm(parameters, reduce=None) -> torch.Tensor:
    """L2 norm of all gradients (float32); `reduce(tensor, reduce_op="sum")` sums squares over shards (FSDP)."""
    square = None
    for p in parameters:
        if p.grad is not None:
            part = p.grad.detach().float().pow(2).sum()
            square = part if square is None else square + part
    if square is None:
        return torch.zeros(())
    if reduce is not None:
        square = reduce(square, reduce_op="sum")
    return square.sqrt()


class GradNormMonitor(L.Callback):
    """Logs ``train/grad_norm`` (total L2 norm of the unscaled gradients, before clipping) every `log_every_n_steps`
    optimizer steps, and ``train/dadapt_d`` (D-Adaptation's step size) when the optimizer has one.

    Under a sharded strategy (FSDP) each rank holds a disjoint shard of the gradients, so squared norms are summed
    over ranks; under DDP the gradients are already identical on all ranks.
    """

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        every = max(1, trainer.log_every_n_steps)
        if trainer.global_step % every:
            return
        reduce = trainer.strategy.reduce if isinstance(trainer.strategy, FSDPStrategy) else None
        pl_module.log("train/grad_norm", total_grad_norm(pl_module.parameters(), reduce), on_step=True,
                      on_epoch=False)
        d = optimizer.param_groups[0].get("d")
        if d is not None:
            pl_module.log("train/dadapt_d", float(d), on_step=True, on_epoch=False)


class ValLossHistory(L.Callback):
    """Remembers (step, val/loss) of every validation, so the end of a run can report first and last."""

    def __init__(self):
        self.history: list[tuple[int, float]] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get("val/loss")
        if value is not None and not trainer.sanity_checking:
            self.history.append((trainer.global_step, float(value)))


# ------------------------------------------------------------------------------------------------ FSDP
class MagnetFSDPStrategy(FSDPStrategy):
    """FSDP with one wrap unit per transformer `Layer` (the 1.5B model on many GPUs).

    Args:
        activation_checkpointing: recompute each Layer's activations in the backward pass (less memory).
        **kwargs: any other `FSDPStrategy` argument (sharding_strategy, state_dict_type, cpu_offload, ...).
    """

    def __init__(self, activation_checkpointing: bool = False, sharding_strategy: str = "FULL_SHARD",
                 state_dict_type: str = "full", **kwargs):
        from magnet_lightning.models.layers import Layer

        if activation_checkpointing:
            kwargs["activation_checkpointing_policy"] = {Layer}
        super().__init__(auto_wrap_policy={Layer}, sharding_strategy=sharding_strategy,
                         state_dict_type=state_dict_type, **kwargs)


# ------------------------------------------------------------------------------------------------ W&B
def _wandb_key_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def choose_wandb_mode() -> str:
    """Set WANDB_MODE=offline unless the user chose a mode, a key is configured and api.wandb.ai answers."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if not _wandb_key_present():
        reason = "no W&B API key (WANDB_API_KEY or ~/.netrc)"
    elif not reachable(os.environ.get("WANDB_BASE_URL", "api.wandb.ai").split("://")[-1].split("/")[0]):
        reason = "api.wandb.ai is not reachable"
    else:
        return "online"
    os.environ["WANDB_MODE"] = "offline"
    rank_zero_warn(f"W&B runs OFFLINE ({reason}); upload later with `wandb sync <run dir>`.")
    return "offline"


class LoggedSaveConfigCallback(SaveConfigCallback):
    """Writes config.yaml (Lightning's behaviour) and also stores the resolved config in the W&B run."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                config = self.config.clone().as_dict()
                logger.experiment.config.update({"cli": config}, allow_val_change=True)


# ------------------------------------------------------------------------------------------------ batch arithmetic
def accumulation_for(global_batch: int, per_device: int, world_size: int) -> int:
    """accumulate_grad_batches that keeps `global_batch` = per_device × world_size × accumulation, or an error."""
    per_step = per_device * world_size
    if global_batch < per_step or global_batch % per_step:
        raise ValueError(
            f"global_batch_size={global_batch} is not a multiple of data.batch_size × world size = {per_device} × "
            f"{world_size} = {per_step}. Choose data.batch_size (per device) so that {global_batch} / "
            f"(batch_size × {world_size}) is a whole number, or change global_batch_size."
        )
    return global_batch // per_step


# ------------------------------------------------------------------------------------------------ the CLI
class MagnetCLI(LightningCLI):
    """LightningCLI over `MagnetLightningModule` + `TokenDataModule` (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("save_config_callback", LoggedSaveConfigCallback)
        kwargs.setdefault("auto_configure_optimizers", False)  # the optimizer is model.optimizer
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {"parser_mode": "omegaconf"} if _has_omegaconf() else {})
        super().__init__(MagnetLightningModule, TokenDataModule, *args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--global_batch_size", type=int | None, default=None,
                            help="Global batch (all devices, after accumulation); sets accumulate_grad_batches.")
        parser.add_argument("--init_from", type=str | None, default=None,
                            help="Initial weights: our .ckpt or a converted audiocraft state_dict.bin (fine-tuning).")
        parser.add_argument("--generate_after_fit", type=int, default=0,
                            help="Write this many WAVs from the final checkpoint for validation captions (rank 0).")
        parser.add_argument("--cache_text_embeddings", type=bool, default=False,
                            help="Encode each distinct caption once (fixed captions: no word dropout/augmentation).")
        parser.add_class_arguments(DemoConfig, "demo")
        # One value for both (Lightning refuses differing hparams of the same name in module and datamodule).
        parser.link_arguments("data.segment_duration", "model.segment_duration")
        parser.link_arguments("model.seed", "data.seed")
        parser.link_arguments("model.frame_rate", "data.frame_rate")

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        """Adds `AtomicCheckpointIO` unless the config names a CheckpointIO plugin itself."""
        from lightning.fabric.plugins import CheckpointIO

        configured = self._get(self.config_init, "trainer", default={}).get("plugins")
        plugins = kwargs.get("plugins", configured) or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        kwargs["plugins"] = plugins
        callbacks = kwargs.get("callbacks", self._get(self.config_init, "trainer", default={}).get("callbacks")) or []
        callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        kwargs["callbacks"] = [*callbacks, ValLossHistory()]
        return super().instantiate_trainer(**kwargs)

    # -- before the classes exist
    def before_instantiate_classes(self) -> None:
        config = self._sub_config()
        logger_cfg = str(config.get("trainer", {}).get("logger"))
        if "WandbLogger" in logger_cfg:
            choose_wandb_mode()
        if config.get("init_from"):
            config.model.init_from = config.init_from
        if config.demo.enabled:
            self._prepare_demo(config)
        if self.subcommand == "fit":
            check_training_config(config)  # one-line errors before anything is built (magnet_lightning.startup)

    def _sub_config(self):
        return self.config[self.subcommand] if self.subcommand else self.config

    def _prepare_demo(self, config) -> None:
        from magnet_lightning.demo.corpus import prepare_demo_corpus

        corpus = prepare_demo_corpus(DemoConfig(**config.demo.as_dict()) if hasattr(config.demo, "as_dict")
                                     else config.demo)
        config.data.train_shards = corpus.train_shards
        config.data.val_shards = corpus.val_shards
        config.model.codec = corpus.codec
        self.demo_corpus = corpus
        rank_zero_info(f"demo corpus: train {corpus.train_shards}, val {corpus.val_shards}, codec {corpus.codec}"
                       + ("  (RANDOM weights, fitted codebooks)" if corpus.random_codec else ""))

    # -- before training starts
    def before_fit(self) -> None:
        config = self._sub_config()
        trainer, datamodule = self.trainer, self.datamodule
        remove_stale_checkpoint_temporaries(trainer)
        if isinstance(trainer.strategy, FSDPStrategy) and self.model.hparams.ema_every_n_steps > 0:
            raise ValueError("EMA (Lightning WeightAveraging) keeps a full, unsharded copy and does not support FSDP: "
                             "set --model.ema_every_n_steps 0 with FSDP, or train with DDP (the 1.5B model fits DDP "
                             "on 80 GB GPUs).")
        if config.get("cache_text_embeddings"):
            from magnet_lightning.demo.text_cache import CachedTextEncoder

            self.model.set_text_encoder(CachedTextEncoder(self.model.text_encoder))
        per_device = datamodule.hparams.batch_size
        if config.get("global_batch_size"):
            trainer.accumulate_grad_batches = accumulation_for(config.global_batch_size, per_device,
                                                               trainer.world_size)
        effective = per_device * trainer.world_size * trainer.accumulate_grad_batches
        rank_zero_info(f"batch: {per_device} per device × {trainer.world_size} devices × "
                       f"{trainer.accumulate_grad_batches} accumulation = global batch {effective}")
        for logger in trainer.loggers:
            logger.log_hyperparams({"global_batch_size": effective, "world_size": trainer.world_size,
                                    "accumulate_grad_batches": trainer.accumulate_grad_batches})

    def after_fit(self) -> None:
        if not self.trainer.is_global_zero:
            return
        config = self._sub_config()
        lines = ["", "=" * 88]
        history = next((c.history for c in self.trainer.callbacks if isinstance(c, ValLossHistory)), [])
        if history:
            (s0, v0), (s1, v1) = history[0], history[-1]
            lines.append(f"val/loss: first {v0:.4f} (step {s0}) -> last {v1:.4f} (step {s1}) over {len(history)} "
                         f"validations" + ("  [falling]" if v1 < v0 else "  [NOT falling]"))
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("eval/")}
        if metrics:
            lines.append("final eval metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))
        lines.append("outputs:")
        ckpt_cb = self.trainer.checkpoint_callback
        if ckpt_cb is not None:
            lines.append(f"  checkpoints: {ckpt_cb.dirpath} (last: {ckpt_cb.last_model_path or '-'}, "
                         f"best: {ckpt_cb.best_model_path or '-'})")
        for logger in self.trainer.loggers:
            lines.append(f"  {type(logger).__name__}: {_logger_dir(logger)}")
        if config.generate_after_fit and ckpt_cb is not None and ckpt_cb.last_model_path:
            wavs = generate_samples(ckpt_cb.last_model_path, self._captions(config.generate_after_fit),
                                    Path(ckpt_cb.dirpath).parent / "samples")
            lines.append(f"  generated WAVs: {wavs[0].parent} ({len(wavs)} files)")
        lines.append("=" * 88)
        print("\n".join(lines), flush=True)

    def _captions(self, n: int) -> list[str]:
        corpus = getattr(self, "demo_corpus", None)
        if corpus is not None:
            return corpus.val_captions[:n]
        batches = self.datamodule.val_dataloader() or []
        texts = [t for batch in batches for t in batch["text"]]
        return (texts or ["calm piano melody"])[:n]


def _has_omegaconf() -> bool:
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        return False
    return True


def _logger_dir(logger) -> str:
    experiment = getattr(logger, "experiment", None)
    run_dir = getattr(experiment, "dir", None) if type(logger).__name__ == "WandbLogger" else None
    if run_dir:
        mode = os.environ.get("WANDB_MODE", "online")
        return f"{Path(run_dir).parent} (mode {mode}; upload with `wandb sync {Path(run_dir).parent}`)"
    return str(getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None))


def generate_samples(ckpt: str, captions: list[str], out_dir: Path, seed: int = 0) -> list[Path]:
    """Generate one clip per caption from `ckpt` and write -14 LUFS WAVs to `out_dir`; returns the paths."""
    from magnet_lightning.generate import MagnetGenerator, _slug, write_wav

    generator = MagnetGenerator.from_pretrained(ckpt, device="cpu", allow_random_text_encoder=True)
    result = generator.generate(captions, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (caption, wav) in enumerate(zip(captions, result.audio)):
        path = out_dir / f"{i:02d}_{_slug(caption)}.wav"
        write_wav(path, wav.cpu(), generator.sample_rate)
        paths.append(path)
    return paths


def default_args(config_name: str) -> list[str]:
    """argv for a recipe started with no arguments: `fit` with recipes/configs/<config_name>."""
    return ["fit", "--config", str(RECIPES_DIR / "configs" / config_name)]


def main(default_config: str, args: list[str] | None = None) -> MagnetCLI:
    """Entry point of the recipes: no arguments -> the default config (the CPU demo for music)."""
    args = pop_debug_flag(sys.argv[1:] if args is None else args)  # --debug -> MAGNET_DEBUG=1 (full tracebacks)
    if not args:
        args = default_args(default_config)
        print(f"No arguments: running `{' '.join(args)}` (see recipes/README.md for the paper configs).", flush=True)
    elif not SUBCOMMANDS & set(args) and not {"-h", "--help"} & set(args[:1]):
        args = ["fit", *args]  # `train_music.py --config X` means `train_music.py fit --config X`
    sys.argv[1:] = args  # DDP launchers re-run sys.argv for the other ranks: they must see the same arguments
    with user_errors(CheckpointError):  # a user mistake: one line, exit code 2
        return MagnetCLI()
