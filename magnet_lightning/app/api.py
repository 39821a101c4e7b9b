"""The app's API for `gradio_client`: the endpoints /generate, /edit and /compare, beside the page's own (private)
events. Every input has a name (the parameters of the endpoint's function: `ckpt`, `text`, `duration`, ..., then one
per decoding option, as declared in generation/options.py, then `melody` on every endpoint: a melody clip for a
melody-conditioned checkpoint; on /compare each melody-conditioned side follows it), and every input but the
checkpoint defaults to None, meaning "the chosen checkpoint's own rule": an option a client leaves out is not a
change, whichever checkpoint it chooses (the page's controls show the first checkpoint's values; these inputs are
hidden components that start empty).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import gradio as gr

from magnet_lightning.app.engine import HYBRID, RESCORE, Engine
from magnet_lightning.app.handlers import Handlers, page_errors
from magnet_lightning.app.requests import CONTINUE, INFILL, NO_PARTNER
from magnet_lightning.app.traits import Control

PAIRING = ("partner", "pairing", "rescore_weight", "hybrid_prompt_seconds")


def _hidden(control: Control):
    """An empty, invisible input of one decoding option (None: the checkpoint's own value)."""
    common = dict(value=None, visible=False, label=control.name)
    if control.kind == "bool":
        return gr.Dropdown(choices=[("true", True), ("false", False)], **common)
    if control.kind in ("int", "float"):
        return gr.Number(precision=0 if control.kind == "int" else None, **common)
    if control.kind == "choice":
        return gr.Dropdown(choices=list(control.choices), **common)
    return gr.Textbox(**common)


def _named(fn: Callable, names: list[str]) -> Callable:
    """fn(progress, *values) as a function whose parameters are `names` (each default None) after gradio's progress
    tracker: gradio names an endpoint's inputs after them."""
    def endpoint(progress=gr.Progress(), *values):
        return fn(progress, *values)

    parameters = [inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress())]
    parameters += [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for name in names]
    endpoint.__signature__ = inspect.Signature(parameters)
    endpoint.__name__ = fn.__name__
    return endpoint


def _common(engine: Engine, options: dict[str, Control]) -> dict:
    """The hidden inputs every endpoint shares."""
    first = next(iter(engine.models))
    partners = sorted({p for m in engine.models.values() for p in m.partners})
    return {"ckpt": gr.Dropdown(choices=list(engine.models), value=first, visible=False, label="ckpt"),
            "text": gr.Textbox(value=None, visible=False, label="text"),
            "duration": gr.Number(value=None, minimum=0.1, maximum=max(m.max_duration for m in engine.models.values()),
                                  visible=False, label="duration"),  # the page slider's range
            "seed": gr.Number(value=None, precision=0, visible=False, label="seed"),
            "partner": gr.Dropdown(choices=[NO_PARTNER, *partners], value=None, visible=False, label="partner"),
            "pairing": gr.Dropdown(choices=[RESCORE, HYBRID], value=None, visible=False, label="pairing"),
            "rescore_weight": gr.Number(value=None, minimum=0.0, maximum=0.99, visible=False,
                                        label="rescore_weight"),  # the page slider's range
            "hybrid_prompt_seconds": gr.Number(value=None, visible=False, label="hybrid_prompt_seconds"),
            **{name: _hidden(control) for name, control in options.items()},
            "melody": gr.Audio(type="filepath", value=None, visible=False, label="melody")}


def wire_api(engine: Engine, handlers: Handlers, options: dict[str, Control], outputs: dict[str, list]) -> None:
    """The three public endpoints, on hidden inputs; `outputs`: each endpoint's output components (the page's)."""
    inputs = _common(engine, options)
    names = ["ckpt", "text", "duration", "seed", *PAIRING, *options]  # /compare's A inputs
    clip = gr.Audio(type="filepath", visible=False, label="clip")
    edit = {"clip": clip, "mode": gr.Dropdown(choices=[CONTINUE, INFILL], value=None, visible=False, label="mode"),
            "infill_start": gr.Number(value=None, visible=False), "infill_end": gr.Number(value=None, visible=False)}
    both = {**inputs, **edit, "b_ckpt": gr.Dropdown(choices=list(engine.models), value=None, visible=False),
            **{f"b_{name}": _hidden(control) for name, control in options.items()}}
    edit_names = ["ckpt", "text", "clip", "mode", "duration", "infill_start", "infill_end", "seed", *options,
                  "melody"]
    compare_names = [*names, "b_ckpt", *(f"b_{name}" for name in options), "melody"]
    endpoints = (("generate", [*names, "melody"], handlers.generate), ("edit", edit_names, handlers.edit),
                 ("compare", compare_names, handlers.compare))
    for api_name, endpoint_names, fn in endpoints:
        trigger = gr.Button(visible=False)
        trigger.click(page_errors(_named(fn, endpoint_names)), [both[name] for name in endpoint_names],
                      outputs[api_name], api_name=api_name, concurrency_id="model",
                      concurrency_limit=engine.limits.max_batch)
