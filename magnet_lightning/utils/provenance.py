"""What a saved artefact must say about where its parts came from: absolute paths for local files and folders, and
which parts had random weights (the demo's stand-ins: a random codec folder, a random-weight T5, random embedders).

- `RANDOM_MARKER`: a file in a saved codec folder whose weights are random; `is_random_folder` reads it.
- `absolute_if_local`: a relative path that exists here becomes absolute (checkpoints and exports load from any
  folder); hub ids and missing paths are kept as given.
- `RANDOM_PARTS_KEY`: the checkpoint key (a list such as ``["codec", "text_encoder"]``) and `describe_random`, the
  sentence every report, manifest and model card prints.

Imports nothing heavy.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from magnet_lightning.utils.codec_names import is_stereo, mono_name, stereo_name

RANDOM_MARKER = "RANDOM_WEIGHTS.json"
RANDOM_PARTS_KEY = "random_parts"
PART_NAMES = {"codec": "the codec", "text_encoder": "the text encoder (T5)", "embedders": "the metric embedders"}


def is_random_folder(path: str | Path | None) -> bool:
    """Whether `path` is a local folder marked as holding random weights (read without loading anything); for a
    stereo codec name (`stereo:FOLDER`), its mono codec's folder."""
    if not path:
        return False
    try:
        return (Path(mono_name(str(path))).expanduser() / RANDOM_MARKER).is_file()
    except OSError:
        return False


def looks_local(name_or_path: str) -> bool:
    """A path rather than a hub id ('owner/name' or 'name'): absolute, ~, ./ or ../, or more than one '/'."""
    name = str(name_or_path)
    return name.startswith(("/", "~", ".")) or name.count("/") > 1 or os.sep in name.replace("/", "")


def absolute_if_local(value: str | None) -> str | None:
    """`value` as an absolute path when it names an existing local file or folder, else unchanged (a hub id); a
    stereo codec name keeps its prefix (`stereo:FOLDER` -> `stereo:/abs/FOLDER`)."""
    if not value or "://" in str(value):
        return value
    if is_stereo(value):
        return stereo_name(absolute_if_local(mono_name(value)))
    path = Path(str(value)).expanduser()
    return str(path.resolve()) if path.exists() else value


def describe_random(parts: Iterable[str]) -> str:
    """'RANDOM WEIGHTS: the codec, the text encoder (T5): outputs are not meaningful audio' or ''."""
    names = [PART_NAMES.get(p, p) for p in dict.fromkeys(parts)]
    if not names:
        return ""
    return (f"RANDOM WEIGHTS: {', '.join(names)} (stand-ins for missing weights): the audio and numbers only show "
            "that the pipeline runs")
