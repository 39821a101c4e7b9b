"""The training command line behind recipes/train_music.py and recipes/train_audio.py (LightningCLI).

`MagnetCLI` adds to Lightning's CLI (``--config``, ``--print_config``, dotted overrides, ``fit --ckpt_path``):
- strict parsing: typed dataclass configs end to end, so an unknown key (``--model.optimizer.lrr``) fails at parse
  time naming the valid fields; no abbreviated options (``--trainer.max_step`` is refused); every field's
  documentation in ``fit --help``;
- a run folder per run (``run.root`` / ``run.name``, ``{run_dir}`` in config values: `magnet_lightning.cli.runs`), the
  W&B run id kept in it, and ``--ckpt_path last`` = the newest of ``last.ckpt`` and SLURM's ``hpc_ckpt_N.ckpt``;
- ``--global_batch_size N``: kept whatever the world size, by setting ``accumulate_grad_batches = N / (batch ×
  world)`` (an error if it does not divide);
- ``--init_from PATH``: start from our checkpoint or a converted audiocraft one (fine-tuning), same as
  ``--model.init_from``;
- ``--demo.enabled true``: build (once, cached) the synthetic demo corpus and point the data and codec at it, unless
  the user's own ``--data.train_shards`` / ``--data.val_shards`` turn the demo off (`demo_overridden`); arguments
  without ``--config`` still mean the default (demo) config;
- Lightning's own misconfigurations (``MisconfigurationException``, and ``ValueError`` while the trainer is built or
  fit starts) are one ``error:`` line (`magnet_lightning.cli.misconfig`);
- W&B offline automatically when no API key or no network; the resolved config logged to the run;
- atomic checkpoint writes (`AtomicCheckpointIO`), gradient-norm and D-Adaptation step-size logging
  (`GradNormMonitor`), sharded training with FSDP2 (``--trainer.strategy fsdp2``: `MagnetFSDPStrategy`, each
  transformer `Layer` sharded), a progress bar in optimizer steps (`StepProgressBar`).

Subcommands: ``fit`` and ``validate``. Generation and evaluation have their own programs (``python -m
magnet_lightning.generate``, ``evaluation/evaluate.py``).

Model families: `main(default_config, model_class=...)` takes any LightningModule whose constructor has the
arguments the recipe links and reads (``seed``, ``frame_rate``, ``segment_duration``, ``init_from``,
``ema_every_n_steps``; see docs/CONTRACTS.md), so a second family gets its own recipe script and configs without a
change here.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import lightning as L
from jsonargparse import set_parsing_settings
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from magnet_lightning.callbacks.metrics_trail import MetricsTrail
from magnet_lightning.callbacks.monitors import ValLossHistory
from magnet_lightning.callbacks.progress import StepProgressBar
from magnet_lightning.cli.misconfig import FitStarted, lightning_misconfigurations
from magnet_lightning.cli.parser import StrictArgumentParser
from magnet_lightning.cli.reproduce import Reproduction, report, reproduce, reproduce_argument, run_in_new_process
from magnet_lightning.cli.resume import nothing_left, pinned_lora_base
from magnet_lightning.cli.run_record import RunRecorder, invocation_entry
from magnet_lightning.cli.runs import (
    RUN_DIR_VARIABLE,
    RunConfig,
    keep_wandb_run_id,
    newest_checkpoint,
    resolve_run_dir,
    resume_candidates,
    substitute,
    wandb_run_id,
)
from magnet_lightning.cli.startup import check_settings, check_training_config, remove_stale_checkpoint_temporaries
from magnet_lightning.cli.summary import end_of_run_summary
from magnet_lightning.cli.wandb_setup import LoggedSaveConfigCallback, choose_wandb_mode
from magnet_lightning.data.datamodule import TokenDataModule
from magnet_lightning.demo.corpus import DemoConfig, prepare_demo_corpus
from magnet_lightning.demo.lora_base import demo_lora_base
from magnet_lightning.demo.text_cache import CachedTextEncoder
from magnet_lightning.errors import CheckpointError, UserError, pop_debug_flag, user_errors
from magnet_lightning.training.checkpoint_io import AtomicCheckpointIO
from magnet_lightning.training.lit_module import MagnetLightningModule
from magnet_lightning.training.strategies import register_strategy_names

set_parsing_settings(docstring_parse_attribute_docstrings=True)  # dataclass field docstrings become --help text
register_strategy_names()  # --trainer.strategy fsdp2 (and the FSDP strategy's older dotted names)

log = logging.getLogger(__name__)
SUBCOMMANDS = ("fit", "validate")


# ------------------------------------------------------------------------------------------------ checkpoint writes


# ------------------------------------------------------------------------------------------------ logging callback


# ------------------------------------------------------------------------------------------------ FSDP


# ------------------------------------------------------------------------------------------------ W&B


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


# ------------------------------------------------------------------------------------------------ strict parsing


# ------------------------------------------------------------------------------------------------ the CLI
class MagnetCLI(LightningCLI):
    """LightningCLI over a model family's LightningModule (default `MagnetLightningModule`) + `TokenDataModule`
    (see the module docstring)."""

    def __init__(self, *args, model_class: type[L.LightningModule] = MagnetLightningModule, **kwargs):
        kwargs.setdefault("save_config_callback", LoggedSaveConfigCallback)
        kwargs.setdefault("auto_configure_optimizers", False)  # the optimizer is model.optimizer
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_class", StrictArgumentParser)
        kwargs.setdefault("parser_kwargs", {"parser_mode": "omegaconf"} if _has_omegaconf() else {})
        super().__init__(model_class, TokenDataModule, *args, **kwargs)

    def _parse_ckpt_path(self) -> None:
        """Lightning's CLI replaces the model's config by the hyper-parameters stored in a ``--ckpt_path FILE``; here
        the config stays what ``--config`` and the flags say (the record re-runs it; a checkpoint of other sizes
        fails when its weights load), and the demo's codec check is not tripped by the checkpoint's absolute path."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """fit and validate; `test` / `predict` have no use here (generate.py / evaluate.py serve generation)."""
        return {name: keys for name, keys in LightningCLI.subcommands().items() if name in SUBCOMMANDS}

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--global_batch_size", type=int | None, default=None,
                            help="Global batch (all devices, after accumulation); sets accumulate_grad_batches.")
        parser.add_argument("--init_from", type=str | None, default=None,
                            help="Initial weights: our .ckpt or a converted audiocraft state_dict.bin (fine-tuning).")
        parser.add_argument("--generate_after_fit", type=int, default=0,
                            help="Write this many WAVs from the final checkpoint for validation captions (rank 0).")
        parser.add_argument("--cache_text_embeddings", type=bool, default=False,
                            help="Encode each distinct caption once (fixed captions: no word dropout/augmentation).")
        parser.add_class_arguments(RunConfig, "run")
        parser.add_class_arguments(DemoConfig, "demo")
        # One value for both (Lightning refuses differing hparams of the same name in module and datamodule).
        parser.link_arguments("data.segment_duration", "model.segment_duration")
        parser.link_arguments("model.seed", "data.seed")
        parser.link_arguments("model.frame_rate", "data.frame_rate")

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        """Adds `AtomicCheckpointIO` unless the config names a CheckpointIO plugin itself, `StepProgressBar` unless
        it names a progress bar, and the val-loss history of the end-of-run summary."""
        from lightning.fabric.plugins import CheckpointIO
        from lightning.pytorch.callbacks import ProgressBar


        trainer_cfg = self._get(self.config_init, "trainer", default={})
        plugins = kwargs.get("plugins", trainer_cfg.get("plugins")) or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        kwargs["plugins"] = plugins
        callbacks = kwargs.get("callbacks", trainer_cfg.get("callbacks")) or []
        self.fit_started = FitStarted()
        self.recorder = RunRecorder(self.run_dir)
        callbacks = [*(callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]), ValLossHistory(),
                     self.fit_started, self.recorder]
        if trainer_cfg.get("enable_progress_bar", True) is not False and \
                not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(StepProgressBar())
        kwargs["callbacks"] = callbacks
        trainer = super().instantiate_trainer(**kwargs)
        if trainer.loggers:  # the run folder's own trail of every logged value (what --reproduce compares)
            trainer.loggers = [*trainer.loggers, MetricsTrail(self.run_dir)]
        return trainer

    def instantiate_classes(self) -> None:
        """Lightning's misconfigurations while the trainer, model and callbacks are built: one line."""
        with lightning_misconfigurations("trainer / model / callbacks configuration"):
            super().instantiate_classes()

    # -- before the classes exist
    def before_instantiate_classes(self) -> None:
        config = self._sub_config()
        if self.subcommand == "fit":
            check_settings(config)  # before the run folder and the demo corpus
        self.recorded_config = self._parser(self.subcommand).dump(config, skip_none=False)  # {run_dir} kept
        self.pinned: dict[str, str] = {}
        self.nothing_to_do: str | None = None
        if config.get("trainer", {}).get("deterministic"):  # cuBLAS reads it when its first handle is made
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        self._set_run_dir(config)
        loggers = config.get("trainer", {}).get("logger")
        if "WandbLogger" in str(loggers):
            choose_wandb_mode()
            self._keep_wandb_id(loggers)
        if config.get("init_from"):
            config.model.init_from = config.init_from
        if config.model.get("lora") and not config.model.get("init_from") and \
                (base := pinned_lora_base(self.run_dir)):  # a LoRA run resumed: the base it trained on, never re-picked
            config.model.init_from = self.pinned["model.init_from"] = base
            rank_zero_info(f"LoRA run resumed on its base {base}")
        if config.demo.enabled and demo_overridden(config):
            config.demo.enabled = False
        if config.demo.enabled:
            self._prepare_demo(config)
        if self.subcommand == "fit":
            check_training_config(config)  # one-line errors before anything is built (magnet_lightning.cli.startup)

    def _sub_config(self):
        return self.config[self.subcommand] if self.subcommand else self.config

    def _set_run_dir(self, config) -> None:
        """Choose the run folder and put it wherever the config says ``{run_dir}``."""
        resume = self.subcommand == "fit" and config.get("ckpt_path") == "last"
        run_dir = resolve_run_dir(RunConfig(**vars(config.run)), resume)
        for key in ("trainer", "model", "data"):
            if key in config:
                config[key] = substitute(config[key], run_dir)
        self.run_dir = run_dir
        os.environ[RUN_DIR_VARIABLE] = str(run_dir)  # processes Lightning spawns for DDP choose the same folder
        rank_zero_info(f"run folder: {run_dir}")

    def _keep_wandb_id(self, loggers) -> None:
        """Give each WandbLogger without an id this run folder's W&B id (kept in RUN_DIR/wandb_id), so a resumed or
        requeued run continues the same W&B run (Lightning's WandbLogger resumes an existing id)."""
        for entry in loggers if isinstance(loggers, list) else [loggers]:
            init = getattr(entry, "init_args", None)
            if "WandbLogger" in str(getattr(entry, "class_path", "")) and init is not None and \
                    not (init.get("id") or init.get("version")):
                init.id = self.wandb_id = wandb_run_id(self.run_dir)  # written to the folder in before_fit

    def _prepare_demo(self, config) -> None:

        corpus = prepare_demo_corpus(DemoConfig(**config.demo.as_dict()) if hasattr(config.demo, "as_dict")
                                     else config.demo)
        config.data.train_shards = corpus.train_shards
        config.data.val_shards = corpus.val_shards
        config.model.codec = corpus.codec
        self.demo_corpus = corpus
        rank_zero_info(f"demo corpus: train {corpus.train_shards}, val {corpus.val_shards}, codec {corpus.codec}"
                       + ("  (RANDOM weights, fitted codebooks)" if corpus.random_codec else ""))
        if config.model.get("lora") and not config.model.get("init_from"):  # the LoRA demo: a base without downloads
            root = Path(config.demo.root)
            config.model.init_from = demo_lora_base(_plain(config.model), root.parent / "runs", root / "lora_base",
                                                    int(config.demo.get("base_steps") or 0), corpus.train_shards,
                                                    _plain(config.data))
            self.pinned["model.init_from"] = config.model.init_from
            rank_zero_info(f"LoRA demo base: {config.model.init_from}")

    # -- before training starts
    def before_fit(self) -> None:
        config = self._sub_config()
        trainer, datamodule = self.trainer, self.datamodule
        remove_stale_checkpoint_temporaries(trainer)
        self.resume_path = self.resume_checkpoint() if config.get("ckpt_path") == "last" else config.get("ckpt_path")
        self.nothing_to_do = nothing_left(self.resume_path, trainer.max_steps)
        if self.nothing_to_do:  # one line; no log folder, W&B run or record for a run with no step left
            if trainer.is_global_zero:
                print(self.nothing_to_do, file=sys.stderr, flush=True)
            return
        self.recorder.invocation = invocation_entry(self, config)
        if trainer.is_global_zero:
            self.run_dir.mkdir(parents=True, exist_ok=True)  # W&B's start-up git probe warns about a missing folder
            if getattr(self, "wandb_id", None):
                keep_wandb_run_id(self.run_dir, self.wandb_id)
        if config.get("cache_text_embeddings"):
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

    def fit(self, model: L.LightningModule, datamodule: L.LightningDataModule | None = None,
            ckpt_path: str | None = None, **kwargs: Any) -> None:
        """`trainer.fit`, where ``ckpt_path='last'`` means the newest of the checkpoint callbacks' ``last*.ckpt``
        and the SLURM preemption checkpoints ``hpc_ckpt_N.ckpt`` (Lightning's own 'last' ignores the latter)."""
        if self.nothing_to_do:
            return
        if ckpt_path == "last":
            ckpt_path = self.resume_path
            rank_zero_info(f"resuming from {ckpt_path}" if ckpt_path else "--ckpt_path last: no checkpoint yet, "
                           "starting from scratch")
        with lightning_misconfigurations("at the start of fit", started=lambda: self.fit_started.started):
            self.trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, **kwargs)

    def resume_checkpoint(self) -> str | None:
        trainer = self.trainer
        folders = [Path(c.dirpath) for c in trainer.checkpoint_callbacks if getattr(c, "dirpath", None)]
        newest = newest_checkpoint(resume_candidates(Path(trainer.default_root_dir), folders))
        return str(newest) if newest else None

    def after_fit(self) -> None:
        if self.trainer.is_global_zero and not self.nothing_to_do:
            print(end_of_run_summary(self), flush=True)

    def _captions(self, n: int) -> list[str]:
        corpus = getattr(self, "demo_corpus", None)
        if corpus is not None:
            return corpus.val_captions[:n]
        batches = self.datamodule.val_dataloader() or []
        texts = [t for batch in batches for t in batch["text"]]
        return (texts or ["calm piano melody"])[:n]


