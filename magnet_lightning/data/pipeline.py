"""Streaming token shards into fixed-size training batches, and deterministic validation batches.

Shapes: B batch, K codebooks, T frames (Tseg = frames of one training segment), V codebook size.

Train stream (per DataLoader worker): pick a dataset by weight, pick a shard of it at random (with replacement,
weighted by its sample count so tracks are drawn uniformly), read its samples, validate them, crop a random segment
(random seek as in the reference), shuffle through a buffer, augment the text, and emit full batches only.
Every rank and worker seeds its own RNG from (run seed, rank, worker, start step, restart), so a resumed run does not
replay the stream it already saw. Bad samples are skipped and counted in a shared table the LightningModule can log.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import random
import zlib
from collections.abc import Iterator

import numpy as np
import torch

from magnet_lightning.data.augment import TextAugmentConfig, augment_music_text
from magnet_lightning.data.chroma import ChromaSpec, decode_chroma, segment_item, take_chroma
from magnet_lightning.data.shards import CHROMA_MEMBER, CODES_MEMBER, JSON_MEMBER, ShardSet, caption_of

log = logging.getLogger(__name__)

SKIP_REASONS = ("corrupt_shard", "missing_member", "bad_codes", "bad_dtype", "bad_shape", "token_out_of_range",
                "empty", "bad_json", "duplicate_key", "bad_chroma")


class BadSample(Exception):
    """A sample that cannot be used; `reason` is one of SKIP_REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class SkipCounter:
    """Counts skipped samples per reason across DataLoader workers.

    A shared-memory int64 table [num_workers + 1, R]: worker w writes only row w + 1 (row 0 = main process), so
    counts from worker processes are visible to the trainer without locks. Each reason is logged as a warning the
    first few times, then every 1000th time.
    """

    def __init__(self, num_workers: int = 0):
        self.table = torch.zeros(num_workers + 1, len(SKIP_REASONS), dtype=torch.int64).share_memory_()

    def add(self, reason: str, detail: str = "") -> None:
        info = torch.utils.data.get_worker_info()
        row = 0 if info is None else min(info.id + 1, self.table.shape[0] - 1)
        col = SKIP_REASONS.index(reason)
        self.table[row, col] += 1
        n = int(self.table[:, col].sum())
        if n <= 5 or n % 1000 == 0:
            log.warning("skipped bad sample (%s, %d so far): %s", reason, n, detail)

    def totals(self) -> dict[str, int]:
        sums = self.table.sum(dim=0).tolist()
        return {reason: int(n) for reason, n in zip(SKIP_REASONS, sums)}


@functools.lru_cache(maxsize=4096)
def _npy_header(header: bytes) -> tuple[np.dtype, tuple[int, ...]]:
    # Shards hold few distinct headers (one per track length), so each is parsed once: this saves most of
    # np.load's cost per sample.
    stream = io.BytesIO(header)
    np.lib.format.read_magic(stream)
    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
    if fortran_order or dtype.hasobject:
        raise ValueError("fortran-ordered or object npy arrays are not token arrays")
    return dtype, tuple(shape)


def load_npy(data: bytes) -> np.ndarray:
    """Parse .npy bytes (never unpickles) into a read-only array."""
    if data[:6] != b"\x93NUMPY" or data[6] != 1:  # other format versions: let numpy parse them
        return np.load(io.BytesIO(data), allow_pickle=False)
    end = 10 + int.from_bytes(data[8:10], "little")
    dtype, shape = _npy_header(bytes(data[:end]))
    count = int(np.prod(shape)) if shape else 1
    if len(data) - end < count * dtype.itemsize:
        raise ValueError(f"truncated npy data: {len(data) - end} bytes for {shape} {dtype}")
    return np.frombuffer(data, dtype=dtype, count=count, offset=end).reshape(shape)


