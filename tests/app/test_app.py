"""The interactive app (`magnet-app`) end to end: the server started on a free 127.0.0.1 port with the tiny MAGNeT
checkpoint and a tiny autoregressive one (random weights, CPU), driven through `gradio_client` (generate, A/B,
continuation, infill, pairing, refused inputs, an isolated failure), the engine's batching on its own, the command
line's argument checks. The page in a browser: tests/app/test_app_browser.py."""

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from support.app_server import LIMITS
from support.paths import ROOT
from support.tiny_generator import DURATION, STEPS

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gradio_client = pytest.importorskip("gradio_client", reason="the app's tests need gradio_client (pip install .[dev])")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from magnet_lightning.app import requests, ui  # noqa: E402
from magnet_lightning.app.engine import HYBRID, RESCORE, Engine, Request  # noqa: E402
from magnet_lightning.app.outputs import prune  # noqa: E402
from magnet_lightning.app.settings import Limits  # noqa: E402
from magnet_lightning.cli.app import free_port  # noqa: E402
from magnet_lightning.cli.app import main as app_main  # noqa: E402


@pytest.fixture(scope="module")
def client(server):
    return Client(server.url, verbose=False)


@pytest.fixture(scope="module")
def names(server, assets, ar_ckpt, hybrid_ckpt):
    return {"magnet": str(assets[0]), "ar": str(ar_ckpt), "hybrid": str(hybrid_ckpt)}


def controls(server, ckpt, **changes):
    """The decoding inputs as the page sends them for `ckpt`: its own defaults (the other family's hidden controls
    keep their values), with `changes`."""
    model = server.engine.models.get(ckpt) or next(iter(server.engine.models.values()))
    own = {c.name: c.default for c in model.traits.controls}
    union = ui._union(server.engine)
    return [changes.get(name, own.get(name, union[name].default)) for name in ui.input_names(server.engine)]


def generate(client, server, ckpt, text, seed=None, seconds=DURATION, pairing=("none", RESCORE, 0.8, 0.2),
             **changes):
    out = client.predict(ckpt, text, seconds, -1 if seed is None else seed, *pairing,
                         *controls(server, ckpt, **changes), api_name="/generate")
    count = server.engine.limits.max_captions
    return out[:count], out[count], out[count + 1], out[count + 2]  # players, spectrogram, downloads, details


def tokens_of(downloads):
    return [torch.from_numpy(np.load(path).astype(np.int64)) for path in downloads if path.endswith(".npy")]


def test_generate_captions_gives_players_spectrogram_downloads_and_the_generators_tokens(client, server, names):
    players, picture, downloads, info = generate(client, server, names["magnet"], "calm piano\n\nfast drums", seed=3)
    assert players[2] is None and all(Path(p).is_file() for p in players[:2])
    wav, rate = soundfile.read(players[0])
    assert rate == 16000 and len(wav) == round(DURATION * 50) * 320
    assert Path(picture).is_file() and len(downloads) == 4
    assert info["seed"] == 3 and info["frames"] == 25 and info["batch_rows"] == 2 and info["latency_s"] > 0
    assert info["decoding"]["decoding_steps"] == STEPS and info["changed_options"] == {}  # the checkpoint's own
    generator = server.engine.models[names["magnet"]].generator
    expected = generator.generate(["calm piano", "fast drums"], seed=3, decode_audio=False).tokens
    assert torch.equal(torch.stack(tokens_of(downloads)), expected)


def test_controls_are_the_families_options_with_the_checkpoints_defaults(server, names):
    magnet, ar = (server.engine.models[names[k]].traits for k in ("magnet", "ar"))
    assert magnet.control("decoding_steps").default == " ".join(map(str, STEPS))
    assert ar.control("top_k").default == 20  # recorded in the autoregressive checkpoint
    assert "cfg_coef" not in {c.name for c in magnet.controls} and "max_cfg_coef" in {c.name for c in magnet.controls}
    assert "decoding_steps" not in {c.name for c in ar.controls}
    assert magnet.takes_infill and magnet.takes_partner and not ar.takes_infill and ar.autoregressive
    assert server.engine.models[names["magnet"]].partners == (names["ar"],)
    hybrid = server.engine.models[names["hybrid"]]
    assert hybrid.traits.control("prompt_seconds").default == 0.1 and hybrid.partners == ()  # recorded; own prompt
    assert not hybrid.traits.takes_infill and not hybrid.traits.takes_partner


