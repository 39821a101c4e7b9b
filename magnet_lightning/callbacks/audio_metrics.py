"""Generate audio during training and score it: FAD / KL / CLAP / KAD logged as ``eval/fad``, ``eval/kl``,
``eval/clap``, ``eval/kad`` (KAD on the FAD embedder's frames, from the same reference embeddings, computed once
per item).

When it runs: at the end of a validation epoch (``on_validation_epoch_end``), once at least ``every_n_steps``
optimizer steps have passed since its last run (it runs at the first validation after step N, 2N, ...; set
``val_check_interval`` so that validation happens that often), and at every ``trainer.validate(...)``. Never in the
sanity check. ``every_n_steps=0``: only at ``trainer.validate``.

Weights: Lightning's weight-averaging (our ``EMA`` callback) swaps the averaged weights in at validation-epoch
start and back at validation-epoch end. This callback runs in that window, so with EMA active the metrics score the
**EMA weights** — provided it comes before the EMA callback in ``trainer.callbacks`` (the default when EMA comes
from ``MagnetLightningModule.configure_callbacks``: model callbacks are appended after the trainer's). A warning
is logged if the order is wrong. The transformer is put in eval mode under ``torch.no_grad`` and restored.

Prompt set (fixed across evaluations, so numbers are comparable over training):
- default: the first validation items seen by each rank (``ceil(num_prompts / world_size)`` per rank, gathered
  from the validation batches the DataModule already splits across ranks); the reference clip of an item is its
  own codes (padding removed) decoded by the codec;
- ``prompts=FILE`` (CSV id,caption / .txt / .jsonl) with ``reference_audio=FOLDER`` (``<id>.wav``...): the first
  ``num_prompts`` rows, split over ranks. Without a folder only CLAP can be computed.
Every rank makes the same number of generate calls (throw-away batches pad the short ranks) and reaches the
collective ``compute()``, so DDP never hangs here.

Cost bound: ``num_prompts`` clips of at most ``max_duration`` seconds with ``decoding_steps`` steps per codebook,
in batches of ``batch_size``; a tqdm bar on rank 0 shows the decoding steps.

Embedders (VGGish / PaSST / CLAP / codec latents) and the codec live in this callback, never in the LightningModule:
they are not in checkpoints nor in DDP's parameters. They are loaded at fit (or validate) start, in ``setup``, so a
missing weight file stops the run before step 1 (clear error naming the file); ``allow_random_embedders=True``
builds missing ones with random seeded weights, with a loud warning (CPU demos only: such numbers mean nothing
outside the run).

On global rank 0 it also logs the first ``log_examples`` clips (generated and reference audio, caption with CLAP
score, spectrogram figures) to every logger (`magnet_lightning.callbacks.media`): with a ``WandbLogger``
``eval/examples`` (a table: id, prompt, generated and reference audio, CLAP score, spectrograms), ``eval/audio``,
``eval/audio_reference`` and ``eval/mel``; TensorBoard ``eval/generated/NN`` and ``eval/reference/NN`` audio,
images and text; other loggers files under their ``log_dir``.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import torch

from magnet_lightning.callbacks.media import log_examples
from magnet_lightning.codec.codecs import load_codec
from magnet_lightning.data.shards import check_compatible
from magnet_lightning.errors import UserError
from magnet_lightning.metrics.eval_set import EvalItem, items_from_files
from magnet_lightning.metrics.generation_eval import Example, ReferenceLoader, evaluate_items
from magnet_lightning.metrics.suite import AudioEvalSuite

log = logging.getLogger(__name__)



def check_metrics_codec(codec: Any, model_cfg: Any, datamodule: Any, owner: str = "AudioMetricsCallback") -> None:
    """The codec a metrics callback decodes with must fit the model (K, V) and the shards it trains on."""
    if (codec.num_codebooks, codec.codebook_size) != (model_cfg.num_codebooks, model_cfg.codebook_size):
        raise UserError(f"{owner}: codec {codec.name!r} has K={codec.num_codebooks}, V={codec.codebook_size} but the "
                        f"model has K={model_cfg.num_codebooks}, V={model_cfg.codebook_size}; set its codec to the "
                        "one the shards were tokenized with")
    for shards in getattr(datamodule, "train_sets", []) + getattr(datamodule, "val_sets", []):
        if shards.manifest is not None:
            check_compatible(shards.manifest, codec.num_codebooks, codec.codebook_size, codec.frame_rate,
                             where=f"{owner}'s codec {codec.name!r} and shards {shards.spec!r}", codec=codec.name,
                             sample_rate=codec.sample_rate, channels=codec.channels)


class AudioMetricsCallback(L.Callback):
    """FAD / KL / CLAP of generated audio, every ``every_n_steps`` and at ``trainer.validate``.

    Args:
        every_n_steps: optimizer steps between evaluations (0: only at trainer.validate).
        num_prompts: size of the prompt set (all ranks together).
        batch_size: generations per generate call.
        max_duration: seconds generated at most (references are cut to it too); None: the reference length.
        decoding_steps: steps per codebook (e.g. [10, 5, 5, 5]) — the main cost knob; None: the checkpoint's.
        decoding: other DecodingConfig fields to override (temperature, max_cfg_coef, ...).
        seed: generation seed (batch b of the prompt set uses seed + b * batch_size), also seeds random embedders.
        metrics: any of "fad", "kl", "clap".
        embedders: metric -> embedder name, default {"fad": "vggish", "kl": "passt", "clap": "clap"};
            "codec" for a weight-light FAD on the codec's latents.
        embedder_kwargs: embedder name -> loader arguments, e.g. {"vggish": {"checkpoint": "/w/vggish.pth"},
            "passt": {"pretrained_length": 10}}.
        allow_random_embedders: build embedders whose weights are missing with random weights (loud warning).
        prompts, reference_audio: an explicit prompt file and reference folder instead of the validation items.
        codec: codec name/path for decoding (default: the module's ``hparams.codec``).
        lufs: loudness of generated clips before scoring (None: as generated).
        log_examples: clips logged to the loggers (rank 0's first ones).
        progress_bar: show a tqdm bar of decoding steps on rank 0.
    """

    def __init__(self, every_n_steps: int = 5000, num_prompts: int = 16, batch_size: int = 8,
                 max_duration: float | None = 10.0, decoding_steps: list[int] | None = None,
                 decoding: dict[str, Any] | None = None, seed: int = 0,
                 metrics: list[str] | None = None, embedders: dict[str, str] | None = None,
                 embedder_kwargs: dict[str, dict[str, Any]] | None = None, allow_random_embedders: bool = False,
                 prompts: str | None = None, reference_audio: str | None = None, codec: str | None = None,
                 lufs: float | None = -14.0, log_examples: int = 4, progress_bar: bool = True) -> None:
        super().__init__()
        if every_n_steps < 0 or num_prompts < 1 or batch_size < 1:
            raise ValueError("every_n_steps >= 0, num_prompts >= 1 and batch_size >= 1 are required")
        self.every_n_steps = every_n_steps
        self.num_prompts = num_prompts
        self.batch_size = batch_size
        self.max_duration = max_duration
        self.decoding = dict(decoding or {})
        if decoding_steps is not None:
            self.decoding["decoding_steps"] = list(decoding_steps)
        self.seed = seed
        self.metric_names = list(metrics or ["fad", "kl", "clap"])
        self.embedders = dict(embedders or {})
        self.embedder_kwargs = dict(embedder_kwargs or {})
        self.allow_random_embedders = allow_random_embedders
        self.prompts, self.reference_audio = prompts, reference_audio
        if prompts is None and reference_audio is not None:
            raise ValueError("reference_audio needs prompts=FILE (the ids to look up)")
        if prompts is not None and reference_audio is None and set(self.metric_names) & {"fad", "kl"}:
            raise ValueError("FAD and KL need reference clips: give reference_audio=FOLDER or metrics=['clap']")
        self.codec_name = codec
        self.lufs = lufs
        self.log_examples = log_examples
        self.progress_bar = progress_bar
        self._items: list[EvalItem] = []
        self._suite: AudioEvalSuite | None = None
        self._codec: Any = None
        self._references: ReferenceLoader | None = None
        self._last_bucket = 0
        self._warned_order = False
        self.last_results: dict[str, float] = {}

    # ------------------------------------------------------------------------------------------- prompt set
    def _quota(self, trainer: L.Trainer) -> int:
        return math.ceil(self.num_prompts / max(trainer.world_size, 1))

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        """Keep this rank's first validation items (caption + unpadded codes [K, T]) as the fixed prompt set."""
        if self.prompts is not None or len(self._items) >= self._quota(trainer):
            return
        codes, mask = batch["codes"].detach().cpu(), batch.get("padding_mask")
        metas = batch.get("meta") or [{} for _ in batch["text"]]
        for row, text in enumerate(batch["text"]):
            if len(self._items) >= self._quota(trainer):
                break
            frames = int(mask[row].sum()) if mask is not None else codes.shape[-1]
            key = f"{metas[row].get('key', 'val')}#r{trainer.global_rank}i{len(self._items)}"
            self._items.append(EvalItem(key, str(text), codes=codes[row, :, :frames].clone(), meta=dict(metas[row])))

    def _file_items(self) -> list[EvalItem]:
        if not self._items:
            items, skipped = items_from_files(self.prompts, self.reference_audio)
            self._items = items[: self.num_prompts]
            log.info("AudioMetricsCallback: %d prompts from %s (%d skipped)", len(self._items), self.prompts, skipped)
        return self._items

    # ------------------------------------------------------------------------------------------- start-up
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """At fit / validate start, before step 1: load the codec and every embedder (their weights), read the
        prompt file, and check the codec against the model and the shards. A missing or wrong file stops the run
        here instead of at the first evaluation, ``every_n_steps`` steps later."""
        if stage not in ("fit", "validate"):
            return

        codec, _ = self._setup(pl_module)
        check_metrics_codec(codec, pl_module.model.cfg, trainer.datamodule)
        if self.prompts is not None:
            self._file_items()

    # ------------------------------------------------------------------------------------------- schedule
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if trainer.state.fn == "fit":
            bucket = trainer.global_step // self.every_n_steps if self.every_n_steps > 0 else 0
            if bucket <= self._last_bucket:
                return
            self._last_bucket = bucket
        elif trainer.state.fn != "validate":
            return
        self._check_order(trainer)
        self.run(trainer, pl_module)

    def _check_order(self, trainer: L.Trainer) -> None:
        from lightning.pytorch.callbacks import WeightAveraging

        callbacks = list(trainer.callbacks)
        averaging = [i for i, c in enumerate(callbacks) if isinstance(c, WeightAveraging)]
        if averaging and averaging[0] < callbacks.index(self) and not self._warned_order:
            self._warned_order = True
            log.warning("AudioMetricsCallback comes after a weight-averaging (EMA) callback: the EMA weights are "
                        "swapped out before it runs, so it scores the live weights. Put it before the EMA callback.")

    def state_dict(self) -> dict[str, Any]:
        return {"last_bucket": self._last_bucket}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_bucket = int(state_dict.get("last_bucket", 0))

    # ------------------------------------------------------------------------------------------- evaluation
    def _setup(self, pl_module: L.LightningModule) -> tuple[Any, AudioEvalSuite]:
        if self._codec is None:

            self._codec = load_codec(self.codec_name or pl_module.hparams.codec, device=pl_module.device)
            self._references = ReferenceLoader(self._codec)
        if self._suite is None:
            self._suite = AudioEvalSuite(self.metric_names, self.embedders, self.embedder_kwargs,
                                         self.allow_random_embedders, self.seed, codec=self._codec)
        self._codec.to(pl_module.device)
        return self._codec, self._suite.to(pl_module.device)

    def _generator(self, pl_module: L.LightningModule, codec: Any) -> Any:
        return pl_module.generator(codec)

    def _max_calls(self, trainer: L.Trainer, pl_module: L.LightningModule, calls: int) -> int:
        """The largest per-rank generate-call count (every rank must make that many)."""
        if trainer.world_size <= 1 or not torch.distributed.is_initialized():
            return calls
        count = torch.tensor(calls, device=pl_module.device)
        torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MAX)
        return int(count)

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Generate, score and log now (collective: every rank must call it)."""
        codec, suite = self._setup(pl_module)
        suite.reset()
        generator = self._generator(pl_module, codec)
        if self.prompts is not None:
            items, rank, world, offset = self._file_items(), trainer.global_rank, trainer.world_size, 0
            min_calls = 0
        else:
            items, rank, world = self._items, 0, 1
            offset = trainer.global_rank * self._quota(trainer)
            min_calls = self._max_calls(trainer, pl_module, math.ceil(len(items) / self.batch_size))
            if min_calls == 0:
                raise RuntimeError("AudioMetricsCallback has no prompts: no validation batch was seen. Give the "
                                   "trainer validation data or prompts=FILE.")
        bar = self._bar(trainer, generator, len(items), min_calls)
        model = pl_module.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                examples = evaluate_items(
                    generator, suite, items, rank=rank, world_size=world, batch_size=self.batch_size,
                    seed=self.seed + offset, max_duration=self.max_duration, decoding=self.decoding, lufs=self.lufs,
                    references=self._references, keep_examples=self.log_examples, min_calls=min_calls,
                    progress=bar.update if bar is not None else None)
        finally:
            model.train(was_training)
            if bar is not None:
                bar.close()
        results = suite.compute()
        self.last_results = results
        for name, value in results.items():
            pl_module.log(f"eval/{name}", value, sync_dist=True)
        if suite.skipped:
            log.warning("AudioMetricsCallback: %d items skipped on rank %d (too short).", suite.skipped,
                        trainer.global_rank)
        if trainer.is_global_zero and examples:
            self._log_media(trainer, examples)
        return results

    def _bar(self, trainer: L.Trainer, generator: Any, num_items: int, min_calls: int) -> Any:
        if not (self.progress_bar and trainer.is_global_zero):
            return None
        from tqdm.auto import tqdm

        world = trainer.world_size if self.prompts is not None else 1
        calls = max(min_calls, math.ceil(math.ceil(num_items / self.batch_size) / world))
        steps = generator.plan(self.max_duration, **self.decoding).steps
        return tqdm(total=calls * steps, desc="eval/audio metrics", unit="step", leave=False, dynamic_ncols=True)

    def _log_media(self, trainer: L.Trainer, examples: list[Example]) -> None:

        log_examples(trainer, examples, prefix="eval")
