"""The evaluation tests' constants and builders: the tiny checkpoint's rate, the command-line arguments that pick
the tiny, random-weight embedders (toy CLAP, small VGGish, short PaSST), benchmark files and a benchmark run."""

import csv
import json

import numpy as np
import soundfile

from magnet_lightning.cli import evaluate
from support.metric_assets import TINY_VGGISH

RATE = 16000
EMBEDDER_ARGS = ["--clap-embedder", "toy_clap", "--allow-random-embedders", "--embedder-kwargs",
                 json.dumps({"vggish": {"cfg": TINY_VGGISH}, "passt": {"tiny": {"max_seconds": 1.0}}})]


def write_csv(path, columns, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def tone(path, seconds, rate, channels=1, freq=330.0):
    t = np.arange(int(seconds * rate)) / rate
    wav = np.stack([0.3 * np.sin(2 * np.pi * freq * (1 + c) * t) for c in range(channels)], 1)
    soundfile.write(path, wav.astype(np.float32), rate)


def bench(ckpt, data, out, *extra):
    args = ["--benchmark", "audiocaps", "--data", str(data), "--ckpt", str(ckpt), "--out", str(out), "--device",
            "cpu", "--batch-size", "2", "--seed", "3", "--bootstrap", "50", "--fad-inf-bootstrap", "5", *EMBEDDER_ARGS,
            *extra]
    return evaluate.main(args)