def test_a_family_generating_its_own_prompt(client, server, names):
    *_, downloads, info = generate(client, server, names["hybrid"], "waves", seed=2, prompt_seconds=0.2)
    assert info["changed_options"] == {"prompt_seconds": 0.2} and info["decoding"]["prompt_seconds"] == 0.2
    generator = server.engine.models[names["hybrid"]].generator
    expected = generator.generate(["waves"], seed=2, prompt_seconds=0.2, decode_audio=False).tokens
    assert torch.equal(tokens_of(downloads)[0], expected[0])


def test_long_form_past_the_segment(client, server, names):
    *_, downloads, info = generate(client, server, names["magnet"], "long rain", seed=6, seconds=1.0)  # 2 segments
    generator = server.engine.models[names["magnet"]].generator
    expected = generator.generate(["long rain"], duration=1.0, seed=6, decode_audio=False).tokens
    assert info["frames"] == 50 and torch.equal(tokens_of(downloads)[0], expected[0])


def test_changed_controls_reach_the_generator(client, server, names):
    greedy = [generate(client, server, names["magnet"], "rain", seed=s, use_sampling=False) for s in (1, 2)]
    assert greedy[0][3]["changed_options"] == {"use_sampling": False}
    assert torch.equal(tokens_of(greedy[0][2])[0], tokens_of(greedy[1][2])[0])  # greedy: the seed does not matter
    *_, info = generate(client, server, names["ar"], "rain", seed=1, top_k=5, cfg_coef=1.5)
    assert info["family"] == server.engine.models[names["ar"]].family
    assert info["decoding"]["top_k"] == 5 and info["decoding"]["cfg_coef"] == 1.5


def compare(client, server, ckpt_a, ckpt_b, text, seed, changes_a=None, changes_b=None):
    out = client.predict(ckpt_a, text, DURATION, seed, "none", RESCORE, 0.8, 0.2,
                         *controls(server, ckpt_a, **(changes_a or {})), ckpt_b,
                         *controls(server, ckpt_b, **(changes_b or {})), api_name="/compare")
    return out[:4], out[4:]


def test_ab_same_caption_and_seed_side_by_side(client, server, names):
    a, b = compare(client, server, names["magnet"], names["magnet"], "lofi", 7)
    assert a[3]["seed"] == b[3]["seed"] == 7 and a[3]["latency_s"] > 0 and b[3]["latency_s"] > 0
    assert torch.equal(tokens_of(a[2])[0], tokens_of(b[2])[0])  # identical settings: identical clips
    *_, alone, _ = generate(client, server, names["magnet"], "lofi", seed=7)
    assert torch.equal(tokens_of(alone)[0], tokens_of(a[2])[0])  # and the Generate tab's for that seed
    a, b = compare(client, server, names["magnet"], names["ar"], "lofi", -1, changes_b={"top_k": 3})
    families = tuple(server.engine.models[names[k]].family for k in ("magnet", "ar"))
    assert a[3]["seed"] == b[3]["seed"] and (a[3]["family"], b[3]["family"]) == families
    assert b[3]["decoding"]["top_k"] == 3 and Path(b[0]).is_file() and Path(b[1]).is_file()


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    t = torch.arange(8000) / 16000  # 0.5 s
    clip = 0.5 * torch.sin(2 * torch.pi * 220 * t * (1 + t)) + 0.1 * torch.randn(8000)
    path = tmp_path_factory.mktemp("clips") / "clip.wav"
    soundfile.write(str(path), clip.numpy(), 16000)
    return path


def edit(client, server, ckpt, clip, mode, seconds=DURATION, start=0.0, end=0.1, seed=0, text="birds"):
    return client.predict(ckpt, text, handle_file(str(clip)), mode, seconds, start, end, seed,
                          *controls(server, ckpt), api_name="/edit")


