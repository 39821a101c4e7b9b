"""The training bar counts optimizer steps to max_steps across epochs: no `Epoch 2/-2`, no `v_num`."""

import lightning as L
from lightning.pytorch.loggers import CSVLogger
from support.helpers import FixedBatches, loader, tiny_module

from magnet_lightning.callbacks.progress import StepProgressBar


class Snapshots(L.Callback):
    def __init__(self, bar):
        self.bar, self.seen = bar, []

    def on_train_batch_end(self, trainer, *args):
        self.seen.append((trainer.global_step, self.bar.train_progress_bar.n, self.bar.train_progress_bar.total,
                          self.bar.train_progress_bar.desc))


def test_bar_counts_steps_across_epochs(tmp_path, capsys):
    bar = StepProgressBar()
    snapshots = Snapshots(bar)  # after the bar in the list: sees the bar's state after its update
    trainer = L.Trainer(default_root_dir=tmp_path, max_steps=6, accelerator="cpu", logger=CSVLogger(tmp_path),
                        enable_checkpointing=False, enable_model_summary=False, callbacks=[bar, snapshots])
    trainer.fit(tiny_module(), loader(FixedBatches(2, vary=True)))  # 2 batches per epoch: 3 epochs
    assert trainer.current_epoch == 3
    assert [(n, total) for _, n, total, _ in snapshots.seen] == [(s, 6) for s in range(1, 7)]
    assert {desc for *_, desc in snapshots.seen} == {"train: "}  # tqdm appends ": "
    out = capsys.readouterr()
    assert "Epoch" not in out.out + out.err and "v_num" not in out.out + out.err
    assert "6/6" in out.out + out.err
