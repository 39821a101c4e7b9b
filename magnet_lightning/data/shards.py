"""Token shard manifests and shard URL lists.

A token dataset is a folder of WebDataset tar shards ``NAME-000000.tar`` whose samples are ``KEY.codes.npy``
(int16 [K, T], a whole track) and ``KEY.json`` (caption, metadata, duration, source), plus ``manifest.json``
(layout in docs/CONTRACTS.md). This module reads and writes that manifest, checks it against a model, and turns
user shard specs (folders, manifest files, globs, brace ranges, pipe:/s3:/gs:/http URLs) into URL lists.
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from magnet_lightning.errors import UserError
from magnet_lightning.utils.codec_names import is_stereo, layout_label, mono_name, stereo_name

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "magnet_lightning.shards"
MANIFEST_VERSION = 1
TOKENIZER_VERSION = "1"
CODES_MEMBER = "codes.npy"
JSON_MEMBER = "json"
CHROMA_MEMBER = "chroma.npy"
"""float16 [Tc, C]: the whole track's chroma (the melody condition), in shards tokenized with --chroma."""
CHROMA_FIELDS = ("n_chroma", "radix2_exp", "argmax", "stems", "sample_rate")
"""The manifest's `chroma` settings a melody model must share (how the chroma was computed)."""
CAPTION_FIELDS = ("caption", "description", "text", "prompt")  # where a caption is looked for, in this order


class ManifestMismatchError(UserError, ValueError):
    """Shards tokenized with a codec the model cannot read (K, V, frame rate, codec, sample rate or channels)."""


def caption_of(record: dict) -> str:
    """The caption of a sample's json or an input record: the first non-empty of CAPTION_FIELDS, '' if none."""
    for name in CAPTION_FIELDS:
        if record.get(name):
            return str(record[name])
    return ""