def test_continuation_and_infill_of_an_uploaded_clip(client, server, names, clip_file):
    generator = server.engine.models[names["magnet"]].generator
    wav, rate = soundfile.read(str(clip_file), dtype="float32")
    original = generator.codec.encode(torch.from_numpy(wav)[None, None], rate).cpu()  # [1, K, 25]
    short = clip_file.parent / "short.wav"
    soundfile.write(str(short), wav[:4800], rate)  # 0.3 s: 15 frames
    _, _, downloads, info = edit(client, server, names["magnet"], short, "continue")
    tokens = tokens_of(downloads)[0]
    prompt = generator.codec.encode(torch.from_numpy(wav[:4800])[None, None], rate)[0].cpu()  # [K, 15]
    assert tokens.shape == (4, 25) and info["frames"] == 25 and torch.equal(tokens[:, :15], prompt)
    _, _, downloads, info = edit(client, server, names["magnet"], clip_file, "infill", start=0.1, end=0.3)
    tokens = tokens_of(downloads)[0]
    assert info["infill"] == [0.1, 0.3] and tokens.shape == (4, 25)
    assert torch.equal(tokens[:, :5], original[0, :, :5]) and torch.equal(tokens[:, 15:], original[0, :, 15:])
    assert not torch.equal(tokens[:, 5:15], original[0, :, 5:15])
    _, _, downloads, _ = edit(client, server, names["ar"], short, "continue")  # the autoregressive family continues
    assert torch.equal(tokens_of(downloads)[0][:, :15], prompt)


def test_rescorer_and_two_model_hybrid(client, server, names):
    ar = server.engine.models[names["ar"]].generator
    *_, downloads, info = generate(client, server, names["magnet"], "jazz", seed=4,
                                   pairing=(names["ar"], HYBRID, 0.8, 0.2))
    assert info["pairing"] == HYBRID and info["partner"] == names["ar"]
    alone = ar.generate(["jazz"], duration=0.2, seed=4, decode_audio=False).tokens[0]  # 10 frames
    assert torch.equal(tokens_of(downloads)[0][:, :10], alone)
    *_, info = generate(client, server, names["magnet"], "jazz", seed=4, pairing=(names["ar"], RESCORE, 0.5, 0.2))
    assert info["pairing"] == RESCORE and info["decoding"]["rescore_weight"] == 0.5


BAD_REQUESTS = [
    (dict(text="a\nb\nc\nd"), "4 captions: at most 3"),
    (dict(text="x" * 41), "at most 40"),
    (dict(seconds=1.2), "greater than maximum value 1"),  # the page's slider refuses it first
    (dict(decoding_steps="3 2"), "one decoding_steps entry per codebook|entries"),
    (dict(temperature="hot"), "temperature: 'hot' is not a valid value"),
    (dict(top_k=5), "top_k=5 and top_p=0.9 are both set"),
    (dict(pairing=("AR", RESCORE, 1.0, 0.2)), "greater than maximum value 0.99"),  # the page's slider
    (dict(pairing=("AR", HYBRID, 0.8, 0.5)), "hybrid prompt 0.5 s"),
    (dict(ckpt="AR", pairing=("AR", RESCORE, 0.5, 0.2)), "cannot be paired with"),
    (dict(ckpt="nope.ckpt"), "not in the list of choices"),  # the page's dropdown
]


@pytest.mark.parametrize("change,message", BAD_REQUESTS)
def test_refused_requests_are_one_line_messages(client, server, names, change, message):
    change = dict(change)
    ckpt = {"AR": names["ar"]}.get(change.get("ckpt"), change.get("ckpt", names["magnet"]))
    change.pop("ckpt", None)
    if "pairing" in change:
        swap = {"AR": names["ar"], "MAGNET": names["magnet"]}
        change["pairing"] = (swap[change["pairing"][0]], *change["pairing"][1:])
    with pytest.raises(AppError, match=message) as error:
        generate(client, server, ckpt, change.pop("text", "ok"), seed=1, seconds=change.pop("seconds", DURATION),
                 **({"pairing": change.pop("pairing")} if "pairing" in change else {}), **change)
    assert "Traceback" not in str(error.value) and "\n" not in str(error.value)
    assert "internal error" not in str(error.value)


