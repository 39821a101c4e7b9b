"""``manifest.jsonl`` of an output folder: one JSON record per written file, rewritten atomically on every update.

A rerun into the same folder replaces the records of the files it writes again (never a duplicate) and keeps the
records of the other files; a reader never sees a half-written manifest (temp file + rename).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from magnet_lightning.utils.stale_files import remove_stale

log = logging.getLogger(__name__)


class RunManifest:
    """Records keyed by their ``"file"`` field, in first-written order."""

    def __init__(self, path: str | Path) -> None:

        self.path = Path(path)
        self.records: dict[str, dict] = {}
        remove_stale(self.path.parent, f".{self.path.name}.tmp*")  # left by a killed run
        if self.path.is_file():
            for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
                try:
                    record = json.loads(line)
                    self.records[str(record["file"])] = record
                except (ValueError, KeyError, TypeError):
                    log.warning("%s:%d: dropping an unreadable record", self.path, number)

    def add(self, records: list[dict]) -> None:
        """Add (or replace, by file name) `records` and rewrite the manifest."""
        for record in records:
            self.records.pop(str(record["file"]), None)  # a rewritten file moves to the end
            self.records[str(record["file"])] = record
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records.values()), encoding="utf-8")
        os.replace(tmp, self.path)
