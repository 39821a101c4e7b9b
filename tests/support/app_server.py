"""The app's limits in the tests: small enough for tiny checkpoints on a CPU (the server fixture is in
tests/app/conftest.py)."""

from magnet_lightning.app.settings import Limits

LIMITS = Limits(max_duration=1.0, max_captions=3, max_batch=6, max_text_chars=40, max_queue=16)