def test_bad_clips_are_messages(client, server, names, clip_file, tmp_path):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio at all")
    long_clip, short_clip = tmp_path / "long.wav", tmp_path / "short.wav"
    soundfile.write(str(long_clip), np.zeros(24000, dtype=np.float32), 16000)
    soundfile.write(str(short_clip), 0.1 * np.random.default_rng(0).standard_normal(4800).astype(np.float32), 16000)
    cases = [(names["magnet"], not_audio, "continue", {}, "not a readable audio file"),
             (names["magnet"], long_clip, "infill", {}, "at most 1 s"),
             (names["magnet"], clip_file, "continue", {}, "not shorter than the 0.5 s to generate .*: trim the clip "
              "to under 0.5 s"),  # as long as the segment: no longer duration helps (long-form needs less)
             (names["magnet"], short_clip, "continue", {"seconds": 0.2}, "longer than the 0.2 s to generate .*: "
              "continuing it needs a longer duration"),
             (names["magnet"], clip_file, "infill", {"start": 0.6, "end": 0.7}, "start inside the 0.50 s clip"),
             (names["ar"], clip_file, "infill", {}, "cannot infill")]
    for ckpt, clip, mode, extra, message in cases:
        with pytest.raises(AppError, match=message) as error:
            edit(client, server, ckpt, clip, mode, **extra)
        assert "internal error" not in str(error.value)  # refused as the user's mistake, not caught as a bug


def test_a_failing_generation_fails_only_its_request(client, server, names, monkeypatch):
    generator = server.engine.models[names["magnet"]].generator

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(generator, "generate", broken)
    with pytest.raises(AppError, match="generation failed: CUDA out of memory"):
        generate(client, server, names["magnet"], "x", seed=1)
    monkeypatch.undo()
    assert generate(client, server, names["magnet"], "x", seed=1)[3]["frames"] == 25  # the app carries on


def test_duration_is_checked_per_checkpoint(server, names):
    for seconds in (1.2, 0, float("nan"), "ten"):
        with pytest.raises(requests.InputError, match="between 0 and 1 s|not a number|finite"):
            requests.generation_request(server.engine, names["magnet"], "x", seconds, 1, {})


def test_checks_behind_the_page_controls(server, names):
    """What the page's own ranges already refuse, refused again for any other caller of the engine."""
    magnet = server.engine.models[names["magnet"]]
    with pytest.raises(requests.InputError, match="partner needs rescore weight W with 0 <= W < 1 .*, got 1$"):
        requests.generation_request(server.engine, magnet.name, "x", DURATION, 1, {}, names["ar"], RESCORE, 1.0)
    with pytest.raises(requests.InputError, match="'nope' is not loaded"):
        requests.loaded(server.engine, "nope")


