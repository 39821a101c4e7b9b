"""Network probes: is a host reachable, and set the Hugging Face libraries offline when the hub is not (call that
before transformers / huggingface_hub are imported; this module imports nothing heavy).

Without it, every `from_pretrained` of a missing model retries with back-off for tens of seconds, and `import
laion_clap` (the CLAP metric) for about 11 minutes. With the variables set, missing weights fail at once and the
recipe reports what to download. Variables the user already set are left alone.
"""

import os
import socket
import threading

HUB_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
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
    if any(v in os.environ for v in HUB_VARIABLES):
        return
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    if not reachable(host):
        for v in HUB_VARIABLES:
            os.environ[v] = "1"
        print(f"{host} is not reachable: Hugging Face hub OFFLINE (models come from the local cache or paths).",
              flush=True)
