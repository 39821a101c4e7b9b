"""The app with a melody-conditioned and a stereo checkpoint, driven through `gradio_client` against a server on
127.0.0.1 (tiny random-weight models, CPU): the melody upload reaches the generator (/generate and /edit give the
generator's own tokens for that melody; /compare gives it to each melody-conditioned side and says which did), the
upload is shown only for melody checkpoints, a bad melody or a melody for a text-only checkpoint (or for two, on
/compare) is one line, and a stereo checkpoint's clips come back as 2-channel audio; in headless Chromium, the uploads
show, hide and clear as the chosen checkpoints change."""

import functools
import os
import shutil
import time

import numpy as np
import pytest
import soundfile
import torch
from support.helpers import TINY_MODEL, tiny_module
from support.melody_files import MELODY_LM, melody_module
from support.tiny_generator import DURATION, STEPS

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
pytest.importorskip("gradio_client", reason="the app's tests need gradio_client (pip install .[dev])")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from magnet_lightning.app import ui  # noqa: E402
from magnet_lightning.app.engine import RESCORE, Engine  # noqa: E402
from magnet_lightning.app.settings import Limits  # noqa: E402
from magnet_lightning.cli.app import build_parser, check_args  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _save(module, path):
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return str(path)


@pytest.fixture(scope="module")
def names(assets):
    """The tiny text-only MAGNeT (first: the page opens on it), a melody MAGNeT and a stereo MusicGen, all on the
    shared tiny 16-kHz codec (K=4, V=64, 50 Hz)."""
    ckpt, root = assets
    common = dict(codec=str(root / "codec"), sample_rate=16000, frame_rate=50.0, segment_duration=DURATION)
    torch.manual_seed(1)
    melody = melody_module("magnet", "frames", model={"codebook_size": 64}, decoding={"decoding_steps": STEPS},
                           **common)
    stereo = tiny_module(family="musicgen", delays=[0, 0, 1, 1, 2, 2, 3, 3],
                         model=dict(TINY_MODEL, num_codebooks=8, codebook_size=64),
                         **{**common, "codec": f"stereo:{root / 'codec'}"})
    return {"text": str(ckpt), "melody": _save(melody, root / "melody.ckpt"),
            "stereo": _save(stereo, root / "stereo.ckpt")}


@pytest.fixture(scope="module")
def server(names):
    args = build_parser().parse_args([arg for name in names.values() for arg in ("--ckpt", name)])
    engine = Engine.load(check_args(args), Limits(max_duration=1.0, max_captions=2), device="cpu")
    running = ui.launch(engine, host="127.0.0.1", port=args.port)
    yield running
    running.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server.url, verbose=False)


def _defaults(server, ckpt):
    own = {c.name: c.default for c in server.engine.models[ckpt].traits.controls}
    union = ui._union(server.engine)
    return [own.get(name, union[name].default) for name in ui.input_names(server.engine)]


def generate(client, server, ckpt, melody=None, seed=3):
    out = client.predict(ckpt, "calm piano", DURATION, seed, "none", RESCORE, 0.8, 0.2, *_defaults(server, ckpt),
                         melody=None if melody is None else handle_file(str(melody)), api_name="/generate")
    return out[0], out[-2], out[-1]  # first player, downloads, details


def _tokens(downloads):
    return torch.from_numpy(np.load(next(p for p in downloads if p.endswith(".npy"))).astype(np.int64))


def _tune(path, seconds=1.0, rate=22050, amplitude=0.5, pitch=440.0):
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(str(path), (amplitude * np.sin(2 * np.pi * pitch * t)).astype(np.float32), rate)
    return path


