"""The app's server for tests/app/: started on a free 127.0.0.1 port with the three tiny checkpoints (MAGNeT,
autoregressive, Hybrid-MAGNeT; support/tiny_generator.py), stopped after the module."""

import socket

import pytest
from support.app_server import LIMITS


@pytest.fixture(scope="module")
def server(assets, ar_ckpt, hybrid_ckpt):
    from magnet_lightning.app import ui
    from magnet_lightning.app.engine import Engine
    from magnet_lightning.cli.app import build_parser, check_args

    args = build_parser().parse_args(["--ckpt", str(assets[0]), "--ckpt", str(ar_ckpt), "--ckpt", str(hybrid_ckpt),
                                      "--host", "127.0.0.1"])
    specs = check_args(args)  # the command line's checks and free port
    engine = Engine.load(specs, LIMITS, device="cpu")
    running = ui.launch(engine, host=args.host, port=args.port)
    yield running
    running.close()
    with pytest.raises(OSError):  # stopped: nothing listens on the port any more
        socket.create_connection(("127.0.0.1", args.port), timeout=2).close()
