"""Caption files for generation and evaluation: .txt (one caption a line), .csv or .jsonl."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def read_prompts(path: str | Path) -> list[tuple[str, str]]:
    """(name, caption) pairs from a .txt (one caption a line), .csv (column text/caption [, name]) or .jsonl file.

    Blank lines of a .txt are skipped (and counted in the log); a CSV/JSONL record without a caption is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} not found")
    suffix = path.suffix.lower()
    records: list[dict] = []
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            records = list(csv.DictReader(f))
    elif suffix in (".jsonl", ".ndjson"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number}: not valid JSON ({err})") from err
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        texts = [line.strip() for line in lines if line.strip()]
        if len(texts) < len(lines):
            log.info("%s: skipped %d blank lines", path, len(lines) - len(texts))
        return [(f"{i:04d}", t) for i, t in enumerate(texts)]
    prompts = []
    for number, rec in enumerate(records, 1):
        text = rec.get("text", rec.get("caption"))
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{path}: record {number} has no 'text' or 'caption': {rec}")
        name = str(rec.get("name") or rec.get("id") or f"{number - 1:04d}")
        prompts.append((name, text.strip()))
    return prompts
