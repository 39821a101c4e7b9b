"""The network probe: URLs with ports, proxies and NO_PROXY, against real sockets on 127.0.0.1."""

from __future__ import annotations

import os
import socket

import pytest

from magnet_lightning.cli.wandb_setup import choose_wandb_mode
from magnet_lightning.utils import network

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                   "no_proxy")


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    """A listening TCP socket on 127.0.0.1; yields its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there any more
    return port


@pytest.mark.parametrize("address,expected", [
    ("https://huggingface.co", ("huggingface.co", 443)), ("http://wandb.local:8765", ("wandb.local", 8765)),
    ("http://wandb.local:8765/api/v1", ("wandb.local", 8765)), ("wandb.local:8765", ("wandb.local", 8765)),
    ("http://plain.host", ("plain.host", 80)), ("api.wandb.ai", ("api.wandb.ai", 443)),
])
def test_endpoint_keeps_the_port_out_of_the_host(address, expected):
    assert network.endpoint(address) == expected


def test_a_server_on_its_own_port_is_reachable(server, closed_port):
    assert network.reachable(f"http://127.0.0.1:{server}", timeout=2)
    assert network.reachable(f"127.0.0.1:{server}", timeout=2)
    assert not network.reachable(f"http://127.0.0.1:{closed_port}", timeout=2)


def test_proxy_is_probed_unless_no_proxy_names_the_host(monkeypatch, server, closed_port):
    target = f"https://127.0.0.1:{closed_port}"  # unreachable directly
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{server}")
    assert network.route(target) == ("127.0.0.1", server)
    assert network.reachable(target, timeout=2)  # the proxy answers: the libraries will go through it
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert network.route(target) == ("127.0.0.1", closed_port)
    assert not network.reachable(target, timeout=2)
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{closed_port}")  # a dead proxy (scheme-less form)
    assert not network.reachable(f"https://127.0.0.1:{server}", timeout=2)


def test_self_hosted_wandb_with_a_port_stays_online(monkeypatch, server, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server}")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    (tmp_path / "netrc").write_text("machine 127.0.0.1\n  login user\n  password key\n")  # the key is for this host
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert choose_wandb_mode() == "online"
    assert "WANDB_MODE" not in os.environ


def test_hub_endpoint_with_a_port_is_probed_there(monkeypatch, server, closed_port):
    for name in network.HUB_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server}")
    network.hub_offline_without_network()
    assert not any(name in os.environ for name in network.HUB_VARIABLES)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    network.hub_offline_without_network()
    assert all(os.environ[name] == "1" for name in network.HUB_VARIABLES)