def write_manifest(out_dir: str | Path, codec_info: dict, shards: list[dict], **extra) -> Path:
    """Write ``manifest.json`` atomically (temp file + rename, so a reader never sees half a file).

    Args:
        out_dir: shard folder.
        codec_info: name, sample_rate, frame_rate, num_codebooks, codebook_size, channels (and, when known,
            source and random_weights: written as codec_source and codec_random_weights).
        shards: [{"url": "NAME-000000.tar", "num_samples": n}, ...], urls relative to `out_dir`.
        **extra: more top-level fields (e.g. skip counters).
    """
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "codec": codec_info["name"],
        "sample_rate": int(codec_info["sample_rate"]),
        "frame_rate": float(codec_info["frame_rate"]),
        "num_codebooks": int(codec_info["num_codebooks"]),
        "codebook_size": int(codec_info["codebook_size"]),
        "channels": int(codec_info["channels"]),
        "shards": shards,
        "num_samples": sum(int(s["num_samples"]) for s in shards),
        "tokenizer_version": TOKENIZER_VERSION,
        **extra,
    }
    if codec_info.get("source"):  # a local codec's absolute folder: the shards name it from anywhere
        manifest["codec_source"] = str(codec_info["source"])
    if codec_info.get("random_weights"):  # a random-weight stand-in (the demo's codec): said wherever it is used
        manifest["codec_random_weights"] = True
    path = Path(out_dir) / MANIFEST_NAME
    tmp = path.with_suffix(f".json.tmp{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)
    return path


def read_manifest(path: str | Path) -> dict:
    """Read a manifest from its file or its folder; raises a clear error if it is absent or not ours."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no shard manifest at {path}; create the shards with data/tokenize_audio.py")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); re-run data/tokenize_audio.py to rewrite it") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise UserError(f"{path} is not a {MANIFEST_FORMAT} manifest (format={found!r})")
    if manifest.get("version", 0) > MANIFEST_VERSION:
        raise UserError(f"{path} has manifest version {manifest['version']}; this code reads <= {MANIFEST_VERSION}")
    return manifest


def codec_base_name(name: str) -> str:
    """The codec's identity without family prefix, bandwidth or folder: 'hf-encodec:facebook/encodec_32khz@2.2kbps'
    and '/models/encodec_32khz/' both give 'encodec_32khz' (shards record a folder codec by its folder name); a stereo
    codec keeps its prefix: 'stereo:hf-encodec:facebook/encodec_32khz' gives 'stereo:encodec_32khz'."""
    base = re.sub(r"^[A-Za-z][\w-]*:(?!//)", "", mono_name(name))
    base = re.sub(r"@[\d.]+kbps$", "", base).rstrip("/").split("/")[-1].lower()
    return stereo_name(base) if is_stereo(name) else base


_FIELDS = (("num_codebooks", "K"), ("codebook_size", "V"), ("frame_rate", "frame rate"),
           ("sample_rate", "sample rate"), ("channels", "channels"))


def check_chroma(manifest: dict, chroma: dict | None, where: str = "shards") -> None:
    """A melody model (`chroma`: its MelodyConfig fields) needs shards with chroma computed the same way."""
    if not chroma:
        return
    found = manifest.get("chroma")
    if not found:
        stems = " --chroma-stems none" if chroma.get("stems") == "none" else ""
        raise ManifestMismatchError(f"{where} hold no chroma features, and this model is melody-conditioned: "
                                    f"tokenize the audio with --chroma (data/tokenize_audio.py --chroma{stems})")
    wrong = [f"{k} {found.get(k)!r} in the shards, {chroma.get(k)!r} in the model" for k in CHROMA_FIELDS
             if k in chroma and found.get(k) != chroma[k]]
    if wrong:
        raise ManifestMismatchError(f"{where}: their chroma was computed otherwise than the model's melody settings "
                                    f"({'; '.join(wrong)}): re-tokenize with matching --chroma options")


def check_compatible(manifest: dict, num_codebooks: int | None = None, codebook_size: int | None = None,
                     frame_rate: float | None = None, where: str = "shards", codec: str | None = None,
                     sample_rate: int | None = None, channels: int | None = None, chroma: dict | None = None) -> None:
    """Raise `ManifestMismatchError` naming every field of the manifest that differs from the model's expectation:
    K, V, frame rate, codec (compared by `codec_base_name`), sample rate, channels (None = unchecked), and a melody
    model's chroma (`check_chroma`)."""
    check_layout(manifest, codec, where)
    wanted = {"num_codebooks": num_codebooks, "codebook_size": codebook_size, "frame_rate": frame_rate,
              "sample_rate": sample_rate, "channels": channels}
    problems = []
    for key, label in _FIELDS:
        want = wanted[key]
        if want is not None and key in manifest and abs(float(manifest[key]) - float(want)) > 1e-6:
            problems.append(f"{label} ({key}) {manifest[key]} in the shards, {want} in the model")
    if codec is not None and manifest.get("codec") and codec_base_name(manifest["codec"]) != codec_base_name(codec):
        problems.append(f"codec {manifest['codec']!r} in the shards, {codec!r} in the model")
    if problems:
        raise ManifestMismatchError(
            f"{where} do not fit the model: " + "; ".join(problems)
            + ". Re-tokenize the audio with the model's codec (data/tokenize_audio.py --codec), or set the model's "
              "codec / sizes to those the shards were made with."
        )
    check_chroma(manifest, chroma, where)


def check_layout(manifest: dict, codec: str | None, where: str = "shards") -> None:
    """Mono shards for a stereo model, or stereo shards for a mono one (by the codec names: utils/codec_names.py)
    -> `ManifestMismatchError` saying which is which and how to re-tokenize. None / unnamed codecs: unchecked."""
    recorded = manifest.get("codec")
    if codec is None or not recorded or is_stereo(recorded) == is_stereo(codec):
        return
    shards, model = layout_label(is_stereo(recorded)), layout_label(is_stereo(codec))
    raise ManifestMismatchError(
        f"{where} are {shards} ({manifest.get('num_codebooks', '?')} codebooks, codec {recorded!r}) but the model is "
        f"{model} (codec {codec!r}): re-tokenize the audio with `--codec {codec}` (data/tokenize_audio.py), or give "
        f"these shards to a {shards} model")


class TarShardWriter:
    """Writes WebDataset samples to one tar file, in plain USTAR with integer mtimes.

    (webdataset's TarWriter stores float mtimes, which makes tarfile add a PAX header to every member and doubles
    the header parsing cost when reading.) Usage: ``with TarShardWriter(path) as w: w.write(key, {"codes.npy": b})``.
    """

    def __init__(self, path: str | Path):
        self.tar = tarfile.open(str(path), mode="w", format=tarfile.USTAR_FORMAT)
        self.mtime = int(time.time())
        self.count = 0

    def write(self, key: str, members: dict[str, bytes]) -> None:
        """Add sample `key` with members {extension: bytes}; keys may not contain dots (WebDataset splits there)."""
        if "." in key or not key:
            raise ValueError(f"sample key {key!r} must be non-empty and contain no '.'")
        for ext, data in members.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), self.mtime, 0o444
            self.tar.addfile(info, io.BytesIO(data))
        self.count += 1

    def close(self) -> None:
        self.tar.close()

    def __enter__(self) -> TarShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class ShardSet:
    """One dataset: shard URLs, their sample counts (None if unknown) and its manifest (None if not found)."""

    spec: str
    urls: list[str]
    num_samples: list[int | None] = field(default_factory=list)
    manifest: dict | None = None

    @property
    def total_samples(self) -> int | None:
        if not self.num_samples or any(n is None for n in self.num_samples):
            return None
        return sum(self.num_samples)


