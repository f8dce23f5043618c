"""qrun against hostile and wrong input: every corrupt-file class of the GGUF reader's unit tests (built
here in Python, from a valid tiny llama GGUF broken in exactly one place), files that are not GGUFs at
all, GGUFs of another architecture, llama GGUFs whose hyperparameters and tensors disagree, and a prompt
longer than the context.

The contract for each: exit 1 (not a signal, no sanitizer report: scripts/sanitize.sh runs this file
against the ASan+UBSan build), within a timeout, and stderr is exactly one line that starts with "qrun: "
and names the offending file.
"""

from __future__ import annotations

import os
import struct
import subprocess

import pytest

import hostile_gguf as h
import make_tiny_model as tiny
from conftest import check_exit, program
from hostile_gguf_cases import MODEL_CASES, READER_CASES, tiny_llama

TIMEOUT_S = 60


@pytest.fixture(scope="module")
def good() -> h.Gguf:
    return tiny_llama()


def check_one_error_line(proc: subprocess.CompletedProcess, must_name: str, what: str) -> str:
    err = check_exit(proc, 1, what)
    detail = f"{what}: exit {proc.returncode}\nstderr:\n{err}\nstdout:\n{proc.stdout[:500]!r}"
    lines = err.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr: {detail}"
    assert lines[0].startswith("qrun: "), detail
    assert must_name in lines[0], f"the message does not name {must_name}: {detail}"
    return lines[0]


def run_qrun(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(program("qrun")), *args], capture_output=True, timeout=TIMEOUT_S)


@pytest.mark.parametrize("case", sorted(READER_CASES))
def test_corrupt_gguf(case, good, tmp_path):
    path = tmp_path / f"{case}.gguf"
    path.write_bytes(READER_CASES[case](good))
    proc = run_qrun("-m", str(path), "-p", "hello", "-n", "4", "--temp", "0", "-t", "1")
    check_one_error_line(proc, str(path), case)


