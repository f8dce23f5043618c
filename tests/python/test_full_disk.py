"""Outputs that do not fit: qconvert's three conversions and qrun's --kl-divergence-base and --dump-logits
files, written where there is no room, two ways. A file-size limit (RLIMIT_FSIZE, what `ulimit -f` sets;
the tools ignore SIGXFSZ so that write() fails with EFBIG instead of the kernel killing them) and, as root,
a 1 MiB tmpfs mounted by the test (a real ENOSPC).

The contract for each: exit 1 (no signal, no sanitizer report), exactly one stderr line names the output,
the last (before it only the run's progress and log lines); nothing is left where the output was to go (no
partial output, no temporary, no --to-hf directory); the input's bytes and modification times are untouched.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import resource
import subprocess

import pytest

from conftest import age, check_exit, program, snapshot
from hostile_gguf_cases import tiny_llama
from make_tiny_hf_model import make_tiny_hf_model

TIMEOUT_S = 300
LIMIT_BYTES = 256 << 10   # every output below is several MiB (the tmpfs holds 1 MiB)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, pathlib.Path]:
    """An HF directory (f16, ~3 MB of weights), the same model as an f32 GGUF, the tiny llama GGUF and a
    text of 6300 tokens for it (98 perplexity chunks of 64: a 1.6 MB KL base file; its first 1500 tokens
    as a prompt: 1.5 MB of logits)."""
    base = tmp_path_factory.mktemp("sources")
    hf = base / "hf"
    make_tiny_hf_model(hf, hidden=256, ff=1024, dtype="f16")
    gguf = base / "model.gguf"
    proc = subprocess.run([str(program("qconvert")), str(hf), "-o", str(gguf), "--type", "f32"],
                          capture_output=True, timeout=TIMEOUT_S)
    check_exit(proc, 0, "making the f32 GGUF")
    tiny = base / "tiny.gguf"
    tiny.write_bytes(tiny_llama().to_bytes())
    text = base / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 140)
    prompt = base / "prompt.txt"
    prompt.write_text(text.read_text()[:1500])
    return {"hf": hf, "gguf": gguf, "tiny": tiny, "text": text, "prompt": prompt}


def file_size_limit():
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


@contextlib.contextmanager
def small_tmpfs(where: pathlib.Path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"mount -t tmpfs -o size=1m failed: {proc.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(where)], check=True)


@contextlib.contextmanager
def full_place(kind: str, out: pathlib.Path):
    """Yields the preexec_fn that makes the output not fit."""
    if kind == "fsize":
        out.mkdir()
        yield file_size_limit
    else:
        with small_tmpfs(out):
            yield None


def does_not_fit(argv: list, output: pathlib.Path, inputs: list[pathlib.Path], kind: str, out: pathlib.Path):
    with full_place(kind, out) as preexec:
        for p in inputs:
            age(p)
        before = [snapshot(p) for p in inputs]
        listing = sorted(os.listdir(out))
        proc = subprocess.run([str(a) for a in argv], capture_output=True, timeout=TIMEOUT_S, preexec_fn=preexec)
        what = f"{pathlib.Path(argv[0]).name} into a full {kind}"
        err = check_exit(proc, 1, what)
        naming = [line for line in err.splitlines() if str(output) in line]
        assert len(naming) == 1 and err.splitlines()[-1] == naming[0], \
            f"{what}: not one last line naming {output}:\n{err}"
        assert any(w in naming[0] for w in ("File too large", "No space left on device")), naming[0]
        assert sorted(os.listdir(out)) == listing, f"{what}: left {sorted(os.listdir(out))}"
        assert [snapshot(p) for p in inputs] == before, f"{what}: an input changed"


PLACES = ["fsize", "tmpfs"]


@pytest.mark.parametrize("kind", PLACES)
def test_hf_to_gguf(kind, sources, tmp_path):
    out = tmp_path / "out"
    does_not_fit([program("qconvert"), sources["hf"], "-o", out / "o.gguf", "--type", "f16"], out / "o.gguf",
                 [sources["hf"]], kind, out)


@pytest.mark.parametrize("kind", PLACES)
def test_requantize(kind, sources, tmp_path):
    out = tmp_path / "out"
    does_not_fit([program("qconvert"), sources["gguf"], "-o", out / "o.gguf", "--type", "q8_0"], out / "o.gguf",
                 [sources["gguf"]], kind, out)


@pytest.mark.parametrize("kind", PLACES)
def test_gguf_to_hf(kind, sources, tmp_path):
    out = tmp_path / "out"
    does_not_fit([program("qconvert"), sources["gguf"], "--to-hf", out / "hf"], out / "hf" / "model.safetensors",
                 [sources["gguf"]], kind, out)


@pytest.mark.parametrize("kind", PLACES)
def test_qrun_kl_divergence_base(kind, sources, tmp_path):
    out = tmp_path / "out"
    does_not_fit([program("qrun"), "-m", sources["tiny"], "--perplexity", "-f", sources["text"], "-c", "64", "-t", "1",
                  "--kl-divergence-base", out / "kl.bin"],
                 out / "kl.bin", [sources["tiny"], sources["text"]], kind, out)


@pytest.mark.parametrize("kind", PLACES)
def test_qrun_dump_logits(kind, sources, tmp_path):
    out = tmp_path / "out"
    does_not_fit([program("qrun"), "-m", sources["tiny"], "-f", sources["prompt"], "-c", "2048", "-n", "1", "-t", "1",
                  "--dump-logits", out / "logits.bin"],
                 out / "logits.bin", [sources["tiny"], sources["prompt"]], kind, out)
