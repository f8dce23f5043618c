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

Also the sampler's logit bias and penalties (repeat, frequency, presence, in their window): greedy
continuations with them, qrun's flags (llama-cli's names) against llama.cpp's own samplers
(llama_sampler_init_logit_bias and llama_sampler_init_penalties, chained as common_sampler chains them),
token for token.

Skips only when llama_cpp is not importable (scripts/compare-llamacpp.sh installs it, built from source);
the type checks also when llama-quantize is not built.
The whole comparison runs once (llamacpp_compare.compare); each check is one test. The Markdown table is
written to $QE_PARITY_TABLE (scripts/compare-llamacpp.sh prints it), else to build/llamacpp-parity.md.
"""

from __future__ import annotations

import math
import os
import pathlib
import re
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


# ---- The sampler's logit bias and penalties against llama.cpp's. Greedy, so that only the bias and the
# penalties decide between tokens; with --numerics llama.cpp the logits are llama.cpp's bits, so any
# difference in the penalties' arithmetic, window or order shows as a different token. -1 for the window
# is the whole context (llama-cli passes n_ctx for it).

PENALTY_PROMPTS = ["The three most important inventions of the nineteenth century were",
                   "List every planet of the solar system, one per line:\n"]
PENALTY_SETTINGS = [
    dict(repeat=1.25, last_n=48, freq=0.6, present=0.4, bias=[(260, -math.inf), (33615, 3.0), (13, -1.5)]),
    dict(repeat=1.0, last_n=-1, freq=-0.3, present=1.1, bias=[(28, 2.5), (198, -0.75)]),
]
PENALTY_N = 64


def _llama_greedy_sampled(llm, prompt: list[int], setting: dict) -> list[int]:
    import llama_cpp
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    bias = setting["bias"]
    arr = (llama_cpp.llama_logit_bias * len(bias))(*[llama_cpp.llama_logit_bias(t, b) for t, b in bias])
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_logit_bias(llm.n_vocab(), len(bias), arr))
    last_n = setting["last_n"] if setting["last_n"] >= 0 else cmp.N_CTX
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_penalties(
        last_n, setting["repeat"], setting["freq"], setting["present"]))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
    for t in prompt:  # llama-cli accepts the prompt's tokens too
        llama_cpp.llama_sampler_accept(chain, t)
    llm.reset()
    llm.eval(prompt)
    out: list[int] = []
    while len(out) < PENALTY_N:
        tok = int(llama_cpp.llama_sampler_sample(chain, llm.ctx, -1))  # also accepts it
        if cmp.llama_is_eog(llm, tok):
            break
        out.append(tok)
        llm.eval([tok])
    llama_cpp.llama_sampler_free(chain)
    return out


@pytest.fixture(scope="module")
def parity_llm(default_model):
    llm = cmp.load_llama(default_model)
    yield llm
    llm.close()


@pytest.mark.parametrize("setting", range(len(PENALTY_SETTINGS)))
@pytest.mark.parametrize("prompt", range(len(PENALTY_PROMPTS)))
def test_llamacpp_penalties_and_logit_bias(parity_llm, default_model, prompt, setting):
    if not (BIN / "qrun").exists():
        pytest.fail(f"{BIN / 'qrun'} is not built (set QE_BIN)")
    st = PENALTY_SETTINGS[setting]
    text = PENALTY_PROMPTS[prompt]
    want = _llama_greedy_sampled(parity_llm, cmp.llama_tokenize(parity_llm, text), st)
    bias_flags = [a for t, b in st["bias"] for a in ("-l", f"{t}{'-inf' if b == -math.inf else f'{b:+g}'}")]
    q = cmp.run_qrun(BIN / "qrun", "-m", default_model, "-p", text, "-n", PENALTY_N, "--temp", "0",
                     "-t", cmp.N_THREADS, "-c", cmp.N_CTX, "--numerics", "llama.cpp", "--verbose",
                     "--repeat-penalty", st["repeat"], "--repeat-last-n", st["last_n"],
                     "--frequency-penalty", st["freq"], "--presence-penalty", st["present"], *bias_flags)
    assert q.returncode == 0, q.stderr.decode(errors="replace")[-2000:]
    got = _generated_ids(q)
    plain = cmp.run_qrun(BIN / "qrun", "-m", default_model, "-p", text, "-n", PENALTY_N, "--temp", "0",
                         "-t", cmp.N_THREADS, "-c", cmp.N_CTX, "--numerics", "llama.cpp", "--verbose")
    assert got != _generated_ids(plain), "the setting changes nothing: a test that could not fail"
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    assert got == want, f"qrun and llama.cpp part at generated token {first}"


def _generated_ids(q: subprocess.CompletedProcess) -> list[int]:
    g = re.search(r"^qrun: generated: (\d+) tokens:([ \d]*)$", q.stderr.decode(errors="replace"), re.M)
    assert g, q.stderr.decode(errors="replace")[-2000:]
    return [int(t) for t in g.group(2).split()]
