"""qrun --perplexity and --kl-divergence on small synthetic models (make_tiny_model.py) against the numpy
llama of reference_forward.py scored with llama-perplexity's method, written here from its description:

  tokens = tokenize(text) with BOS when the vocabulary adds it; n_chunk = len(tokens) // n_ctx;
  each chunk runs from an empty cache with its first token replaced by BOS (when added); positions
  first = n_ctx // 2 .. n_ctx - 2 predict their next token; PPL = exp(mean nll), and the error
  estimate is PPL * sqrt((E[nll^2] - E[nll]^2) / (count - 1)).

The tiny models' vocabulary is the 256 bytes (token i = byte i) with one merge ("a b"), so a text
without the letter a tokenizes to its bytes and the reference needs no tokenizer.

Tolerance: the reference reproduces the engine's activation rounding and f16 cache, leaving float32
summation order, ~1e-5 of the logit range on f32 weights (test_forward_numpy.py); through log-softmax
and the mean that moves ln PPL by ~1e-6, so PPL agrees to 1e-4 relative with a wide margin.

KL divergence: the base file is llama.cpp's own format (checked field by field here), a model against
itself gives KLD ~ 0 (only the 16-bit rounding of the saved log-probs) and 100% top-1 agreement, and
the q8_0 quantization of the same weights gives a small positive KLD.
"""

from __future__ import annotations

import math
import os
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest

import make_tiny_model as tiny
import reference_forward as ref

REPO = pathlib.Path(os.environ.get("QE_SOURCE", pathlib.Path(__file__).resolve().parents[2]))
BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))

SEED = 4321
N_CTX = 64
N_TOKENS = 5 * N_CTX + 17  # 5 chunks (31 scored positions each: 155 >= llama.cpp's 100 for statistics)
BOS = 1


def qrun() -> pathlib.Path:
    path = BIN / "qrun"
    if not path.exists():
        pytest.skip(f"{path} is not built (set QE_BIN)")
    return path


def run(*args, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(qrun()), *map(str, args)], capture_output=True, timeout=300)
    if ok:
        assert proc.returncode == 0, f"qrun {' '.join(map(str, args))}: {proc.stderr.decode(errors='replace')}"
    return proc


def set_add_bos(path: pathlib.Path, value: bool) -> None:
    """Flips tokenizer.ggml.add_bos_token in place (the field exists; gguf-py maps the file writable)."""
    import gguf
    r = gguf.GGUFReader(str(path), "r+")
    field = r.get_field("tokenizer.ggml.add_bos_token")
    field.parts[field.data[0]][0] = value
    del r


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("ppl")
    out = {"f32": d / "f32.gguf", "q8_0": d / "q8_0.gguf", "f32_bos": d / "f32_bos.gguf"}
    # Untied: the output matrix has weights of std 1/sqrt(dim), so logits are O(1) and the PPL is that of a
    # plausible model (the tied tiny models' logits span ~70, which the base file's 16-nat floor would clip).
    tiny.write_model(str(out["f32"]), tiny.TinySpec(wtype="f32", tied=False))
    # same seed and shapes: the same f32 weights, quantized
    tiny.write_model(str(out["q8_0"]), tiny.TinySpec(wtype="q8_0", tied=False))
    shutil.copy(out["f32"], out["f32_bos"])
    set_add_bos(out["f32_bos"], True)
    return out


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> tuple[pathlib.Path, list[int]]:
    rng = np.random.default_rng(SEED)
    alphabet = np.frombuffer(b"bcdefghijklmnopqrstuvwxyz      ,.\n", dtype=np.uint8)
    data = bytes(rng.choice(alphabet, size=N_TOKENS)).replace(b"\n\n", b"\n.")
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_bytes(data + b"\n")  # the trailing newline is dropped, as llama.cpp reads -f
    return path, list(data)


