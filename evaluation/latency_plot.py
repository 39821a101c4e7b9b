"""A latency-vs-throughput chart (the paper's Fig. 2) drawn with Pillow: one line per model family, one point per
batch size (labelled), both axes logarithmic.

    write_latency_plot({"MAGNeT": [(1, 0.2, 50.0), (4, 0.4, 100.0)], "AR": [...]}, "bench.png", title="...")

Each point is (batch size, latency in seconds, throughput in seconds of audio per second).
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

Point = tuple[int, float, float]
WIDTH, HEIGHT, MARGIN = 900, 620, 90
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]


def _log_range(values: list[float]) -> tuple[float, float]:
    low, high = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    return low, max(high, low + 1)


def _ticks(low: float, high: float) -> list[float]:
    return [10.0 ** e for e in range(int(low), int(high) + 1)]


def write_latency_plot(series: dict[str, list[Point]], path: str | Path, title: str = "") -> Path:
    """Draw `series` (family name -> points) to a PNG at `path`; returns the path."""
    points = [p for pts in series.values() for p in pts]
    if not points or any(latency <= 0 or rate <= 0 for _, latency, rate in points):
        raise ValueError("every point needs a positive latency and throughput")
    x_range, y_range = _log_range([p[1] for p in points]), _log_range([p[2] for p in points])

    def xy(latency: float, rate: float) -> tuple[float, float]:
        fx = (math.log10(latency) - x_range[0]) / (x_range[1] - x_range[0])
        fy = (math.log10(rate) - y_range[0]) / (y_range[1] - y_range[0])
        return MARGIN + fx * (WIDTH - 2 * MARGIN), HEIGHT - MARGIN - fy * (HEIGHT - 2 * MARGIN)

    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = MARGIN, MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN
    draw.rectangle((left, top, right, bottom), outline="black")
    for tick in _ticks(*x_range):
        x, _ = xy(tick, 10.0 ** y_range[0])
        draw.line((x, top, x, bottom), fill=(225, 225, 225))
        draw.text((x - 12, bottom + 8), f"{tick:g}", fill="black")
    for tick in _ticks(*y_range):
        _, y = xy(10.0 ** x_range[0], tick)
        draw.line((left, y, right, y), fill=(225, 225, 225))
        draw.text((left - 50, y - 6), f"{tick:g}", fill="black")
    draw.text((WIDTH // 2 - 60, bottom + 35), "latency (s, log)", fill="black")
    draw.text((10, top - 30), "throughput (s of audio / s, log)", fill="black")
    draw.text((left, 15), title, fill="black")
    for index, (name, pts) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        coords = [xy(latency, rate) for _, latency, rate in sorted(pts)]
        if len(coords) > 1:
            draw.line(coords, fill=colour, width=3)
        for (batch, _, _), (x, y) in zip(sorted(pts), coords):
            draw.ellipse((x - 5, y - 5, x + 5, y + 5), fill=colour)
            draw.text((x + 7, y - 14), f"b{batch}", fill=colour)
        draw.rectangle((right - 150, top + 12 + 22 * index, right - 136, top + 26 + 22 * index), fill=colour)
        draw.text((right - 130, top + 12 + 22 * index), name, fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
