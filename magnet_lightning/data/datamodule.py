"""LightningDataModule over EnCodec token shards, safe for many-GPU DDP.

Train: every rank streams resampled shards (no node splitter: ranks draw independently with their own seeds) and
gets exactly `len(train_dataloader())` equal-size batches per epoch, so no rank ever waits on another; stop training
with `max_steps`. Validation: a fixed, deterministic set of crops, split over ranks with padding so all ranks run the
same number of batches. Batches follow docs/CONTRACTS.md: codes [B, K, Tseg] long, padding_mask [B, Tseg] bool,
text list[str], meta list[dict]; for a melody model (its settings given to `check_compatible`) also the segments'
chroma from shards tokenized with --chroma (data/chroma.py).
"""

from __future__ import annotations

import logging
import math
import os

import lightning as L
import torch
import torch.distributed as dist

from magnet_lightning.data.augment import TextAugmentConfig
from magnet_lightning.data.chroma import ChromaSpec
from magnet_lightning.data.pipeline import EpochLoader, SkipCounter, TrainStream, build_val_batches, keep_batch
from magnet_lightning.data.shards import ShardSet, check_compatible, resolve_shards
from magnet_lightning.errors import UserError

log = logging.getLogger(__name__)


def _as_list(spec: str | list[str] | None) -> list[str]:
    if spec is None:
        return []
    return [spec] if isinstance(spec, str) else list(spec)