def demo_overridden(config) -> bool:
    """Whether the user's own data turns the demo off: ``--data.train_shards`` / ``--data.val_shards`` given with the
    demo config mean "train on these" (said on stderr), never silently replaced by the demo corpus. A ``model.codec``
    other than ``demo.codec`` with the demo on would be replaced too: refused in one line."""
    data = config.data
    if data.get("train_shards") or data.get("val_shards"):
        rank_zero_info("demo off: training on --data.train_shards / --data.val_shards (with --model.codec "
                       f"{config.model.codec}: the codec your shards were tokenized with)")
        return True
    if str(config.model.codec) != str(config.demo.codec):
        raise UserError(f"--model.codec {config.model.codec} with the demo on: the demo tokenizes its corpus with "
                        f"demo.codec ({config.demo.codec}); set --demo.codec {config.model.codec} instead, or train on "
                        "your own shards (--data.train_shards / --data.val_shards turn the demo off)")
    return False


def _plain(namespace) -> dict[str, Any]:
    """A jsonargparse Namespace (or dict) as nested plain dicts."""
    return namespace.as_dict() if hasattr(namespace, "as_dict") else dict(namespace)


def _has_omegaconf() -> bool:
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        return False
    return True


def config_dir() -> Path:
    """The recipe configs: recipes/configs of this checkout, or where the wheel installs that folder
    (magnet_lightning/scripts/recipes/configs; pyproject.toml)."""
    checkout = Path(__file__).resolve().parents[2] / "recipes" / "configs"
    if checkout.is_dir():
        return checkout
    return Path(__file__).resolve().parents[1] / "scripts" / "recipes" / "configs"


