"""qrun matches llama.cpp (llama-cpp-python, built for the AVX2 level) on the default model
(SmolLM2-135M-Instruct Q4_1), with qrun --numerics llama.cpp: the same prompt tokens and the same greedy
128-token continuations of 16 varied prompts (ids and text), and logits with llama.cpp's float32 bits (Δ = 0,
compared bit for bit) at every compared position: each prompt position (the prompt in one batch), each decode
step of the continuation (one token at a time), and the 512 positions of the perplexity text's first chunk in
one batch. With the default, fast numerics, judged statistically on a ~24k-token text (-c 512): perplexity
within 0.5% of llama.cpp's, and on the scored positions of the first 20 chunks a mean KL divergence from
llama.cpp's logits <= 0.005 with the same top-1 token at >= 95% of them.

Also, for q5_0, q5_1, iq4_nl, q2_K, q3_K, q4_K, q5_K, q6_K and iq4_xs: llama-quantize's file of the type
(a synthetic model), every prompt position's logits identical to llama.cpp's, in a batch and one token at
a time.

Skips only when llama_cpp is not importable (scripts/compare-llamacpp.sh installs it, built from source);
the type checks also when llama-quantize is not built.
The whole comparison runs once (llamacpp_compare.compare); each check is one test. The Markdown table is
written to $QE_PARITY_TABLE (scripts/compare-llamacpp.sh prints it), else to build/llamacpp-parity.md.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import numpy as np
import pytest

from conftest import optional_reference, synthetic_llama

optional_reference("llama_cpp")

import llamacpp_compare as cmp  # noqa: E402

BIN = pathlib.Path(os.environ.get("QE_BIN", cmp.REPO / "build" / "bin"))


@pytest.fixture(scope="module")
def report(default_model):
    if not (BIN / "qrun").exists():
        pytest.fail(f"{BIN / 'qrun'} is not built (set QE_BIN)")
    rep = cmp.compare(default_model, BIN)
    table = rep.table()
    print("\n" + table)
    # Kept beside the binaries (CI runs this file once, through the README's test command) unless the
    # caller names a place.
    out = pathlib.Path(os.environ.get("QE_PARITY_TABLE") or BIN.parent / "llamacpp-parity.md")
    out.write_text(table)
    return rep


@pytest.mark.parametrize("name", cmp.check_names())
def test_parity(report, name):
    check = next(c for c in report.checks if c.name == name)
    assert check.ok, f"{name}: {check.detail}"


# ---- q5_0, q5_1, iq4_nl and the k-quants: llama.cpp-quantized files, logits equal to llama.cpp's bits.
# The synthetic `tiny` llama (scripts/make-synthetic-llama.py: dim 256, ff 512, 2 layers, vocab 512,
# untied) has every row a multiple of 256 (k-quants keep their type) and of 8 (q4_K and iq4_nl are
# repacked, as llama.cpp does for such matrices); llama-quantize --pure makes every matrix, embedding and
# output the one type. 11 prompt tokens in one batch give q4_K's repacked GEMM (tokens 0-7) and GEMV
# (8-10); with batches of one token every matrix takes llama.cpp's single-token path.

LLAMA_QUANTIZE = pathlib.Path(os.environ.get("QE_LLAMACPP_TOOLS", cmp.REPO / ".venv" / "llama.cpp-tools")) / "bin" \
    / "llama-quantize"
KQUANT_TYPES = ["Q6_K", "Q4_K", "Q5_0", "Q5_K", "Q5_1", "IQ4_NL", "Q3_K", "Q2_K", "IQ4_XS"]
KQUANT_IDS = [3, 97, 300, 45, 12, 511, 256, 7, 400, 199, 64]
KQUANT_CTX = 64


@pytest.fixture(scope="module")
def tiny_f32(tmp_path_factory):
    mod = synthetic_llama()
    path = tmp_path_factory.mktemp("kquant_parity") / "tiny-f32.gguf"
    mod.write_model(str(path), mod.SHAPES["tiny"], "tiny", "f32", 20240701)
    return path


def _llama_logits(model: pathlib.Path, n_batch: int) -> np.ndarray:
    from llama_cpp import Llama
    llm = Llama(str(model), n_ctx=KQUANT_CTX, n_batch=n_batch, n_ubatch=n_batch, n_threads=cmp.N_THREADS,
                n_threads_batch=cmp.N_THREADS, logits_all=True, seed=0, verbose=False)
    llm.eval(KQUANT_IDS)
    out = np.array(llm.scores[:len(KQUANT_IDS)], dtype=np.float32)
    llm.close()
    return out


@pytest.mark.parametrize("n_batch", [64, 1], ids=["batch", "single"])
@pytest.mark.parametrize("qtype", KQUANT_TYPES)
def test_llamacpp_quantized_logits_equal(tiny_f32, tmp_path, qtype, n_batch):
    """qrun --numerics llama.cpp on llama-quantize's --pure file of the type: every position's logits
    identical to llama.cpp's (Δ = 0)."""
    if not LLAMA_QUANTIZE.exists():
        pytest.skip(f"{LLAMA_QUANTIZE} is not built (scripts/build-llamacpp-tools.sh)")
    if not (BIN / "qrun").exists():
        pytest.fail(f"{BIN / 'qrun'} is not built (set QE_BIN)")
    model = tmp_path / f"tiny-{qtype}.gguf"
    p = subprocess.run([str(LLAMA_QUANTIZE), "--pure", str(tiny_f32), str(model), qtype, "2"], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    want = _llama_logits(model, n_batch)
    dump = tmp_path / "logits.f32"
    q = cmp.run_qrun(BIN / "qrun", "-m", model, "--token-ids", ",".join(map(str, KQUANT_IDS)), "-n", 0,
                     "-t", cmp.N_THREADS, "-c", KQUANT_CTX, "-b", n_batch, "--numerics", "llama.cpp",
                     "--dump-logits", dump)
    assert q.returncode == 0, q.stderr.decode(errors="replace")[-2000:]
    got = cmp.read_logits(dump, want.shape[1])
    assert got.shape == want.shape
    diff = np.abs(got.astype(np.float64) - want)
    print(f"{qtype} n_batch={n_batch}: max |Δ| {diff.max():.3g} over {got.size} logits")
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), \
        f"{qtype} n_batch={n_batch}: max |Δ| {diff.max():.3g}, {np.count_nonzero(diff)} of {got.size} logits differ"
