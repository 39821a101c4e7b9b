"""The start-up pass: the metrics callback loads its codec and embedder weights at fit start (a missing file stops
the run before step 1, not `every_n_steps` later), its codec must fit the model, and config mistakes are named."""

from __future__ import annotations

import lightning as L
import pytest
from support.helpers import FixedBatches, loader
from support.metric_assets import FRAMES, make_module

from magnet_lightning.callbacks import AudioMetricsCallback
from magnet_lightning.errors import UserError


class CountBatches(L.Callback):
    def __init__(self):
        self.batches = 0

    def on_train_batch_start(self, *args):
        self.batches += 1


def fit(tmp_path, module, callback):
    counter = CountBatches()
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[callback, counter], default_root_dir=tmp_path)
    try:
        trainer.fit(module, loader(FixedBatches(2, frames=FRAMES)))
    finally:
        assert counter.batches == 0, "training started before the metrics callback was checked"


def test_missing_embedder_weights_stop_the_run_before_step_one(tmp_path, codec_dir, monkeypatch):
    monkeypatch.setenv("MAGNET_WEIGHTS_DIR", str(tmp_path / "no_weights"))
    monkeypatch.delenv("MAGNET_VGGISH_CKPT", raising=False)
    callback = AudioMetricsCallback(every_n_steps=5000, metrics=["fad"], embedders={"fad": "vggish"})
    with pytest.raises(FileNotFoundError, match=r"vggish-10086976\.pth"):
        fit(tmp_path, make_module(codec_dir), callback)


@pytest.mark.usefixtures("toy_clap_registered")
def test_missing_prompt_file_stops_the_run_before_step_one(tmp_path, codec_dir):
    callback = AudioMetricsCallback(every_n_steps=5000, metrics=["clap"], embedders={"clap": "toy_clap"},
                                    prompts=str(tmp_path / "absent.csv"))
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        fit(tmp_path, make_module(codec_dir), callback)


@pytest.mark.usefixtures("toy_clap_registered")
def test_callback_codec_must_fit_the_model(tmp_path, codec_dir):
    from support.helpers import TINY_MODEL

    module = make_module(codec_dir, model=dict(TINY_MODEL, codebook_size=32))  # the codec has V=16
    callback = AudioMetricsCallback(every_n_steps=5000, metrics=["clap"], embedders={"clap": "toy_clap"})
    with pytest.raises(UserError, match=r"K=4, V=16 but the model has K=4, V=32"):
        fit(tmp_path, module, callback)


@pytest.mark.parametrize("section,values,message", [
    ("model", {"num_layer": 2}, "model.model.num_layer: unknown field (did you mean 'num_layers'?)"),
    ("masking", {"span_length": 3}, "model.masking.span_length: unknown field (did you mean 'span_len'?)"),
    ("optimizer", {"lr": 1e-3, "warmup": 10}, "model.optimizer.warmup: unknown field"),
])
def test_config_typos_are_named_with_the_closest_field(section, values, message):
    from types import SimpleNamespace

    from magnet_lightning.cli.startup import check_sections

    config = SimpleNamespace(model=None, masking=None, optimizer=None)
    check_sections(config)  # defaults are fine
    setattr(config, section, values)
    with pytest.raises(UserError) as info:
        check_sections(config)
    assert str(info.value).startswith(message)


@pytest.mark.usefixtures("toy_clap_registered")
def test_callback_and_module_checks_pass_for_a_matching_setup(tmp_path, codec_dir):
    """A control: with the right codec and prompts nothing is refused and training runs its steps."""
    (tmp_path / "p.csv").write_text("id,caption\na,calm piano\n")
    callback = AudioMetricsCallback(every_n_steps=5000, metrics=["clap"], embedders={"clap": "toy_clap"},
                                    prompts=str(tmp_path / "p.csv"))
    counter = CountBatches()
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[callback, counter],
                        default_root_dir=tmp_path)
    trainer.fit(make_module(codec_dir), loader(FixedBatches(2, frames=FRAMES)))
    assert counter.batches == 2 and len(callback._items) == 1
