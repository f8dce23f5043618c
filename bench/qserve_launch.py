"""A qserve for the bench scripts: started on a free loopback port, ready once /health answers 200, stopped
with SIGTERM (a drain) when the `with` block ends."""

from __future__ import annotations

import contextlib
import http.client
import os
import pathlib
import signal
import socket
import subprocess
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def qserve(model: str, *args: str):
    """Yields (process, port) of `qserve -m model --port PORT args...`, once it answers /health."""
    port = free_port()
    proc = subprocess.Popen([str(BIN / "qserve"), "-m", model, "--port", str(port), *args],
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise SystemExit(f"qserve exited with {proc.returncode} before it answered /health")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        yield proc, port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
