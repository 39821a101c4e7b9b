"""Fixtures of tests/interop/: a fake huggingface_hub.HfApi that records what `magnet-export --push-to-hub` uploads."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub

    FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    return FakeApi.calls


class FakeApi:
    """huggingface_hub.HfApi as export --push-to-hub calls it: records the repo and the uploaded files."""

    calls: list = []

    def __init__(self, token=None):
        pass

    def create_repo(self, repo_id, private, exist_ok, repo_type):
        FakeApi.calls.append(("create_repo", repo_id, private, repo_type))
        return f"https://hub.example/{repo_id}"

    def upload_folder(self, repo_id, folder_path, repo_type, commit_message):
        FakeApi.calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
