"""Our q4_0, q8_0 and f16 conversions of the SmolLM2 HF export load in llama.cpp (llama-cpp-python) and
give the same greedy 64-token continuations as qrun (--numerics llama.cpp) on the same files. The HF directory is qconvert's own
--to-hf export of the SmolLM2 GGUF (real trained weights), so this is HF -> GGUF as a user runs it.

Skips only when llama_cpp is not importable (scripts/compare-llamacpp.sh installs it)."""

import os
import pathlib
import subprocess

import pytest

from conftest import optional_reference

optional_reference("llama_cpp")

import llamacpp_compare as cmp  # noqa: E402
from conftest import REPO  # noqa: E402

BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))
TYPES = ["q8_0", "q4_0", "f16"]
PROMPTS = ["The capital of France is", "SELECT name, age FROM users WHERE", "Dear Sir or Madam,\n\nI am writing to"]


def qconvert(*args, timeout=600):
    exe = BIN / "qconvert"
    if not exe.exists():
        pytest.fail(f"{exe} is not built (set QE_BIN)")
    p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"qconvert {' '.join(map(str, args))}: {p.stderr}"


@pytest.fixture(scope="module")
def converted(default_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("llcpp")
    qconvert(default_model, "--to-hf", d / "hf", "--type", "bf16", "-t", 2)
    for t in TYPES:
        qconvert(d / "hf", "-o", d / f"smollm2-{t}.gguf", "--type", t, "-t", 2)
    return d


@pytest.fixture(scope="module")
def reports(converted):
    return {t: cmp.compare(converted / f"smollm2-{t}.gguf", BIN, n_predict=64, prompts=PROMPTS, ppl=False)
            for t in TYPES}


@pytest.mark.parametrize("qtype", TYPES)
def test_llamacpp_loads_our_file(reports, qtype):
    rep = reports[qtype]
    assert all(r.tokens_equal for r in rep.prompts), "prompt tokenization differs"
    assert all(r.n_gen > 0 for r in rep.prompts), "llama.cpp generated nothing"


@pytest.mark.parametrize("qtype", TYPES)
def test_greedy_64_tokens_equal(reports, qtype):
    bad = [f"{i}: {r.first_divergence}" for i, r in enumerate(reports[qtype].prompts) if not r.gen_equal]
    assert not bad, f"greedy 64-token continuations differ from llama.cpp's: {bad}"