def test_truncated_everywhere(good, tmp_path):
    """Every cut of the header, metadata and tensor infos (every 7th byte) and a few in the data."""
    b = good.to_bytes()
    cuts = list(range(0, good.header_end(), 7)) + [good.header_end() + 1, len(b) // 2, len(b) - 1]
    failures = []
    path = tmp_path / "cut.gguf"
    for n in cuts:
        path.write_bytes(b[:n])
        proc = run_qrun("-m", str(path), "-p", "hello", "-n", "1", "-t", "1")
        try:
            check_one_error_line(proc, str(path), f"cut at {n} of {len(b)} bytes")
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, f"{len(failures)} of {len(cuts)} cuts failed; first: {failures[0]}"


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_wrong_model(case, good, tmp_path):
    path = tmp_path / f"{case}.gguf"
    path.write_bytes(MODEL_CASES[case](good))
    proc = run_qrun("-m", str(path), "-p", "hello", "-n", "4", "--temp", "0", "-t", "1")
    check_one_error_line(proc, str(path), case)


def test_good_tiny_model_runs(good, tmp_path):
    """The base every case above breaks is itself a model qrun runs (so each case fails for its one
    defect, not for something the tiny model lacks)."""
    path = tmp_path / "good.gguf"
    path.write_bytes(good.to_bytes())
    proc = run_qrun("-m", str(path), "-p", "hello", "-n", "4", "--temp", "0", "-t", "1")
    check_exit(proc, 0, "the good tiny model")


def test_missing_file(tmp_path):
    path = tmp_path / "does-not-exist.gguf"
    check_one_error_line(run_qrun("-m", str(path), "-p", "hi"), str(path), "missing file")


def test_directory(tmp_path):
    check_one_error_line(run_qrun("-m", str(tmp_path), "-p", "hi"), str(tmp_path), "directory")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    check_one_error_line(run_qrun("-m", str(path), "-p", "hi"), str(path), "zero-byte file")


def test_not_a_gguf(tmp_path):
    path = tmp_path / "text.gguf"
    path.write_text("this is a text file, not a model\n" * 10)
    check_one_error_line(run_qrun("-m", str(path), "-p", "hi"), str(path), "text file")


def test_unreadable_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "locked.gguf"
    path.write_bytes(b"GGUF")
    path.chmod(0)
    check_one_error_line(run_qrun("-m", str(path), "-p", "hi"), str(path), "unreadable file")


def test_missing_prompt_file(good, tmp_path):
    model = tmp_path / "good.gguf"
    model.write_bytes(good.to_bytes())
    prompt = tmp_path / "no-such-prompt.txt"
    check_one_error_line(run_qrun("-m", str(model), "-f", str(prompt), "-n", "1"), str(prompt),
                         "missing prompt file")


def test_prompt_longer_than_context(good, tmp_path):
    """-c 16 and a 100-token prompt (the tiny vocabulary is one token per byte)."""
    model = tmp_path / "good.gguf"
    model.write_bytes(good.to_bytes())
    proc = run_qrun("-m", str(model), "-p", "x" * 100, "-c", "16", "-n", "4", "-t", "1")
    line = check_one_error_line(proc, str(model), "prompt longer than -c 16")
    assert "context" in line


def test_prompt_longer_than_context_from_file(good, tmp_path):
    model = tmp_path / "good.gguf"
    model.write_bytes(good.to_bytes())
    prompt = tmp_path / "long-prompt.txt"
    prompt.write_text("y" * 100)
    proc = run_qrun("-m", str(model), "-f", str(prompt), "-c", "16", "-n", "4", "-t", "1")
    line = check_one_error_line(proc, str(prompt), "prompt file longer than -c 16")
    assert "context" in line


def test_llamacpp_numerics_uncovered_type(good, tmp_path):
    """--numerics llama.cpp on f32 matrices (a path it does not reproduce) names the first such tensor
    and the way out, before any work."""
    model = tmp_path / "good.gguf"
    model.write_bytes(good.to_bytes())
    proc = run_qrun("-m", str(model), "-p", "hi", "-n", "1", "-t", "1", "--numerics", "llama.cpp")
    line = check_one_error_line(proc, str(model), "f32 matrices under --numerics llama.cpp")
    assert "blk.0.attn_q.weight" in line and "--numerics fast" in line


def test_llamacpp_numerics_needs_f16_cache(good, tmp_path):
    model = tmp_path / "good.gguf"
    model.write_bytes(good.to_bytes())
    proc = run_qrun("-m", str(model), "-p", "hi", "-n", "1", "-t", "1", "--numerics", "llama.cpp",
                    "--cache-type", "f32")
    assert "--cache-type" in check_one_error_line(proc, str(model), "f32 cache under --numerics llama.cpp")


@pytest.mark.parametrize("value", [0x7E00, 0x7C00], ids=["nan", "inf"])
def test_kquant_scale_not_finite(value, tmp_path):
    """A q6_K output matrix whose super-block scale d decodes to NaN / Inf: the reader cannot decode every
    block, so the logits carry it; qrun stops with one line naming the position (no sort over NaN, no
    crash), in generation and in perplexity."""
    path = tmp_path / "q6k.gguf"
    tiny.write_model(str(path), tiny.TinySpec(q6k_output=True, tied=False, dim=256, n_ff=256))
    g = h.from_file(str(path))
    t = g.tensor("output.weight")
    data = bytearray(t.data)
    struct.pack_into("<H", data, 3 * 210 + 208, value)  # d of row 3 (one super-block per row of 256)
    t.data = bytes(data)
    path.write_bytes(g.to_bytes())
    for args in (["-p", "hello", "-n", "4", "--temp", "0"], ["--perplexity", "-f", str(path), "-c", "16"]):
        if args[0] == "--perplexity":
            text = tmp_path / "t.txt"
            text.write_text("hello world " * 20)
            args[2] = str(text)
        proc = run_qrun("-m", str(path), "-t", "1", *args)
        err = check_exit(proc, 1, str(args))
        last = err.strip().splitlines()[-1]
        assert last.startswith("qrun: ") and "non-finite" in last and "position" in last, err


def test_special_token_id_outside_vocabulary_warns(good, tmp_path):
    """A special-token id past the vocabulary keeps the default, as llama.cpp does, and qrun says so:
    exactly one warning line on stderr, naming the file and the key; the run itself succeeds."""
    path = tmp_path / "bos.gguf"
    path.write_bytes(good.copy().set("tokenizer.ggml.bos_token_id", h.U32, 1000000).to_bytes())
    proc = run_qrun("-m", str(path), "-p", "hello", "-n", "2", "--temp", "0", "-t", "1")
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == [f"qrun: warning: {path}: tokenizer.ggml.bos_token_id = 1000000 is outside the vocabulary "
                        "(256 tokens); using the default 11"], err
