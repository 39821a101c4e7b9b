"""The run folder's own record of every logged value, whatever loggers the config names: ``RUN_DIR/metrics.jsonl``,
one line per logging call, ``{"step": S, "metrics": {"train/loss": 7.49..., ...}}``, floats written exactly (JSON
keeps a float's shortest round-trip form). A resumed run appends to it; a step logged again (a run resumed from a
checkpoint older than its last logged step) is read back with its newest values. ``--reproduce`` compares two trails
step by step (`read_trail`, `first_difference`).

The trail is one more Lightning logger, added after the config's own ones (the training CLI does it), so the
first logger still decides ``trainer.log_dir``. It writes on global rank 0 only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

TRAIL_FILE = "metrics.jsonl"


class MetricsTrail(Logger):
    """Appends every `log_metrics` call to ``run_dir / metrics.jsonl`` (rank 0); numbers only (no media)."""

    takes_media = False  # callbacks/media.py: audio and figures go to the other loggers

    def __init__(self, run_dir: str | Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)

    @property
    def name(self) -> str:
        return "metrics_trail"

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self.run_dir)


    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Nothing: the run record (`run_record.json`) holds the resolved config."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        values = {key: _plain(value) for key, value in sorted(metrics.items())}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / TRAIL_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "metrics": values}) + "\n")


def _plain(value: Any) -> float | str:
    number = float(value.item() if hasattr(value, "item") else value)
    return number if math.isfinite(number) else repr(number)  # JSON has no NaN / inf: kept as "nan", "inf"


def read_trail(path: str | Path) -> dict[int, dict[str, float | str]]:
    """{step: {key: value}} of a trail file; a value logged twice at one step keeps its newest value."""
    steps: dict[int, dict[str, float | str]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            steps.setdefault(int(entry["step"] or 0), {}).update(entry["metrics"])
    return steps


def first_difference(original: dict[int, dict], again: dict[int, dict]) -> str | None:
    """One line naming the first step (and value) where two trails differ, or None when they are equal."""
    for step in sorted(set(original) | set(again)):
        if step not in again:
            return f"first difference at step {step}: logged by the original run only"
        if step not in original:
            return f"first difference at step {step}: logged by the reproduction only"
        keys = sorted(set(original[step]) | set(again[step]))
        differing = [k for k in keys if original[step].get(k) != again[step].get(k)]
        if differing:
            key = differing[0]
            more = f" (and {len(differing) - 1} more values at that step)" if len(differing) > 1 else ""
            return (f"first difference at step {step}: {key} {_shown(original[step].get(key))} (original) vs "
                    f"{_shown(again[step].get(key))} (reproduction){more}")
    return None


def _shown(value: Any) -> str:
    return "not logged" if value is None else repr(value)
