"""Lightning's own misconfigurations as one `error:` line (the class of error, not case by case).

A wrong ``--trainer.strategy`` string, ``--trainer.logger false`` with a config's ``LearningRateMonitor``, a
scheduler whose warm-up outlasts ``--trainer.max_steps``: Lightning (or the optimizer set-up) raises
``MisconfigurationException`` or ``ValueError`` while the trainer, model and callbacks are built or while `fit` starts
(strategy set-up, ``configure_optimizers``, ``on_fit_start`` / ``on_train_start`` hooks). `lightning_misconfigurations`
turns those into a `UserError` naming where it happened, printed as one line by `errors.user_errors`:

- a ``MisconfigurationException`` anywhere inside the block: it is Lightning's class for exactly this;
- a ``ValueError`` only while ``started()`` is False (construction, or fit before the first training batch or sanity
  check); later a ``ValueError`` is a bug or bad data and keeps its traceback.

``--debug`` (``MAGNET_DEBUG=1``) lets the original exception through. `FitStarted` is the callback that tells when
fit has got past its start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from magnet_lightning.errors import CheckpointError, UserError, debug_enabled, one_line


@contextmanager
def lightning_misconfigurations(where: str, started: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Raise a UserError ``"{where}: {message}"`` for a Lightning misconfiguration raised inside the block."""
    try:
        yield
    except (UserError, CheckpointError):
        raise
    except MisconfigurationException as err:
        if debug_enabled():
            raise
        raise UserError(f"{where}: {one_line(err)}") from err
    except ValueError as err:
        if debug_enabled() or started():
            raise
        raise UserError(f"{where}: {one_line(err)}") from err


class FitStarted(Callback):
    """Records that fit got past its start: the sanity check or the first training batch began."""

    def __init__(self) -> None:
        self.started = False

    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self.started = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.started = True