def default_args(config_name: str) -> list[str]:
    """argv for a recipe started with no arguments: `fit` with recipes/configs/<config_name>."""
    return ["fit", "--config", str(config_dir() / config_name)]


def _names_config(args: list[str]) -> bool:
    return any(a in ("-c", "--config") or a.startswith("--config=") for a in args)


def recipe_argv(args: list[str], default_config: str) -> list[str]:
    """The recipe's argv as LightningCLI gets it: no subcommand -> `fit`; no ``--config`` -> the default config (the
    CPU demo for music) first, so `--demo.root X` alone still runs the demo; `test` / `predict` -> exit 2 with where
    to go instead. Notices go to stderr (stdout stays clean for ``--print_config``)."""
    args = list(args)
    if args[:1] and args[0] in ("test", "predict"):
        sys.stderr.write(f"error: `{args[0]}` is not a subcommand of this recipe (use fit or validate); generate audio "
                         "with `python -m magnet_lightning.generate`, evaluate with `evaluation/evaluate.py`.\n")
        raise SystemExit(2)
    if {"-h", "--help"} & set(args[:1]):
        return args
    if not args or args[0] not in SUBCOMMANDS:
        args = ["fit", *args]  # `train_music.py --config X` means `train_music.py fit --config X`
    if not _names_config(args) and not {"-h", "--help"} & set(args):
        args[1:1] = default_args(default_config)[1:]
        print(f"No --config: running `{' '.join(args)}` (see recipes/README.md for the paper configs).",
              file=sys.stderr, flush=True)
    return args


def main(default_config: str, args: list[str] | None = None,
         model_class: type[L.LightningModule] = MagnetLightningModule) -> MagnetCLI | Reproduction:
    """Entry point of the recipes (see `recipe_argv`); ``--reproduce RUN_DIR`` replays a recorded run
    (cli/reproduce.py: a `Reproduction`, SystemExit(1) when it differs)."""
    args = pop_debug_flag(sys.argv[1:] if args is None else args)  # --debug: tracebacks
    with user_errors(CheckpointError):  # a user mistake: one line, exit code 2
        if (run_dir := reproduce_argument(args)) is not None:
            result = reproduce(run_dir, lambda argv: run_in_new_process(argv, sys.argv[0]))
            if report(result):
                raise SystemExit(1)
            return result
        return _run_cli(recipe_argv(args, default_config), model_class)


def _run_cli(args: list[str], model_class: type[L.LightningModule]) -> MagnetCLI:
    sys.argv[1:] = args  # DDP launchers re-run sys.argv for the other ranks: they must see the same arguments
    return MagnetCLI(model_class=model_class)
