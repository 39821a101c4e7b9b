"""The page (gradio Blocks) and the server.

Left: the settings every tab uses (checkpoint, duration, seed, the decoding controls of the checkpoint's family
with the checkpoint's own defaults, and, where an autoregressive checkpoint is loaded beside a masked one, the
pairing: rescorer or two-model hybrid). Right, three tabs: Generate (captions -> a player, a spectrogram and
downloads per clip), Continue / infill (an uploaded or recorded clip); both take a melody clip for a
melody-conditioned checkpoint (app/melody.py). A/B (one caption and seed, the settings on the
left against a second checkpoint and its own controls, side by side with each latency; a melody upload while either
checkpoint takes one).

The API (gradio_client) has the three endpoints /generate, /edit and /compare (app/api.py): named inputs in the
page's order (`input_names` for the decoding options), each left out following the chosen checkpoint's own rule.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from magnet_lightning.app import melody
from magnet_lightning.app.api import wire_api
from magnet_lightning.app.engine import HYBRID, RESCORE, Engine, Loaded
from magnet_lightning.app.handlers import Handlers, page_errors
from magnet_lightning.app.outputs import KEEP_SECONDS
from magnet_lightning.app.requests import CONTINUE, DEFAULT_RESCORE_WEIGHT, INFILL, NO_PARTNER, prompt_default
from magnet_lightning.app.traits import Control

log = logging.getLogger(__name__)


def _control(control: Control, value, visible: bool, elem_id: str | None = None):
    """The component of one decoding option (also used as its update when the checkpoint changes)."""
    common = dict(label=control.label, visible=visible, elem_id=elem_id, info=control.help or None)
    if control.kind == "bool":
        return gr.Checkbox(value=value, **common)
    if control.kind == "int":
        return gr.Number(value=value, precision=0, **common)
    if control.kind == "float":
        return gr.Number(value=value, **common)
    if control.kind == "choice":
        return gr.Dropdown(choices=list(control.choices), value=value, **common)
    return gr.Textbox(value=value, **common)


def _union(engine: Engine) -> dict[str, Control]:
    """Every decoding option of the loaded checkpoints' families (first declaration of a name wins)."""
    union: dict[str, Control] = {}
    for model in engine.models.values():
        for control in model.traits.controls:
            union.setdefault(control.name, control)
    return union


def _control_updates(model: Loaded, union: dict[str, Control]) -> list:
    """Show the options `model` takes, at its defaults; hide the others."""
    own = {c.name: c for c in model.traits.controls}
    return [_control(own.get(name, control), own[name].default if name in own else control.default, name in own)
            for name, control in union.items()]


def _controls(engine: Engine, model: Loaded, prefix: str) -> list:
    union = _union(engine)
    own = {c.name: c for c in model.traits.controls}
    return [_control(control, own[name].default if name in own else control.default, name in own,
                     elem_id=f"{prefix}-{name.replace('_', '-')}") for name, control in union.items()]


def _short(engine: Engine, model: Loaded) -> str:
    """The checkpoint's file or folder name when no other loaded checkpoint shares it, else its full name."""
    short = Path(model.name).name or model.name
    return short if sum(Path(m.name).name == short for m in engine.models.values()) == 1 else model.name


def _choices(engine: Engine) -> list[tuple[str, str]]:
    return [(f"{_short(engine, m)} ({m.traits.label})", m.name) for m in engine.models.values()]


def _settings(engine: Engine, first: Loaded) -> dict:
    """The settings column: checkpoint, duration, seed, pairing, decoding controls."""
    s = {"ckpt": gr.Dropdown(choices=_choices(engine), value=first.name,
                             label="Checkpoint", elem_id="ckpt")}
    longest = max(m.max_duration for m in engine.models.values())  # the API's bound; the page shows the model's
    s["duration"] = gr.Slider(0.1, longest, value=first.generator.segment_duration, step=0.1,
                              label="Duration (s)", elem_id="duration")
    s["seed"] = gr.Number(value=-1, precision=0, label="Seed (-1: random)", elem_id="seed")
    with gr.Group(visible=bool(first.partners)) as s["pairing_group"]:
        s["partner"] = gr.Dropdown(choices=[NO_PARTNER, *first.partners], value=NO_PARTNER,
                                   label="Autoregressive partner", elem_id="partner")
        s["mode"] = gr.Radio([RESCORE, HYBRID], value=RESCORE, label="Pairing", elem_id="pairing")
        s["weight"] = gr.Slider(0.0, 0.99, value=DEFAULT_RESCORE_WEIGHT, step=0.01,
                                label="Rescore weight (own probability; 1 - w to the partner)")
        s["prompt_seconds"] = gr.Number(value=prompt_default(first), label="Hybrid: seconds from the partner")
    with gr.Accordion("Decoding options (the checkpoint's defaults)", open=True):
        s["controls"] = _controls(engine, first, "dec")
    s["melodies"] = []  # the tabs' melody uploads (app/melody.py)
    return s