def _remote_to_pipe(url: str) -> str:
    # WebDataset opens pipe: URLs itself; S3 and GCS go through their own CLIs (credentials stay theirs).
    if url.startswith("s3://"):
        return f"pipe:aws s3 cp {url} -"
    if url.startswith("gs://"):
        return f"pipe:gcloud storage cat {url}"
    return url


def _is_remote(spec: str) -> bool:
    return spec.startswith("pipe:") or "://" in spec


def _from_manifest(spec: str, path: Path) -> ShardSet:
    manifest = read_manifest(path)
    root = path.parent if path.is_file() else path
    urls = [str(root / s["url"]) for s in manifest["shards"]]
    missing = [u for u in urls if not Path(u).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of the {len(urls)} shards listed in {root / MANIFEST_NAME} are "
                                f"missing, e.g. {missing[0]}; copy them back or re-run data/tokenize_audio.py")
    return ShardSet(spec, urls, [int(s["num_samples"]) for s in manifest["shards"]], manifest)


def resolve_shards(spec: str) -> ShardSet:
    """Expand one dataset spec into shard URLs.

    Accepted: a shard folder or its manifest.json (all listed shards, with counts); a local tar path, glob or brace
    range (``/d/train-{000000..000099}.tar``; counts and manifest taken from manifest.json beside them when present);
    remote ``pipe:...``, ``s3://...``, ``gs://...``, ``http(s)://...`` (brace ranges allowed; no manifest).
    """
    import braceexpand

    path = Path(spec).expanduser()
    if not _is_remote(spec) and (path.is_dir() or path.name == MANIFEST_NAME):
        return _from_manifest(spec, path)
    expanded = list(braceexpand.braceexpand(spec))
    if _is_remote(spec):
        return ShardSet(spec, [_remote_to_pipe(u) for u in expanded], [None] * len(expanded))
    urls = sorted({u for pat in expanded for u in glob.glob(os.path.expanduser(pat))})
    if not urls:
        raise FileNotFoundError(f"shard spec {spec!r} matches no files: give a shard folder (with manifest.json), "
                                "its manifest.json, or tar paths / a glob / a brace range that exist")
    counts: list[int | None] = [None] * len(urls)
    manifest = None
    folder = Path(urls[0]).parent
    if (folder / MANIFEST_NAME).is_file():
        manifest = read_manifest(folder)
        by_name = {s["url"]: int(s["num_samples"]) for s in manifest["shards"]}
        counts = [by_name.get(Path(u).name) for u in urls]
    return ShardSet(spec, urls, counts, manifest)