def decode_sample(sample: dict, num_codebooks: int, codebook_size: int,
                  chroma_bins: int = 0) -> tuple[np.ndarray, dict]:
    """Validate one raw WebDataset sample.

    Returns:
        (codes int16 [K, T], meta dict with the sample's json plus ``key``, and with `chroma_bins` > 0 its chroma
        float32 [Tc, C] under ``chroma``); raises `BadSample` otherwise.
    """
    key = sample.get("__key__", "?")
    if CODES_MEMBER not in sample or JSON_MEMBER not in sample:
        raise BadSample("missing_member", f"{key} in {sample.get('__url__')} has {sorted(sample)}")
    try:
        codes = load_npy(sample[CODES_MEMBER])
    except Exception as e:  # any parse failure of the npy bytes
        raise BadSample("bad_codes", f"{key}: {e}") from None
    if codes.dtype != np.int16:
        raise BadSample("bad_dtype", f"{key}: {codes.dtype}, expected int16")
    if codes.ndim != 2 or codes.shape[0] != num_codebooks:
        raise BadSample("bad_shape", f"{key}: {codes.shape}, expected ({num_codebooks}, T)")
    if codes.shape[1] == 0:
        raise BadSample("empty", key)
    if codes.min() < 0 or codes.max() >= codebook_size:
        raise BadSample("token_out_of_range", f"{key}: ids in [{codes.min()}, {codes.max()}], V={codebook_size}")
    try:
        meta = json.loads(sample[JSON_MEMBER])
    except ValueError as e:
        raise BadSample("bad_json", f"{key}: {e}") from None
    if not isinstance(meta, dict):
        raise BadSample("bad_json", f"{key}: json is a {type(meta).__name__}, expected an object")
    meta["key"] = key
    if chroma_bins:
        try:
            meta["chroma"] = decode_chroma(sample, chroma_bins)
        except KeyError:
            raise BadSample("missing_member", f"{key} in {sample.get('__url__')} has no {CHROMA_MEMBER} (shards "
                                              "tokenized without --chroma)") from None
        except ValueError as e:
            raise BadSample("bad_chroma", f"{key}: {e}") from None
    return codes, meta


def crop_start(num_frames: int, seg_frames: int, rng: random.Random, min_segment_ratio: float = 0.8) -> int:
    """Start frame of a random segment: ~ U{0..max(0, T - ratio * Tseg)} (the reference's seek)."""
    max_start = max(0, num_frames - int(min_segment_ratio * seg_frames))
    return rng.randint(0, max_start) if max_start > 0 else 0


def collate(items: list[tuple[np.ndarray, str, dict]], seg_frames: int) -> dict:
    """Pad segments to Tseg and stack.

    Args:
        items: (codes int16 [K, t <= Tseg], text, meta) per sample.

    Returns:
        {"codes": ShortTensor [B, K, Tseg], "padding_mask": BoolTensor [B, Tseg] (True = real frame),
         "text": list[str], "meta": list[dict]} (and for melody models "chroma" [B, Lc, C], "chroma_offset" [B]:
        data/chroma.py); padded frames hold token 0. Codes stay int16 here (4x less to
        copy out of a worker); `as_long` widens them in the main process.
    """
    num_codebooks = items[0][0].shape[0]
    codes = np.zeros((len(items), num_codebooks, seg_frames), dtype=np.int16)
    lengths = np.empty(len(items), dtype=np.int64)
    for i, (c, _, _) in enumerate(items):
        codes[i, :, : c.shape[1]] = c
        lengths[i] = c.shape[1]
    mask = np.arange(seg_frames)[None, :] < lengths[:, None]
    batch = {"codes": torch.from_numpy(codes), "padding_mask": torch.from_numpy(mask),
             "text": [t for _, t, _ in items], "meta": [m for _, _, m in items]}
    return take_chroma(batch)


