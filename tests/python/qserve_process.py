"""Starts and stops a qserve process on a free loopback port for the test_qserve*.py files."""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import time

from conftest import program


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Qserve:
    """qserve -m MODEL ARGS on 127.0.0.1:<free port>; stderr goes to a file (read it with .log())."""

    def __init__(self, model: pathlib.Path, *args: str, api_key: str | None = None):
        self.port = free_port()
        self.api_key = api_key
        self.err = tempfile.TemporaryFile()
        cmd = [str(program("qserve")), "-m", str(model), "--port", str(self.port), *args]
        if api_key:
            cmd += ["--api-key", api_key]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.err)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, f"qserve exited {self.proc.returncode}:\n{self.log()}"
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"qserve did not answer /health:\n{self.log()}"
            time.sleep(0.1)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log(self) -> str:
        self.err.seek(0)
        return self.err.read().decode("utf-8", errors="replace")

    def headers(self, extra: dict | None = None) -> dict:
        h = {"Content-Type": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        h.update(extra or {})
        return h

    def request(self, method: str, path: str, body: bytes | dict | None = None, headers: dict | None = None,
                timeout: float = 120) -> tuple[int, dict, bytes]:
        """(status, headers, body) of one request on a fresh connection."""
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=self.headers() if headers is None else headers)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        status, _, data = self.request("POST", path, body)
        return status, json.loads(data)

    def metrics(self) -> dict[str, float]:
        status, _, data = self.request("GET", "/metrics")
        assert status == 200
        out = {}
        for line in data.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def rss_bytes(self, field: str = "VmRSS") -> int:
        """The server's resident set now (VmRSS) or at its peak so far (VmHWM)."""
        for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"qserve did not exit within {timeout} s of signal {sig}:\n{self.log()}")


def qrun_text(model: pathlib.Path, *args: str) -> str:
    """qrun's stdout (the generated text; the newline qrun adds at the end removed)."""
    proc = subprocess.run([str(program("qrun")), "-m", str(model), *args], capture_output=True, timeout=120,
                          env={**os.environ, "OMP_WAIT_POLICY": "passive"})
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    out = proc.stdout.decode("utf-8")
    assert out.endswith("\n")
    return out[:-1]


__all__ = ["Qserve", "free_port", "qrun_text", "signal"]