class TokenDataModule(L.LightningDataModule):
    """Token shards -> MAGNeT batches.

    Args:
        train_shards: one dataset spec or a list of them (each: shard folder, manifest.json, tar path/glob/brace
            range, or pipe:/s3:///gs:///http(s):// URLs; see `resolve_shards`).
        val_shards: same, for validation (read in order, deterministic crops).
        train_weights: sampling weight per training dataset (default: equal).
        batch_size: batch per device.
        val_batch_size: validation batch per device (default: batch_size).
        segment_duration: training/validation segment in seconds (Tseg = round(duration * frame_rate)).
        min_segment_ratio: random seek range keeps at least this fraction of a segment inside the track (reference 0.8).
        num_workers: DataLoader workers per rank for training.
        shuffle_buffer: samples held for shuffling per worker.
        seed: run seed; combined with rank, worker, start step and restart count.
        samples_per_epoch: global samples per epoch (per-rank batches = ceil(samples / (batch_size * world))).
        batches_per_epoch: batches per rank per epoch (overrides samples_per_epoch). Default: one pass's worth of
            the manifests' sample count.
        text_augment: apply music text augmentation (train only) with the three probabilities below.
        merge_text_p, drop_desc_p, drop_other_p: see `magnet_lightning.data.augment`.
        num_codebooks, codebook_size, frame_rate: the model's K, V and frame rate; manifests must match (required
            when a dataset has no manifest, e.g. remote URLs).
        pin_memory: pin training batches.
    """

    def __init__(self, train_shards: str | list[str] | None = None, val_shards: str | list[str] | None = None,
                 train_weights: list[float] | None = None, batch_size: int = 16, val_batch_size: int | None = None,
                 segment_duration: float = 10.0, min_segment_ratio: float = 0.8, num_workers: int = 2,
                 shuffle_buffer: int = 1000, seed: int = 0, samples_per_epoch: int | None = None,
                 batches_per_epoch: int | None = None, text_augment: bool = True, merge_text_p: float = 0.25,
                 drop_desc_p: float = 0.5, drop_other_p: float = 0.5, num_codebooks: int | None = None,
                 codebook_size: int | None = None, frame_rate: float | None = None, pin_memory: bool = False):
        super().__init__()
        self.save_hyperparameters()
        self.train_specs, self.val_specs = _as_list(train_shards), _as_list(val_shards)
        if train_weights is not None and len(train_weights) != len(self.train_specs):
            raise ValueError(f"{len(train_weights)} train_weights for {len(self.train_specs)} train datasets")
        if train_weights is not None and (min(train_weights) < 0 or sum(train_weights) <= 0):
            raise ValueError(f"train_weights must be >= 0 with a positive sum, got {train_weights}")
        self.train_weights = list(train_weights) if train_weights else [1.0] * len(self.train_specs)
        self.text_augment = TextAugmentConfig(merge_text_p, drop_desc_p, drop_other_p) if text_augment else None
        self.expected = {"num_codebooks": num_codebooks, "codebook_size": codebook_size, "frame_rate": frame_rate}
        self.expected_codec: dict = {}  # codec / sample_rate / channels, when the model (or a callback) names them
        self.train_sets: list[ShardSet] = []
        self.val_sets: list[ShardSet] = []
        self.train_skips = SkipCounter(num_workers)
        self.val_skips = SkipCounter(0)
        self._start_step: int | None = None
        self._restarts = 0
        self._val_cache: dict = {}
        self._train_loader: EpochLoader | None = None
        self.chroma: dict | None = None
        """A melody model's chroma settings (config.MelodyConfig fields; `check_compatible`): batches then hold the
        chroma of every segment, and every manifest must have chroma made the same way."""

    # ----- set-up and checks
    def setup(self, stage: str | None = None) -> None:
        if not self.train_sets and not self.val_sets:
            self.train_sets = [resolve_shards(s) for s in self.train_specs]
            self.val_sets = [resolve_shards(s) for s in self.val_specs]
        self._check_all()

    def check_compatible(self, num_codebooks: int, codebook_size: int, frame_rate: float, codec: str | None = None,
                         sample_rate: int | None = None, channels: int | None = None,
                         chroma: dict | None = None) -> None:
        """Record the model's K, V, frame rate (and codec name, sample rate, channels, a melody model's chroma
        settings when given) and raise `ManifestMismatchError` if any manifest disagrees."""
        self.expected = {"num_codebooks": num_codebooks, "codebook_size": codebook_size, "frame_rate": frame_rate}
        if chroma is not None:
            self.chroma = dict(chroma)
        given = {"codec": codec, "sample_rate": sample_rate, "channels": channels}
        self.expected_codec.update({k: v for k, v in given.items() if v is not None})
        if self.train_sets or self.val_sets:
            self._check_all()

    def _check_all(self) -> None:
        for ds in self.train_sets + self.val_sets:
            if ds.manifest is None:
                missing = [k for k, v in self.expected.items() if v is None]
                if missing:
                    raise UserError(f"dataset {ds.spec!r} has no manifest.json; pass {missing} to the datamodule")
                log.warning("dataset %r has no manifest.json: K and V are checked per sample, frame rate is trusted",
                            ds.spec)
                continue
            check_compatible(ds.manifest, where=f"shards {ds.spec!r}", **self.expected, **self.expected_codec,
                             chroma=self.chroma)
            for key in self.expected:  # datasets must also agree with each other
                if self.expected[key] is None:
                    self.expected[key] = ds.manifest[key]
            for key in ("codec", "sample_rate", "channels"):
                if key in ds.manifest:
                    self.expected_codec.setdefault(key, ds.manifest[key])
            if ds.total_samples == 0:
                raise UserError(f"dataset {ds.spec!r} has 0 samples in its manifest (every file was skipped when "
                                "tokenizing: see manifest.json['skipped'])")

    @property
    def num_codebooks(self) -> int:
        return int(self.expected["num_codebooks"])

    @property
    def codebook_size(self) -> int:
        return int(self.expected["codebook_size"])

    @property
    def frame_rate(self) -> float:
        return float(self.expected["frame_rate"])

    @property
    def chroma_spec(self) -> ChromaSpec | None:
        """What the loaders read of the shards' chroma (a melody model), else None."""
        if not self.chroma:
            return None
        hop = 2 ** int(self.chroma["radix2_exp"]) // 4
        return ChromaSpec(int(self.chroma["n_chroma"]), self.frame_rate, int(self.chroma["sample_rate"]) / hop)

    @property
    def segment_frames(self) -> int:
        """Tseg: frames per training segment."""
        return int(round(self.hparams.segment_duration * self.frame_rate))

    # ----- distributed context and resume
    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is not None:
            return self.trainer.global_rank, self.trainer.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))

    def set_start_step(self, step: int) -> None:
        """Tell the datamodule the optimizer step training (re)starts from (default: trainer.global_step)."""
        self._start_step = int(step)

    def _current_start_step(self) -> int:
        if self._start_step is not None:
            return self._start_step
        return int(self.trainer.global_step) if self.trainer is not None else 0

    def skip_counts(self) -> dict[str, int]:
        """Skipped bad samples so far: {"data/skipped_train_<reason>": n, "data/skipped_val_<reason>": n, ...}."""
        out = {f"data/skipped_train_{k}": v for k, v in self.train_skips.totals().items()}
        out.update({f"data/skipped_val_{k}": v for k, v in self.val_skips.totals().items()})
        return out

    # ----- loaders
    def _batches_per_epoch(self, world_size: int) -> int:
        hp = self.hparams
        if hp.batches_per_epoch:
            batches = int(hp.batches_per_epoch)
        else:
            total = hp.samples_per_epoch
            if total is None:
                counts = [ds.total_samples for ds in self.train_sets]
                if any(c is None for c in counts):
                    raise UserError("sample counts unknown (no manifest): set samples_per_epoch or batches_per_epoch")
                total = sum(counts)
            batches = max(1, math.ceil(total / (hp.batch_size * world_size)))
        return self._whole_accumulations(batches)

    def _whole_accumulations(self, batches: int) -> int:
        """`batches` rounded up to a multiple of the trainer's gradient accumulation, so that no optimizer step is
        built from fewer micro-batches (Lightning steps at the end of an epoch with whatever it has)."""
        accumulate = int(getattr(self.trainer, "accumulate_grad_batches", 1) or 1) if self.trainer else 1
        if batches % accumulate == 0:
            return batches
        rounded = math.ceil(batches / accumulate) * accumulate
        log.warning("epoch length %d batches is not a multiple of accumulate_grad_batches=%d: using %d batches per "
                    "epoch, so every optimizer step has %d micro-batches", batches, accumulate, rounded, accumulate)
        return rounded

    def _make_train_loader(self) -> torch.utils.data.DataLoader:
        hp = self.hparams
        rank, _ = self._rank_world()
        stream = TrainStream(
            self.train_sets, self.train_weights, self.num_codebooks, self.codebook_size, self.segment_frames,
            hp.batch_size, hp.shuffle_buffer, self.train_skips, seed=hp.seed, rank=rank,
            start_step=self._current_start_step(), restart=self._restarts, min_segment_ratio=hp.min_segment_ratio,
            text_augment=self.text_augment, chroma=self.chroma_spec)
        # in_order: batch i comes from worker i % num_workers whichever worker is ready first, so the sample order
        # follows from the seeds (each worker's stream), never from timing; 0 or 1 worker: the same stream.
        extra = {"prefetch_factor": 4, "in_order": True} if hp.num_workers > 0 else {}
        return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=hp.num_workers,
                                           collate_fn=keep_batch, pin_memory=hp.pin_memory, **extra)

    def train_dataloader(self) -> EpochLoader:
        if not self.train_sets:
            raise UserError("no train_shards given: set data.train_shards")
        self._restarts += 1
        if self._train_loader is not None:  # a reload: stop the old workers before new ones fork
            self._train_loader.close()
        self._train_loader = EpochLoader(self._make_train_loader, self._batches_per_epoch(self._rank_world()[1]))
        return self._train_loader

    def val_dataloader(self):
        if not self.val_sets:
            return []
        rank, world = self._rank_world()
        if (rank, world) not in self._val_cache:
            hp = self.hparams
            self._val_cache[(rank, world)] = build_val_batches(
                self.val_sets, self.num_codebooks, self.codebook_size, self.segment_frames,
                hp.val_batch_size or hp.batch_size, self.val_skips, rank, world, hp.min_segment_ratio,
                self.chroma_spec)
        return self._val_cache[(rank, world)]


