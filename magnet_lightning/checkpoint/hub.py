"""Released checkpoints by name: Hugging Face hub repos of audiocraft's models, and user paths.

`resolve_lm("facebook/magnet-small-10secs")` fetches `state_dict.bin` through `huggingface_hub` (its cache and
`HF_HOME` / `HF_HUB_CACHE` are honoured; with `HF_HUB_OFFLINE=1` only the cache is read); a local file or folder is
used as it is. `~` is expanded in every path. When a file cannot be had, the error names the repo, the files and
the `hf download` command that fetches them, and nothing is loaded.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

LM_FILE = "state_dict.bin"
CODEC_FILE = "compression_state_dict.bin"

RELEASED = {
    # repo id -> what it is (audiocraft's export format: state_dict.bin + compression_state_dict.bin)
    "facebook/magnet-small-10secs": "MAGNeT small, text to music, 10 s",
    "facebook/magnet-medium-10secs": "MAGNeT medium, text to music, 10 s",
    "facebook/magnet-small-30secs": "MAGNeT small, text to music, 30 s",
    "facebook/magnet-medium-30secs": "MAGNeT medium, text to music, 30 s",
    "facebook/audio-magnet-small": "Audio-MAGNeT small, text to sound, 10 s",
    "facebook/audio-magnet-medium": "Audio-MAGNeT medium, text to sound, 10 s",
    "facebook/musicgen-small": "MusicGen small (autoregressive), text to music",
    "facebook/musicgen-medium": "MusicGen medium (autoregressive), text to music",
    "facebook/musicgen-large": "MusicGen large (autoregressive), text to music",
    "facebook/musicgen-stereo-small": "MusicGen small (autoregressive), text to stereo music",
    "facebook/musicgen-stereo-medium": "MusicGen medium (autoregressive), text to stereo music",
    "facebook/musicgen-stereo-large": "MusicGen large (autoregressive), text to stereo music",
    "facebook/hybrid-magnet-small": "Hybrid-MAGNeT small (autoregressive prompt, then MAGNeT), text to music, 30 s",
    "facebook/hybrid-magnet-medium": "Hybrid-MAGNeT medium (autoregressive prompt, then MAGNeT), text to music, 30 s",
    "facebook/musicgen-melody": "MusicGen melody (autoregressive, 1.5 B), text and melody (chroma) to music",
    "facebook/musicgen-melody-large": "MusicGen melody large (autoregressive, 3.3 B), text and melody to music",
    "facebook/musicgen-stereo-melody": "MusicGen melody (autoregressive, 1.5 B), text and melody to stereo music",
    "facebook/musicgen-stereo-melody-large": "MusicGen melody large (autoregressive, 3.3 B), text and melody to stereo "
                                             "music",
}
"""The repos in audiocraft's export format that this project reads. Weights are CC-BY-NC 4.0."""

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class HubError(FileNotFoundError):
    """A released file that is neither on disk nor in the Hugging Face cache (the message says how to get it)."""


@dataclass(frozen=True)
class Source:
    """Where a checkpoint came from: the local file, and the hub repo when it was fetched from one."""

    path: Path
    repo_id: str | None = None


def expand(path: str | os.PathLike) -> Path:
    """A user path with `~` and environment variables expanded."""
    return Path(os.path.expandvars(os.path.expanduser(str(path))))


def expand_args(args, *names: str):
    """Expand `~` and $VARS in the path arguments `names` of an argparse namespace (in place); returns it."""
    for name in names:
        value = getattr(args, name, None)
        if isinstance(value, str) and not looks_like_repo_id(value):
            setattr(args, name, str(expand(value)))
    return args


def looks_like_repo_id(name: str) -> bool:
    """'org/name' that is not an existing path."""
    return bool(_REPO_ID.match(name)) and not expand(name).exists()


def download_command(repo_id: str, *filenames: str) -> str:
    return f"hf download {repo_id} {' '.join(filenames)}"


def fetch(repo_id: str, filename: str, *files_of_repo: str) -> Path:
    """The local path of `filename` in hub repo `repo_id` (downloaded into the HF cache when online).

    `files_of_repo` only lists the other files the error message should tell the user to download.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except LocalEntryNotFoundError as err:  # not cached, and offline or unreachable
        files = (filename, *[f for f in files_of_repo if f != filename])
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
        why = "the hub is offline (HF_HUB_OFFLINE)" if offline else f"it could not be downloaded ({type(err).__name__})"
        raise HubError(
            f"{filename} of {repo_id} is not in the Hugging Face cache and {why}. On a machine with internet run "
            f"`{download_command(repo_id, *files)}` (the weights are CC-BY-NC 4.0), then copy the cache "
            f"({_cache_dir()}) here, or pass the downloaded file's path instead of the repo id"
        ) from None
    except RemoteEntryNotFoundError:
        raise HubError(f"{repo_id} has no file {filename!r}") from None
    except RepositoryNotFoundError:
        raise HubError(f"no Hugging Face repo {repo_id!r} (is the name right? released checkpoints: "
                       f"{', '.join(sorted(RELEASED))})") from None


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


SHARDED_META = "meta.pt"
"""Beside torch.distributed.checkpoint's `.metadata`, what marks a sharded training checkpoint folder
(training/sharded_checkpoint.py writes it)."""


def is_sharded(path: str | os.PathLike) -> bool:
    """True for a sharded training checkpoint folder (DCP metadata and `meta.pt`)."""
    path = Path(path)
    return path.is_dir() and (path / ".metadata").is_file() and (path / SHARDED_META).is_file()


def resolve_lm(name_or_path: str | os.PathLike) -> Source:
    """An LM checkpoint given as a file, a folder holding state_dict.bin, or a hub repo id -> Source.

    Raises HubError (repo id not fetchable) or FileNotFoundError (a path that does not exist), both naming the fix.
    """
    text = str(name_or_path)
    path = expand(text)
    if path.is_file():
        return Source(path.resolve())
    if is_sharded(path):
        raise FileNotFoundError(f"{path} is a sharded training checkpoint (FSDP2): convert it into one file first, "
                                f"e.g. `magnet-convert sharded {path} model.ckpt`, and pass that file")
    if path.is_dir():
        inner = path / LM_FILE
        if not inner.is_file():
            raise FileNotFoundError(f"{path} is a folder without {LM_FILE}: pass the checkpoint file itself")
        return Source(inner.resolve())
    if looks_like_repo_id(text):
        return Source(fetch(text, LM_FILE, CODEC_FILE), repo_id=text)
    raise FileNotFoundError(
        f"checkpoint {text} not found: give a checkpoint file (ours, or an audiocraft {LM_FILE}) or a released "
        f"repo id such as facebook/magnet-small-10secs"
    )
