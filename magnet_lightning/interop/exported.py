"""What an export wrote (every format returns it to `magnet-export`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Exported:
    folder: Path
    files: list[str]
    """The names in `folder`."""
    notes: list[str] = field(default_factory=list)
    """What the user should know (a part with random weights, a codec audiocraft cannot load, ...)."""