def global_skip_counts(counts: dict[str, int], device: torch.device | str = "cpu") -> dict[str, int]:
    """`TokenDataModule.skip_counts()` of this process (its loader workers included) -> the run's totals: train
    counters summed over ranks (each rank streams its own samples), validation counters the largest rank's (every
    rank reads the whole validation set, so each counts all of its bad samples). A collective: every rank calls it
    (on `device`: a CUDA one under NCCL). Without a process group, `counts` unchanged."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return dict(counts)
    names = sorted(counts)
    train = [n for n in names if n.startswith("data/skipped_train_")]
    other = [n for n in names if n not in train]
    summed = torch.tensor([counts[n] for n in train], dtype=torch.int64, device=device)
    largest = torch.tensor([counts[n] for n in other], dtype=torch.int64, device=device)
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    dist.all_reduce(largest, op=dist.ReduceOp.MAX)
    return {**dict(zip(train, summed.tolist())), **dict(zip(other, largest.tolist()))}


class LogDataSkips(L.Callback):
    """Logs the run's skipped-sample counters (over all ranks and loader workers: `global_skip_counts`) at the end of
    every training epoch."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        if dm is not None and hasattr(dm, "skip_counts"):
            counts = global_skip_counts(dm.skip_counts(), pl_module.device)  # every rank takes part
            pl_module.log_dict({k: float(v) for k, v in counts.items()}, rank_zero_only=True)