def group_members(files: Iterator[dict], url: str, counter: SkipCounter) -> Iterator[dict]:
    """Tar members ({"fname", "data"}, in tar order) -> samples {"__key__", "__url__", ext: bytes, ...}.

    A key that already had a sample in this shard (a member repeated inside a sample, or the key coming back later)
    starts a duplicate: all its members are skipped and counted once as ``duplicate_key``; the first sample of that
    key and the rest of the shard are kept.
    """
    from webdataset.tariterators import base_plus_ext

    seen: set[str] = set()
    current: dict | None = None
    skipping: str | None = None
    for member in files:
        if not member:  # end-of-shard marker
            break
        key, ext = base_plus_ext(member["fname"])
        if key is None:
            continue
        ext = ext.lower()
        if current is not None and key == current["__key__"] and ext not in current:
            current[ext] = member["data"]
            continue
        if current is not None:
            yield current
            current = None
        if key in seen:
            if skipping != key:
                counter.add("duplicate_key", f"{key} in {url} again (only its first sample is kept)")
                skipping = key
            continue
        seen.add(key)
        skipping = None
        current = {"__key__": key, "__url__": url, ext: member["data"]}
    if current is not None:
        yield current


def iter_shard(url: str, counter: SkipCounter, num_codebooks: int, codebook_size: int,
               chroma_bins: int = 0) -> Iterator[tuple]:
    """Valid (codes [K, T], meta) of one shard (with `chroma_bins`, the chroma in meta['chroma']); corrupt shards,
    duplicate keys and bad samples are counted and skipped."""
    from webdataset.tariterators import tar_file_expander, url_opener

    def on_error(exn: Exception) -> bool:
        counter.add("corrupt_shard", f"{url}: {exn!r}")
        return False  # stop reading this shard: the tar stream is unusable after an error

    files = tar_file_expander(url_opener([{"url": url}], handler=on_error), handler=on_error)
    for sample in group_members(files, url, counter):
        try:
            yield decode_sample(sample, num_codebooks, codebook_size, chroma_bins)
        except BadSample as bad:
            counter.add(bad.reason, str(bad))


def mix_seed(*parts: int) -> int:
    """A 64-bit seed from several integers (stable across processes, unlike hash())."""
    state = np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(2, np.uint32)
    return int.from_bytes(state.tobytes(), "little")


class TrainStream(torch.utils.data.IterableDataset):
    """Endless stream of full training batches (see module docstring); wrap with `EpochLoader` for epochs."""

    def __init__(self, datasets: list[ShardSet], weights: list[float], num_codebooks: int, codebook_size: int,
                 seg_frames: int, batch_size: int, shuffle_buffer: int, counter: SkipCounter, seed: int = 0,
                 rank: int = 0, start_step: int = 0, restart: int = 0, min_segment_ratio: float = 0.8,
                 text_augment: TextAugmentConfig | None = None, chroma: ChromaSpec | None = None):
        super().__init__()
        self.chroma = chroma
        self.datasets, self.weights = datasets, weights
        self.num_codebooks, self.codebook_size = num_codebooks, codebook_size
        self.seg_frames, self.batch_size, self.shuffle_buffer = seg_frames, batch_size, max(1, shuffle_buffer)
        self.counter, self.min_segment_ratio, self.text_augment = counter, min_segment_ratio, text_augment
        self.seed, self.rank, self.start_step, self.restart = seed, rank, start_step, restart

    def _shard_samples(self, ds: ShardSet, rng: random.Random) -> Iterator[tuple]:
        counts = ds.num_samples if ds.total_samples else None
        barren = 0  # shards in a row that gave no valid sample
        while True:
            url = rng.choices(ds.urls, weights=counts)[0] if counts else rng.choice(ds.urls)
            got = 0
            bins = self.chroma.bins if self.chroma else 0
            for item in iter_shard(url, self.counter, self.num_codebooks, self.codebook_size, bins):
                got += 1
                yield item
            barren = 0 if got else barren + 1
            if barren > 2 * len(ds.urls) + 8:
                raise RuntimeError(f"shards of {ds.spec!r} yield no valid samples (skips so far: "
                                   f"{self.counter.totals()}); check the shard list and the codec settings")

    def _samples(self, rng: random.Random) -> Iterator[tuple]:
        streams = [self._shard_samples(ds, rng) for ds in self.datasets]
        if len(streams) == 1:
            yield from streams[0]
            return
        indices = range(len(streams))
        while True:
            yield next(streams[rng.choices(indices, weights=self.weights)[0]])

    def _item(self, codes: np.ndarray, meta: dict, rng: random.Random) -> tuple:
        start = crop_start(codes.shape[1], self.seg_frames, rng, self.min_segment_ratio)
        text = caption_of(meta)
        if self.text_augment is not None:
            text = augment_music_text(text, meta.get("metadata") or {}, rng, self.text_augment)
        return segment_item(codes, meta, start, self.seg_frames, self.chroma.rates if self.chroma else None, text)

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        rng = random.Random(mix_seed(self.seed, self.rank, worker, self.start_step, self.restart))
        buffer: list[tuple] = []
        batch: list[tuple] = []
        for codes, meta in self._samples(rng):
            item = self._item(codes, meta, rng)
            if len(buffer) < self.shuffle_buffer:
                buffer.append(item)
                continue
            i = rng.randrange(len(buffer))
            buffer[i], item = item, buffer[i]
            batch.append(item)
            if len(batch) == self.batch_size:
                yield collate(batch, self.seg_frames)
                batch = []