def _outputs(count: int, prefix: str) -> dict:
    native = gr.WaveformOptions(show_recording_waveform=False)  # the browser's own <audio> player
    players = [gr.Audio(type="filepath", label=f"Clip {i + 1}", visible=i == 0, elem_id=f"{prefix}-audio-{i}",
                        interactive=False, waveform_options=native) for i in range(count)]
    return {"players": players,
            "spectrogram": gr.Image(type="numpy", label="Spectrogram", show_label=False, interactive=False),
            "files": gr.File(file_count="multiple", label="Downloads (WAV and tokens .npy)", interactive=False),
            "details": gr.JSON(label="Details (seed, latency, options)")}


def _wire_settings(engine: Engine, s: dict) -> None:
    union = _union(engine)

    def changed(name: str):
        model = engine.models.get(name) or next(iter(engine.models.values()))
        partners = [NO_PARTNER, *model.partners]
        return [gr.Slider(0.1, model.max_duration, value=model.generator.segment_duration, step=0.1),
                gr.Group(visible=bool(model.partners)), gr.Dropdown(choices=partners, value=NO_PARTNER),
                gr.Number(value=prompt_default(model)), *_control_updates(model, union)]

    s["ckpt"].change(changed, s["ckpt"], [s["duration"], s["pairing_group"], s["partner"], s["prompt_seconds"],
                                          *s["controls"]], queue=False, api_visibility="private")


def _generate_tab(engine: Engine, handlers: Handlers, s: dict) -> list:
    limits = engine.limits
    text = gr.Textbox(lines=3, label=f"Caption(s): one a line, at most {limits.max_captions} (empty: unconditional)",
                      placeholder="lo-fi piano with soft drums", elem_id="captions")
    s["melodies"].append(tune := melody.upload(engine.models[s["ckpt"].value], "melody"))
    button = gr.Button("Generate", variant="primary", elem_id="generate")
    out = _outputs(limits.max_captions, "gen")

    def players(value: str):
        count = max(1, len([line for line in (value or "").splitlines() if line.strip()]))
        return [gr.Audio(visible=i < count) for i in range(limits.max_captions)]

    text.change(players, text, out["players"], queue=False, api_visibility="private")
    inputs = [s["ckpt"], text, s["duration"], s["seed"], s["partner"], s["mode"], s["weight"], s["prompt_seconds"],
              *s["controls"], tune]
    outputs = [*out["players"], out["spectrogram"], out["files"], out["details"]]
    button.click(page_errors(handlers.generate), inputs, outputs, api_name="page_generate",
                 api_visibility="private", concurrency_id="model",
                 concurrency_limit=limits.max_batch)
    return outputs


def _edit_tab(engine: Engine, handlers: Handlers, s: dict) -> list:
    clip = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Clip to continue or edit",
                    elem_id="clip")
    text = gr.Textbox(label="Caption", placeholder="add a bass line", elem_id="edit-caption")
    mode = gr.Radio([CONTINUE, INFILL], value=CONTINUE, label="Mode",
                    info="continue: keep the clip, generate up to the duration; infill: regenerate [start, end)")
    with gr.Row():
        start = gr.Number(value=0.0, label="Infill start (s)")
        end = gr.Number(value=1.0, label="Infill end (s)")
    s["melodies"].append(tune := melody.upload(engine.models[s["ckpt"].value], "edit-melody"))
    button = gr.Button("Continue / infill", variant="primary", elem_id="edit")
    out = _outputs(1, "edit")
    inputs = [s["ckpt"], text, clip, mode, s["duration"], start, end, s["seed"], *s["controls"], tune]
    outputs = [out["players"][0], out["spectrogram"], out["files"], out["details"]]
    button.click(page_errors(handlers.edit), inputs, outputs, api_name="page_edit",
                 api_visibility="private", concurrency_id="model",
                 concurrency_limit=engine.limits.max_batch)
    return outputs


