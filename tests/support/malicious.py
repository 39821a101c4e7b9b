"""A pickle whose `__reduce__` writes a marker file: what every loader of the project must refuse to run."""

from __future__ import annotations

from pathlib import Path

import torch


class Payload:
    """Unpickling this calls exec(), which writes the marker file: the proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


def malicious_file(path: Path, marker: Path, extra: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.zeros(2)}, **(extra or {}), "x": Payload(marker)}, path)
    return path
