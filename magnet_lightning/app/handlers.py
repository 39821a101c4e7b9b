"""The page's event handlers: page values -> a checked request -> the engine -> files and details for the page.

Every handler turns a refused request (`InputError`) or a failed generation into `gr.Error`, a message in the page
(and an error with that message for an API client), never a stack trace; anything unexpected is logged with its
traceback on the server and shown as one line. Progress is reported with `gr.Progress` while the request waits for
and runs in the engine.
"""

from __future__ import annotations

import functools
import logging
import random
from pathlib import Path

import gradio as gr

from magnet_lightning.app import requests
from magnet_lightning.app.engine import Engine, GenerationFailed, Request
from magnet_lightning.app.melody import ab_melodies
from magnet_lightning.app.outputs import details, write_result
from magnet_lightning.errors import one_line

log = logging.getLogger(__name__)

PAIRING_INPUTS = 4
"""partner, pairing mode, rescore weight, hybrid prompt seconds."""


def page_errors(fn):
    """Refused and failed requests become a message in the page (gr.Error); never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except requests.InputError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except GenerationFailed as err:
            raise gr.Error(str(err), print_exception=False) from None
        except gr.Error:
            raise
        except Exception as err:  # a bug: its traceback goes to the server's log, one line to the page
            log.exception("request failed")
            raise gr.Error(f"internal error: {one_line(err)[:300]}", print_exception=False) from None

    return wrapper


class Handlers:
    """The handlers of one page; `control_names` is the order of the decoding controls among the inputs."""

    def __init__(self, engine: Engine, out_root: Path, control_names: list[str]):
        self.engine = engine
        self.out_root = out_root
        self.control_names = control_names

    def _values(self, values) -> dict:
        if len(values) != len(self.control_names):
            raise requests.InputError(f"expected {len(self.control_names)} decoding values, got {len(values)}")
        return dict(zip(self.control_names, values))

    def _run(self, request: Request, progress, label: str = "", tag: str = ""):
        def report(done: int, total: int) -> None:
            progress((done, total), desc=f"{label}generating", unit="steps")

        progress(0, desc=f"{label}waiting in the queue")
        result = self.engine.run(request, report)
        written = write_result(self.out_root, request, result, tag)
        return written, details(request, result, self.engine.models[request.ckpt].family)

    def generate(self, progress=gr.Progress(), ckpt=None, text=None, seconds=None, seed=None, *rest):
        """Captions -> one clip each: players (as many as `max_captions`), spectrogram, downloads, details. `rest`:
        the pairing inputs, the decoding values, the melody clip (last)."""
        pairing, values, melody = rest[:PAIRING_INPUTS], self._values(rest[PAIRING_INPUTS:-1]), rest[-1]
        request = requests.generation_request(self.engine, ckpt, text, seconds, seed, values, *pairing,
                                              melody_path=melody)
        written, info = self._run(request, progress)
        players = written.wavs + [None] * (self.engine.limits.max_captions - len(written.wavs))
        return (*players, written.spectrogram, written.downloads, info)

    def edit(self, progress=gr.Progress(), ckpt=None, text=None, clip=None, mode=None, seconds=None, start=None,
             end=None, seed=None, *rest):
        """A clip continued or infilled: player, spectrogram, downloads, details. `rest`: the decoding values, the
        melody clip (last)."""
        request = requests.edit_request(self.engine, ckpt, text, clip, mode, seconds, start, end, seed,
                                        self._values(rest[:-1]), melody_path=rest[-1])
        written, info = self._run(request, progress)
        return written.wavs[0], written.spectrogram, written.downloads, info

    def compare(self, progress=gr.Progress(), ckpt=None, text=None, seconds=None, seed=None, *rest):
        """A/B: the same caption and seed with settings A (the settings panel, pairing included) and B (its own
        checkpoint and decoding controls), one after the other; each with its latency. `rest` ends with the melody
        clip (`ab_melodies`: each melody-conditioned side follows it)."""
        count = len(self.control_names)
        pairing, values_a = rest[:PAIRING_INPUTS], self._values(rest[PAIRING_INPUTS:PAIRING_INPUTS + count])
        ckpt_b, values_b = rest[PAIRING_INPUTS + count], self._values(rest[PAIRING_INPUTS + count + 1:-1])
        if len(requests.captions(text, self.engine)) > 1:
            raise requests.InputError("A/B compares one caption")
        shared = requests.seed(seed)
        shared = random.randrange(2 ** 31) if shared is None else shared
        tune_a, tune_b = ab_melodies(self.engine, ckpt, ckpt_b, rest[-1])
        request_a = requests.generation_request(self.engine, ckpt, text, seconds, shared, values_a, *pairing,
                                                melody_path=tune_a)
        request_b = requests.generation_request(self.engine, ckpt_b, text, seconds, shared, values_b,
                                                melody_path=tune_b)
        written_a, info_a = self._run(request_a, progress, "A: ", "A")
        written_b, info_b = self._run(request_b, progress, "B: ", "B")
        return (written_a.wavs[0], written_a.spectrogram, written_a.downloads, info_a,
                written_b.wavs[0], written_b.spectrogram, written_b.downloads, info_b)