def test_old_request_files_are_pruned(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for folder in (old, new):
        folder.mkdir()
        (folder / "clip.wav").write_bytes(b"x")
    os.utime(old, (0, 0))
    prune(tmp_path)
    assert not old.exists() and (new / "clip.wav").exists()


def test_queue_is_bounded(server, names, monkeypatch):
    assert server.demo._queue.max_size == LIMITS.max_queue
    generator = server.engine.models[names["magnet"]].generator
    slow, original = threading.Event(), generator.generate

    def held(*args, **kwargs):
        slow.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(generator, "generate", held)
    small = ui.launch(Engine(server.engine.models, Limits(max_queue=1, max_batch=1, max_captions=1)),
                      port=free_port("127.0.0.1"))
    try:
        client = Client(small.url, verbose=False)
        jobs = [client.submit(names["magnet"], f"c{i}", DURATION, i, "none", RESCORE, 0.8, 0.2,
                              *controls(server, names["magnet"]), api_name="/generate") for i in range(4)]
        deadline = time.monotonic() + 120  # every request answered by the server (queued, running or refused)
        while time.monotonic() < deadline and any(job.status().code.name in ("STARTING", "JOINING_QUEUE")
                                                  for job in jobs):
            time.sleep(0.2)
        slow.set()
        outcomes = []
        for job in jobs:
            try:
                outcomes.append(job.result(timeout=60)[-1]["frames"])
            except Exception as err:  # the queue's refusal
                outcomes.append(str(err))
        # one running, one waiting in the queue of size 1, the others refused with a message (not lost, not hung)
        assert outcomes.count(25) == 2 and all("queue is full" in str(o).lower() for o in outcomes if o != 25)
    finally:
        slow.set()
        small.close()


def test_engine_batches_waiting_requests_of_identical_settings(server, names):
    engine = Engine(server.engine.models, Limits(max_batch=4, batch_window=0.5))
    try:
        same = Request(names["magnet"], ("a",), DURATION)
        jobs = [engine.submit(same), engine.submit(Request(names["magnet"], ("b", "c"), DURATION)),
                engine.submit(Request(names["magnet"], ("d",), DURATION, seed=5)),  # a seed: alone
                engine.submit(Request(names["magnet"], ("e",), DURATION, options=(("temperature", 2.0),))),
                engine.submit(same), engine.submit(same)]  # over max_batch with the first three rows
        for job in jobs:
            assert job.finished.wait(60) and job.error is None
        rows = [job.result.batch_rows for job in jobs]
        assert rows == [4, 4, 1, 1, 4, 1] and engine.generations == 4
        assert jobs[1].result.tokens.shape == (2, 4, 25) and jobs[0].result.seed == jobs[4].result.seed
    finally:
        engine.close()


def test_progress_counts_the_model_steps(server, names):
    calls = []
    generator = server.engine.models[names["magnet"]].generator
    server.engine.run(Request(names["magnet"], ("a",), DURATION, seed=1),
                      lambda done, total: calls.append((done, total)))
    assert calls[-1] == (sum(STEPS), sum(STEPS)) == (generator.num_steps(generator.decoding_config()),) * 2
    calls.clear()
    server.engine.run(Request(names["magnet"], ("a",), DURATION, seed=1, partner=names["ar"], partner_mode=HYBRID,
                              prompt_seconds=0.2), lambda done, total: calls.append((done, total)))
    ar = server.engine.models[names["ar"]].generator
    assert calls[-1][1] == sum(STEPS) + ar.num_steps(ar.decoding_config(), 0.2) and calls[-1][0] == calls[-1][1]


def test_concurrent_clients_are_all_answered(server, names):
    results, errors = [], []

    def one_client(index: int) -> None:
        try:
            client = Client(server.url, verbose=False)
            results.append(generate(client, server, names["magnet"], f"caption {index}")[3])
        except Exception as err:  # collected, asserted below
            errors.append(err)

    threads = [threading.Thread(target=one_client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and len(results) == 4 and all(r["frames"] == 25 for r in results)


@pytest.mark.parametrize("argv,message", [
    (["--ckpt", "missing.ckpt"], "--ckpt missing.ckpt: checkpoint missing.ckpt not found"),
    (["--ckpt", "CKPT", "--ckpt", "CKPT"], "names the same checkpoint twice"),
    (["--ckpt", "CKPT", "--max-captions", "9"], "--max-captions 9 is more than --max-batch 8"),
    (["--ckpt", "CKPT", "--max-duration", "-1"], "--max-duration must be a positive number"),
    (["--ckpt", "NOT_A_CKPT"], "is not a readable checkpoint"),
    (["--ckpt", "CKPT", "--port", "BUSY"], "cannot be used"),
    (["--ckpt", "CKPT", "--port", "70000"], "between 1 and 65535"),
])
def test_command_line_mistakes_are_one_line_before_loading(assets, tmp_path, capsys, no_loading,
                                                           argv, message):
    not_ckpt = tmp_path / "notes.ckpt"
    not_ckpt.write_text("hello")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        swap = {"CKPT": str(assets[0]), "NOT_A_CKPT": str(not_ckpt), "BUSY": str(busy.getsockname()[1])}
        with pytest.raises(SystemExit) as exit_info:
            app_main([swap.get(a, a) for a in argv])
    assert exit_info.value.code == 2 and message in str(exit_info.value)
    assert capsys.readouterr().err.count("\n") == 1


def test_python_m_app_is_the_command_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "magnet_lightning.app", "--ckpt", str(tmp_path / "none.ckpt")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 2 and run.stderr.startswith("error: --ckpt") and run.stderr.count("\n") == 1