def as_long(batch: dict) -> dict:
    """Widen batch["codes"] to int64 (the dtype of the batch contract), in place."""
    batch["codes"] = batch["codes"].long()
    return batch


def keep_batch(batch: dict) -> dict:
    """DataLoader collate_fn for streams that already yield batches (skips torch's recursive default_convert)."""
    return batch


class EpochLoader:
    """Exactly `num_batches` batches per epoch from one endless, persistent DataLoader iterator.

    Every rank sees the same `len()`, so Lightning's loops never wait on a rank that ran out of data. The iterator
    is created on the first epoch (after a checkpoint restore, so `make_loader` can read the start step).
    """

    def __init__(self, make_loader, num_batches: int):
        self.make_loader, self.num_batches = make_loader, int(num_batches)
        self._it = None

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[dict]:
        if self._it is None:
            self._it = iter(self.make_loader())
        for _ in range(self.num_batches):
            yield as_long(next(self._it))

    def close(self) -> None:
        """Stop the worker processes (also happens when the loader is garbage-collected)."""
        shutdown = getattr(self._it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self._it = None


class BatchList:
    """A fixed list of ready batches (validation): an iterable with a length, never re-split by Lightning."""

    def __init__(self, batches: list[dict]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.batches)


def build_val_batches(datasets: list[ShardSet], num_codebooks: int, codebook_size: int, seg_frames: int,
                      batch_size: int, counter: SkipCounter, rank: int = 0, world_size: int = 1,
                      min_segment_ratio: float = 0.8, chroma: ChromaSpec | None = None) -> BatchList:
    """Deterministic validation batches for one rank.

    All shards are read in order; each sample gets a crop seeded by its key. Sample i goes to rank i % world_size;
    the list is first padded by repeating samples from its start (as DistributedSampler does) so every rank gets
    the same number of samples, hence the same number of batches.
    """
    items = []
    for ds in datasets:
        for url in ds.urls:
            for codes, meta in iter_shard(url, counter, num_codebooks, codebook_size, chroma.bins if chroma else 0):
                rng = random.Random(zlib.crc32(meta["key"].encode()))
                start = crop_start(codes.shape[1], seg_frames, rng, min_segment_ratio)
                items.append(segment_item(codes, meta, start, seg_frames, chroma.rates if chroma else None,
                                          caption_of(meta)))
    if not items:
        raise RuntimeError(f"validation shards {[d.spec for d in datasets]} yield no valid samples "
                           f"(skips: {counter.totals()})")
    per_rank = -(-len(items) // world_size)
    padded = [items[i % len(items)] for i in range(per_rank * world_size)]
    mine = padded[rank::world_size]
    batches = [as_long(collate(mine[i: i + batch_size], seg_frames)) for i in range(0, len(mine), batch_size)]
    return BatchList(batches)