def reference_ppl(model: pathlib.Path, tokens: list[int], add_bos: bool, n_chunks: int | None = None):
    """(running PPL after each chunk, final PPL, its error) with llama-perplexity's method."""
    m = ref.load_model(str(model))
    tokens = ([BOS] if add_bos else []) + tokens
    n_chunk = len(tokens) // N_CTX if n_chunks is None else min(n_chunks, len(tokens) // N_CTX)
    first = N_CTX // 2
    nll = []
    running = []
    for i in range(n_chunk):
        chunk = tokens[i * N_CTX:(i + 1) * N_CTX]
        inp = ([BOS] + chunk[1:]) if add_bos else chunk
        logits = ref.forward(m, inp, act_quant=True, cache_f16=True)
        for j in range(first, N_CTX - 1):
            row = logits[j]
            lse = row.max() + math.log(np.exp(row - row.max()).sum())
            nll.append(lse - row[chunk[j + 1]])
        running.append(math.exp(np.mean(nll)))
    v = np.array(nll)
    mean, var = v.mean(), (v * v).mean() - v.mean() ** 2
    return running, math.exp(mean), math.sqrt(var / (len(v) - 1)) * math.exp(mean)


def parse_ppl(stdout: str):
    lines = stdout.strip().splitlines()
    running = [float(x) for x in re.findall(r"\[\d+\]([0-9.]+),", lines[0])]
    m = re.fullmatch(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", lines[-1])
    assert m, f"last line is not llama.cpp's final estimate: {lines[-1]!r}"
    return running, float(m.group(1)), float(m.group(2))


@pytest.mark.parametrize("variant", ["f32", "f32_bos"])
def test_perplexity_matches_numpy(models, text, variant):
    path, tokens = text
    proc = run("-m", models[variant], "--perplexity", "-f", path, "-c", N_CTX, "-b", 24)
    running, ppl, err = parse_ppl(proc.stdout.decode())
    want_running, want_ppl, want_err = reference_ppl(models[variant], tokens, add_bos=variant == "f32_bos")
    print(f"{variant}: qrun {ppl} +/- {err}, numpy {want_ppl:.6f} +/- {want_err:.6f}")
    assert len(running) == len(want_running) == 5
    np.testing.assert_allclose(running, want_running, rtol=1e-4)
    assert ppl == pytest.approx(want_ppl, rel=1e-4)
    assert err == pytest.approx(want_err, rel=1e-3)
    # stdout is the results only: the running list and the final line.
    assert len(proc.stdout.decode().strip().splitlines()) == 2


def test_chunks_and_batch_size(models, text):
    path, tokens = text
    base = parse_ppl(run("-m", models["f32"], "--perplexity", "-f", path, "-c", N_CTX).stdout.decode())
    # the batch size (cut at n_ctx/2 or not) and the thread count do not change the bits
    for extra in (["-b", "1", "-t", "1"], ["-b", "7", "-t", "2"], ["-b", "33"]):
        got = parse_ppl(run("-m", models["f32"], "--perplexity", "-f", path, "-c", N_CTX, *extra).stdout.decode())
        assert got == base, extra
    running, ppl, _ = parse_ppl(run("-m", models["f32"], "--perplexity", "-f", path, "-c", N_CTX,
                                    "--chunks", 2).stdout.decode())
    want_running, want_ppl, _ = reference_ppl(models["f32"], tokens, add_bos=False, n_chunks=2)
    assert len(running) == 2 and running == base[0][:2]
    assert ppl == pytest.approx(want_ppl, rel=1e-4)


def read_base(path: pathlib.Path) -> dict:
    """llama-perplexity's --kl-divergence-base layout: "_logits_", int32 n_ctx, n_vocab, n_chunk, the
    n_chunk * n_ctx tokens, then per chunk (n_ctx - 1 - n_ctx/2) rows of nv = 2*((n_vocab+1)/2) + 4 uint16:
    float scale, float min_log_prob, then the quantized log-probs."""
    raw = path.read_bytes()
    assert raw[:8] == b"_logits_"
    n_ctx, n_vocab, n_chunk = np.frombuffer(raw, dtype=np.int32, count=3, offset=8)
    tokens = np.frombuffer(raw, dtype=np.int32, count=n_chunk * n_ctx, offset=20)
    nv = 2 * ((n_vocab + 1) // 2) + 4
    rows = np.frombuffer(raw, dtype=np.uint16, offset=20 + 4 * n_chunk * n_ctx).reshape(n_chunk, -1, nv)
    assert rows.shape[1] == n_ctx - 1 - n_ctx // 2
    head = rows[:, :, :4].copy().view(np.float32)  # (chunk, row, 2): scale, min_log_prob
    log_p = head[:, :, :1] * rows[:, :, 4:4 + n_vocab].astype(np.float32) + head[:, :, 1:2]
    return {"n_ctx": int(n_ctx), "n_vocab": int(n_vocab), "n_chunk": int(n_chunk), "tokens": tokens.tolist(),
            "scale": head[:, :, 0], "log_p": log_p}


def kl_stats(stdout: str) -> dict:
    def value(label: str) -> float:
        m = re.search(re.escape(label) + r"\s*:\s*(-?[0-9.]+)", stdout)
        assert m, f"no {label!r} in:\n{stdout}"
        return float(m.group(1))
    return {"kld": value("Mean    KLD"), "ppl_q": value("Mean PPL(Q)"), "ppl_base": value("Mean PPL(base)"),
            "ratio": value("Mean PPL(Q)/PPL(base)"), "same_top": value("Same top p")}


@pytest.fixture(scope="module")
def base_file(models, text, tmp_path_factory) -> tuple[pathlib.Path, float]:
    path, _ = text
    out = tmp_path_factory.mktemp("kl") / "f32.kld"
    proc = run("-m", models["f32"], "--perplexity", "-f", path, "-c", N_CTX, "--kl-divergence-base", out)
    return out, parse_ppl(proc.stdout.decode())[1]


def test_base_file_is_llama_cpps_format(models, text, base_file):
    path, tokens = text
    b = read_base(base_file[0])
    assert (b["n_ctx"], b["n_vocab"], b["n_chunk"]) == (N_CTX, 256, 5)
    assert b["tokens"] == tokens[:5 * N_CTX]  # the text's tokens, not the BOS-replaced inputs
    m = ref.load_model(str(models["f32"]))
    first = N_CTX // 2
    for i in (0, 4):
        logits = ref.forward(m, tokens[i * N_CTX:(i + 1) * N_CTX], act_quant=True, cache_f16=True)
        rows = logits[first:N_CTX - 1]
        want = rows - rows.max(axis=1, keepdims=True)
        want = want - np.log(np.exp(want).sum(axis=1, keepdims=True))
        floor = want.max(axis=1, keepdims=True) - 16  # llama.cpp clamps below max - 16
        got = b["log_p"][i]
        tol = b["scale"][i][:, None] / 2 + 1e-4
        assert np.all(np.abs(got - np.maximum(want, floor)) <= tol), f"chunk {i}"


def test_kl_divergence_against_itself_is_zero(models, base_file):
    proc = run("-m", models["f32"], "--kl-divergence", "--kl-divergence-base", base_file[0])
    s = kl_stats(proc.stdout.decode())
    print(s)
    assert abs(s["kld"]) < 1e-4, s        # only the 16-bit rounding of the saved log-probs
    assert s["same_top"] == 100.0, s
    assert s["ratio"] == pytest.approx(1.0, abs=1e-4)
    assert s["ppl_q"] == pytest.approx(base_file[1], rel=1e-4)


def test_kl_divergence_of_q8_0_is_small_and_positive(models, base_file):
    self_kld = kl_stats(run("-m", models["f32"], "--kl-divergence", "--kl-divergence-base",
                            base_file[0]).stdout.decode())["kld"]
    s = kl_stats(run("-m", models["q8_0"], "--kl-divergence", "--kl-divergence-base", base_file[0]).stdout.decode())
    print(s)
    assert 10 * abs(self_kld) < s["kld"] < 0.05, s
    assert s["same_top"] >= 80.0, s
    assert s["ppl_base"] == pytest.approx(base_file[1], rel=1e-3)


@pytest.mark.parametrize("args, message", [
    (["--perplexity", "-f", "{short}", "-c", "64"], "at least 128 tokens"),
    (["--kl-divergence"], "--kl-divergence-base"),
    (["--kl-divergence", "--kl-divergence-base", "{short}"], "_logits_"),
    (["--perplexity", "-f", "{short}", "-cnv"], "separate modes"),
    (["-p", "x", "--chunks", "2"], "--chunks"),
])
def test_bad_input_is_one_line_and_exit_1(models, tmp_path, args, message):
    short = tmp_path / "short.txt"
    short.write_text("hello world " * 5)
    proc = run("-m", models["f32"], *[a.replace("{short}", str(short)) for a in args], ok=False)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 1, err
    assert proc.stdout == b""
    lines = [line for line in err.strip().splitlines() if line.startswith("qrun: ") and not line.startswith(
        ("qrun: model ", "qrun: kernels", "qrun: perplexity: tokenization"))]
    assert len(lines) == 1 and message.lower() in lines[0].lower(), err
