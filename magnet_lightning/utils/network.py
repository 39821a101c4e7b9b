"""Network probes: can a service be reached, and set the Hugging Face libraries offline when the hub cannot (call that
before transformers / huggingface_hub are imported; this module imports nothing heavy).

Without it, every `from_pretrained` of a missing model retries with back-off for tens of seconds, and `import
laion_clap` (the CLAP metric) for about 11 minutes. With the variables set, missing weights fail at once and the
entry point reports what to download. Variables the user already set are left alone.

A service is given as a URL or ``host[:port]`` (``https://huggingface.co``, ``http://wandb.local:8765``). When the
standard proxy variables route it through a proxy (``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY``, lower or upper
case, minus ``NO_PROXY``: the rules of Python's urllib, which requests and huggingface_hub follow too), the proxy is
probed instead: the libraries will talk to the proxy, and it decides.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import urllib.parse
import urllib.request

HUB_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
DEFAULT_PORTS = {"http": 80, "https": 443}


def endpoint(address: str) -> tuple[str, int]:
    """'https://host:8765/path', 'host:8765' or 'host' -> (host, port); the port follows the scheme (https: 443)."""
    parts = urllib.parse.urlsplit(address if "://" in address else f"https://{address}")
    if not parts.hostname:
        raise ValueError(f"not a host or URL: {address!r}")
    return parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme, 443)


def route(address: str) -> tuple[str, int]:
    """The (host, port) a client connects to for `address`: its proxy when the proxy variables send it there."""
    url = address if "://" in address else f"https://{address}"
    scheme = urllib.parse.urlsplit(url).scheme
    host, port = endpoint(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass_environment(f"{host}:{port}", proxies):
        return endpoint(proxy if "://" in proxy else f"http://{proxy}")
    return host, port


def reachable(address: str, timeout: float = 3.0) -> bool:
    """True when a TCP connection to `address` (or to its proxy) opens within `timeout` seconds."""
    host, port = route(address)
    result = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # bounds a slow DNS lookup too
    thread.start()
    thread.join(timeout + 1)
    return bool(result and result[0])


def hub_offline_without_network() -> None:
    """HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1 when the hub (HF_ENDPOINT) cannot be reached; says so once."""
    if any(v in os.environ for v in HUB_VARIABLES):
        return
    hub = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    if not reachable(hub):
        for v in HUB_VARIABLES:
            os.environ[v] = "1"
        print(f"{hub} is not reachable: Hugging Face hub OFFLINE (models come from the local cache or paths).",
              file=sys.stderr, flush=True)  # stderr: `--print_config > cfg.yaml` must stay valid YAML