def test_the_melody_upload_reaches_the_generator(client, server, names, tmp_path):
    tune = _tune(tmp_path / "tune.wav")
    _, downloads, info = generate(client, server, names["melody"], tune)
    assert info["melody"] is True and info["frames"] == 25
    gen = server.engine.models[names["melody"]].generator
    wav, rate = soundfile.read(str(tune), dtype="float32", always_2d=True)
    melody = torch.from_numpy(wav.T)
    expected = gen.generate(["calm piano"], melody=melody, melody_sample_rate=rate, seed=3, decode_audio=False)
    without = gen.generate(["calm piano"], seed=3, decode_audio=False)
    assert torch.equal(_tokens(downloads), expected.tokens[0])
    assert not torch.equal(expected.tokens, without.tokens)  # the melody changes what is generated
    clip = tmp_path / "clip.wav"  # /edit: a continuation of 0.2 s of audio, following the melody
    soundfile.write(str(clip), 0.3 * np.random.default_rng(0).standard_normal(3200).astype(np.float32), 16000)
    out = client.predict(names["melody"], "calm piano", handle_file(str(clip)), "continue", DURATION, 0.0, 0.1, 5,
                         *_defaults(server, names["melody"]), melody=handle_file(str(tune)), api_name="/edit")
    prompt = torch.from_numpy(soundfile.read(str(clip), dtype="float32")[0])[None]
    expected = gen.generate(["calm piano"], prompt=prompt, prompt_sample_rate=16000, melody=melody,
                            melody_sample_rate=rate, seed=5, decode_audio=False)
    assert out[-1]["melody"] is True and torch.equal(_tokens(out[2]), expected.tokens[0])


def compare(client, server, ckpt_a, ckpt_b, melody, seed=4):
    """/compare with one melody: (downloads, details) of A and of B."""
    out = client.predict(ckpt_a, "calm piano", DURATION, seed, "none", RESCORE, 0.8, 0.2, *_defaults(server, ckpt_a),
                         ckpt_b, *_defaults(server, ckpt_b), melody=handle_file(str(melody)), api_name="/compare")
    return (out[2], out[3]), (out[6], out[7])


def test_ab_the_melody_side_follows_the_melody_and_says_which_did(client, server, names, tmp_path):
    tune = _tune(tmp_path / "tune.wav")
    a, b = compare(client, server, names["melody"], names["text"], tune)
    assert a[1]["melody"] is True and b[1]["melody"] is False
    wav, rate = soundfile.read(str(tune), dtype="float32", always_2d=True)
    gen = server.engine.models[names["melody"]].generator
    expected = gen.generate(["calm piano"], melody=torch.from_numpy(wav.T), melody_sample_rate=rate, seed=4,
                            decode_audio=False)
    assert torch.equal(_tokens(a[0]), expected.tokens[0])
    text_only = server.engine.models[names["text"]].generator.generate(["calm piano"], seed=4, decode_audio=False)
    assert torch.equal(_tokens(b[0]), text_only.tokens[0])
    swapped_a, swapped_b = compare(client, server, names["text"], names["melody"], tune)  # B follows it as well
    assert (swapped_a[1]["melody"], swapped_b[1]["melody"]) == (False, True)
    assert torch.equal(_tokens(swapped_b[0]), expected.tokens[0])


def test_ab_a_melody_neither_side_takes_is_one_line(client, server, names, tmp_path):
    with pytest.raises(AppError, match="has no melody conditioning") as error:
        compare(client, server, names["text"], names["stereo"], _tune(tmp_path / "tune.wav"))
    assert "\n" not in str(error.value)


def test_the_upload_is_offered_for_melody_checkpoints_only(server, names):
    traits = {key: server.engine.models[name].traits.melody for key, name in names.items()}
    assert traits == {"text": False, "melody": True, "stereo": False}
    uploads = [c for c in server.demo.config["components"]
               if c["props"].get("elem_id") in ("melody", "edit-melody", "ab-melody")]
    assert len(uploads) == 3 and not any(c["props"]["visible"] for c in uploads)  # the page opens on text-only


@pytest.mark.parametrize("ckpt,tune,message", [
    ("text", {}, "has no melody conditioning .*facebook/musicgen-melody"),
    ("melody", {"seconds": 0.05}, "the melody: it is 0.050 s long, shorter than one chroma window"),
    ("melody", {"amplitude": 0.0}, "the melody: it is silent"),
    ("melody", {"rate": 4000}, "the melody: its sample rate 4000 Hz is not an audio rate"),
])
def test_a_bad_melody_is_one_line(client, server, names, tmp_path, ckpt, tune, message):
    with pytest.raises(AppError, match=message) as error:
        generate(client, server, names[ckpt], _tune(tmp_path / "tune.wav", **tune))
    assert "\n" not in str(error.value) and "internal error" not in str(error.value)


