"""Ctrl-C (SIGINT) and SIGTERM during a qconvert conversion: the conversion stops at its next chunk, removes
every temporary file and every output it had made, prints one line naming the output ("interrupted;
nothing was written") and exits 128 + the signal (130, 143), as llama.cpp's tools are killed from a shell.

Deterministic, not timed: qconvert's stderr is a pipe of one page (F_SETPIPE_SZ), so qconvert can never be
more than a page of output ahead of our reading. We read it, a little at a time, until qconvert has printed
its first progress line (non-tty qconvert prints one line per tensor, and during --awq one per 10% of the
capture and one per searched block), then fill the pipe to the brim ourselves, so qconvert's next line
blocks it; only then is the signal sent, and only after that is the pipe drained. The models are sized so
that what follows the first progress line is more than a page (over a hundred tensors; 64 searched
blocks), so the signal always arrives while work is left, whatever the machine's speed. The filler is
newlines only (empty lines), which the checks skip.

Cases: GGUF -> GGUF (requantize), HF directory -> GGUF, GGUF -> --to-hf DIR (the directory qconvert created
is gone again), SIGTERM (143), and an --awq conversion interrupted during the calibration's capture (its
f32 working copy beside the output is gone too). Each: the exit code, exactly one "interrupted" line naming
the output, no output, the output's directory as it was (no temporary file), the input unchanged.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import pathlib
import re
import signal
import subprocess

import pytest

from conftest import program
from make_tiny_hf_model import make_tiny_hf_model
from make_tiny_model import TinySpec, write_model

F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Python >= 3.10 on Linux); the number, for older Pythons
PAGE = 4096
TENSOR_LINE = re.compile(r"^\[\s*1/\d+\] ", re.M)
CAPTURE_LINE = re.compile(r"^qconvert: calibration capture ", re.M)


def tree_hash(root: pathlib.Path) -> str:
    """One hash over every file's relative name and bytes (a file or a directory)."""
    h = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for p in files:
        h.update(str(p.relative_to(root.parent)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def fill_pipe(fd: int) -> None:
    """Writes newlines into the pipe (through its own non-blocking descriptor) until it holds no more."""
    size = PAGE
    while size >= 1:
        try:
            os.write(fd, b"\n" * size)
        except BlockingIOError:
            size //= 2  # writes up to PIPE_BUF are all-or-nothing: try a smaller one
        except OSError as e:
            assert e.errno == errno.EAGAIN, e
            size //= 2


def interrupt_at(args: list, first_line: re.Pattern, sig: int) -> tuple[int, str]:
    """Runs qconvert ARGS; once it has printed a line matching `first_line` and is held by a full stderr
    pipe, sends `sig`. Returns (exit code, stderr without the filler)."""
    exe = program("qconvert")
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, PAGE)
    # A second open file description of the same pipe: O_NONBLOCK on it leaves qconvert's blocking.
    filler = os.open(f"/proc/self/fd/{w}", os.O_WRONLY | os.O_NONBLOCK)
    proc = subprocess.Popen([str(exe), *map(str, args)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=w, env={**os.environ, "OMP_WAIT_POLICY": "passive"})
    os.close(w)
    seen = b""
    try:
        while not first_line.search(seen.decode("utf-8", "replace")):
            chunk = os.read(r, 256)  # small reads: we stop soon after the line
            if not chunk:  # qconvert ended before its first progress line
                os.close(filler)
                filler = -1
                proc.wait(timeout=60)
                pytest.fail(f"qconvert {args} exited {proc.returncode} before a progress line:\n{seen.decode()}")
            seen += chunk
        fill_pipe(filler)
        os.close(filler)
        filler = -1
        proc.send_signal(sig)
        rest = b""
        while chunk := os.read(r, 65536):
            rest += chunk
        code = proc.wait(timeout=120)
    finally:
        if filler >= 0:
            os.close(filler)
        os.close(r)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = (seen + rest).decode("utf-8", "replace")
    return code, "\n".join(line for line in text.splitlines() if line.strip())


def check_stopped(code: int, err: str, sig: int, output: pathlib.Path, before: set, directory: pathlib.Path,
                  inputs: dict) -> None:
    assert "AddressSanitizer" not in err and "runtime error:" not in err, err
    assert code == 128 + sig, f"exit {code}, expected {128 + sig}:\n{err}"
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1, err
    assert lines[0] == f"qconvert: {output}: interrupted; nothing was written", lines[0]
    assert not output.exists(), f"{output} was left behind"
    assert set(os.listdir(directory)) == before, f"left in {directory}: {set(os.listdir(directory)) - before}"
    for path, digest in inputs.items():
        assert tree_hash(path) == digest, f"{path} changed"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("signals_src")
    # 16 layers: 147 tensors, ~9 KiB of progress lines; 64 layers: 64 searched blocks, ~4.5 KiB of lines
    write_model(str(d / "tiny.gguf"), TinySpec(wtype="f32", tied=False, n_layers=16, seed=3))
    write_model(str(d / "tiny64.gguf"), TinySpec(wtype="f32", tied=False, n_layers=64, seed=3))
    make_tiny_hf_model(d / "hf", layers=16, seed=3)
    (d / "calib.txt").write_text("The quick brown fox jumps over the lazy dog. " * 60)
    return d


def run_case(sources, tmp_path, args_for, sig=signal.SIGINT, first_line=TENSOR_LINE, extra_inputs=()):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / "model.gguf"
    args, src = args_for(output)
    inputs = {p: tree_hash(p) for p in [src, *extra_inputs]}
    before = set(os.listdir(out_dir))
    code, err = interrupt_at(args, first_line, sig)
    check_stopped(code, err, sig, output, before, out_dir, inputs)
    return err


def test_requantize_sigint(sources, tmp_path):
    src = sources / "tiny.gguf"
    run_case(sources, tmp_path, lambda out: ([src, "-o", out, "--type", "q8_0", "-t", 1], src))


def test_hf_to_gguf_sigint(sources, tmp_path):
    src = sources / "hf"
    run_case(sources, tmp_path, lambda out: ([src, "-o", out, "--type", "q4_0", "-t", 1], src))


def test_requantize_sigterm(sources, tmp_path):
    src = sources / "tiny.gguf"
    run_case(sources, tmp_path, lambda out: ([src, out, "Q4_1", 1], src), sig=signal.SIGTERM)


def test_to_hf_sigint_removes_the_directory_it_made(sources, tmp_path):
    src = sources / "tiny.gguf"
    export = tmp_path / "export"
    before = set(os.listdir(tmp_path))
    digest = tree_hash(src)
    code, err = interrupt_at([src, "--to-hf", export, "--type", "f16", "-t", 1], TENSOR_LINE, signal.SIGINT)
    check_stopped(code, err, signal.SIGINT, export, before, tmp_path, {src: digest})


def test_to_hf_sigint_leaves_an_existing_directory_empty(sources, tmp_path):
    src = sources / "tiny.gguf"
    export = tmp_path / "export"
    export.mkdir()
    code, err = interrupt_at([src, "--to-hf", export, "-t", 1], TENSOR_LINE, signal.SIGINT)
    assert code == 130, err
    assert [line for line in err.splitlines() if "interrupted" in line] == \
        [f"qconvert: {export}: interrupted; nothing was written"], err
    assert export.is_dir() and not any(export.iterdir()), list(export.iterdir())


def test_awq_sigint_during_calibration(sources, tmp_path):
    src, calib = sources / "tiny64.gguf", sources / "calib.txt"
    err = run_case(sources, tmp_path,
                   lambda out: ([src, "-o", out, "--method", "awq_q4_0", "--awq", calib, "--awq-samples", 4,
                                 "--awq-ctx", 32, "--awq-grid", 2, "-t", 1], src),
                   first_line=CAPTURE_LINE, extra_inputs=[calib])
    assert not TENSOR_LINE.search(err), f"stopped after the calibration, not during it:\n{err}"