def _compare_tab(engine: Engine, handlers: Handlers, s: dict, first: Loaded) -> list:
    text = gr.Textbox(label="Caption (A and B share it and the seed)", elem_id="ab-caption")
    gr.Markdown("**A**: the settings on the left. **B**: the checkpoint and options below.")
    ckpt_b = gr.Dropdown(choices=_choices(engine), value=first.name,
                         label="B: checkpoint", elem_id="ckpt-b")
    with gr.Accordion("B: decoding options", open=True):
        controls_b = _controls(engine, first, "dec-b")
    union = _union(engine)
    ckpt_b.change(lambda name: _control_updates(engine.models[name], union), ckpt_b, controls_b, queue=False,
                  api_visibility="private")
    tune = melody.upload_pair(engine, s["ckpt"], ckpt_b)
    button = gr.Button("Compare A and B", variant="primary", elem_id="compare")
    with gr.Row():
        with gr.Column():
            out_a = _outputs(1, "a")
        with gr.Column():
            out_b = _outputs(1, "b")
    inputs = [s["ckpt"], text, s["duration"], s["seed"], s["partner"], s["mode"], s["weight"], s["prompt_seconds"],
              *s["controls"], ckpt_b, *controls_b, tune]
    outputs = [o for out in (out_a, out_b) for o in (out["players"][0], out["spectrogram"], out["files"],
                                                        out["details"])]
    button.click(page_errors(handlers.compare), inputs, outputs, api_name="page_compare",
                 api_visibility="private", concurrency_id="model",
                 concurrency_limit=engine.limits.max_batch)
    return outputs


def _header(engine: Engine) -> str:
    limits = engine.limits
    models = ", ".join(f"`{_short(engine, m)}` ({m.traits.label}, up to {m.max_duration:g} s)"
                       for m in engine.models.values())
    return (f"## magnet_lightning\nLoaded: {models}. Limits: {limits.max_captions} captions a request of at most "
            f"{limits.max_text_chars} characters; requests of identical settings and no seed are batched "
            f"(up to {limits.max_batch} rows).")


def build(engine: Engine, out_root: Path) -> gr.Blocks:
    """The page of `engine`'s checkpoints; generated files go under `out_root`."""
    first = next(iter(engine.models.values()))
    names = list(_union(engine))
    handlers = Handlers(engine, out_root, names)
    age = int(KEEP_SECONDS)
    with gr.Blocks(title="magnet_lightning", delete_cache=(age, age)) as demo:  # gradio's copies of the files too
        gr.Markdown(_header(engine))
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                settings = _settings(engine, first)
            with gr.Column(scale=2):
                with gr.Tab("Generate"):
                    outputs = {"generate": _generate_tab(engine, handlers, settings)}
                with gr.Tab("Continue / infill"):
                    outputs["edit"] = _edit_tab(engine, handlers, settings)
                with gr.Tab("A/B"):
                    outputs["compare"] = _compare_tab(engine, handlers, settings, first)
        _wire_settings(engine, settings)
        melody.wire(engine, settings["ckpt"], settings["melodies"])
        wire_api(engine, handlers, _union(engine), outputs)
    return demo


def input_names(engine: Engine) -> list[str]:
    """The decoding options among each endpoint's inputs, in order (for API clients)."""
    return list(_union(engine))


@dataclass
class Server:
    """A running app; `close()` stops the server and the engine."""

    demo: gr.Blocks
    url: str
    share_url: str | None
    engine: Engine
    folder: tempfile.TemporaryDirectory

    def close(self) -> None:
        self.demo.close()
        self.engine.close()
        self.folder.cleanup()


def launch(engine: Engine, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           block: bool = False) -> Server:
    """Start the server (a bounded queue; no public link unless `share`). block=True serves until interrupted."""
    folder = tempfile.TemporaryDirectory(prefix="magnet-app-")
    demo = build(engine, Path(folder.name))
    demo.queue(max_size=engine.limits.max_queue, default_concurrency_limit=engine.limits.max_batch)
    _, url, share_url = demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=True,
                                    quiet=True, show_error=False, allowed_paths=[folder.name], ssr_mode=False)
    server = Server(demo, url, share_url, engine, folder)
    if block:
        try:
            demo.block_thread()
        finally:
            server.close()
    return server