def test_a_stereo_checkpoint_plays_two_channels(client, server, names):
    player, downloads, info = generate(client, server, names["stereo"])
    assert info["channels"] == 2
    played = soundfile.info(player)  # the file the page's player gets from the server
    assert (played.channels, played.samplerate, played.frames) == (2, 16000, round(DURATION * 16000))
    assert _tokens(downloads).shape == (8, 25)


def test_missing_htdemucs_is_one_line_at_start_up(empty_hf_cache, capsys):
    from magnet_lightning.cli.app import main as app_main

    with pytest.raises(SystemExit) as exit_info:  # the release-format melody model separates stems with htdemucs
        app_main(["--ckpt", str(MELODY_LM / "state_dict.bin")])
    assert exit_info.value.code == 2 and "hf download adefossez/HTDemucs" in str(exit_info.value)
    assert capsys.readouterr().err.count("\n") == 1


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _choose(driver, By, WebDriverWait, dropdown: str, label: str) -> None:
    """Pick the option whose text contains `label` in the gradio dropdown `dropdown` (a CSS selector)."""
    driver.find_element(By.CSS_SELECTOR, f"{dropdown} input").click()
    option = WebDriverWait(driver, 10).until(lambda d: next(
        (o for o in d.find_elements(By.CSS_SELECTOR, "li[data-testid=dropdown-option]") if label in o.text), None))
    option.click()


def _shown(driver, By, elem_id: str) -> bool:
    """Whether the component is displayed (looked up again when the page re-renders it under our feet)."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(20):
        try:
            return any(e.is_displayed() for e in driver.find_elements(By.CSS_SELECTOR, f"#{elem_id}"))
        except StaleElementReferenceException:
            time.sleep(0.05)
    raise AssertionError(f"#{elem_id} kept being re-rendered")


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="headless browser test needs Debian's chromium and chromium-driver "
                           "(apt-get install chromium chromium-driver)")
def test_the_uploads_follow_the_chosen_checkpoints_in_a_browser(server, tmp_path):
    """In headless Chromium: the Generate tab's upload appears for the melody checkpoint, and a clip uploaded there
    is cleared when another checkpoint is chosen; the A/B tab's upload shows while A or B is melody-conditioned."""
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    wait = functools.partial(WebDriverWait, driver)
    try:
        driver.get(server.url)
        wait(60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#ckpt input"))
        assert not _shown(driver, By, "melody") and not _shown(driver, By, "ab-melody")
        _choose(driver, By, WebDriverWait, "#ckpt", "melody.ckpt")
        wait(10).until(lambda d: _shown(d, By, "melody"))
        driver.find_element(By.CSS_SELECTOR, "#melody input[type=file]").send_keys(str(_tune(tmp_path / "t.wav")))
        wait(20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#melody audio"))
        _choose(driver, By, WebDriverWait, "#ckpt", "stereo.ckpt")
        wait(10).until(lambda d: not _shown(d, By, "melody"))
        _choose(driver, By, WebDriverWait, "#ckpt", "melody.ckpt")
        wait(10).until(lambda d: _shown(d, By, "melody"))
        assert not driver.find_elements(By.CSS_SELECTOR, "#melody audio")  # the clip was cleared
        next(b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if "A/B" in b.text).click()
        wait(10).until(lambda d: _shown(d, By, "ab-melody"))  # A takes a melody
        _choose(driver, By, WebDriverWait, "#ckpt", "stereo.ckpt")
        wait(10).until(lambda d: not _shown(d, By, "ab-melody"))  # neither A nor B (the first, text-only) does
        _choose(driver, By, WebDriverWait, "#ckpt-b", "melody.ckpt")
        wait(10).until(lambda d: _shown(d, By, "ab-melody"))  # B does
    finally:
        driver.quit()
