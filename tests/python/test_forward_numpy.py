"""qrun's forward pass against a numpy llama written from the maths (reference_forward.py), on small
synthetic GGUFs (make_tiny_model.py) in every weight type.

qrun runs a fixed token-id prompt with --dump-logits (the f32 logits of every position); numpy runs the
same ids. The reference dequantizes the weights with gguf-py, so weight quantization is not an error
source: both sides multiply by the same values. It also rounds each matmul input the way the engine
quantizes activations (q8_0 / q8_1 with its fp16 block sum / q8_K), so what is left is
  (a) float32 accumulation in a different order: ~1e-7 relative per dot, measured |Δ| <= 1e-5 on logits
      spanning ~70, i.e. ~1e-7 of the range;
  (b) where (a) moves an activation across a q8 rounding boundary, one quant step (amax / 127 of its
      32-block, ~0.02 for O(1) activations) in one element, times a weight (~0.1-0.3): ~5e-3 on one
      pre-activation; in an early layer it is carried through the rest (the tiny models' output matrix
      has weights of std 1), measured up to 3.5e-3 of the range at one position (q4_1, f16 cache, AVX2:
      the ref ISA, which sums in another order, gives 0 there).
Tolerances as a fraction of the logit range (max - min over the whole dump):
  float weights (f32 activations, only (a)):    1e-4  (two orders above (a))
  quantized weights (q8 activations, (a)+(b)):  1e-2  (about three flips)
and since flips are rare, at least 80% of the positions must also be within the float tolerance, so a
missing or wrong activation quantization (which moves every position by ~0.4% of the range, see
test_reference_rounding_matters) still fails. The f16 KV cache is rounded identically in the reference
(from the f32 value, as the engine), so it uses the same figures.

Also checked: greedy argmax agrees wherever the reference's top-2 margin exceeds twice the tolerance;
logits do not depend on the batch size (-b 1 decode path = -b 5 prefill GEMM, bit for bit); threads do
not change the bits; and qrun's bad-input errors are one line and exit 1.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import numpy as np
import pytest

import make_tiny_model as tiny
import reference_forward as ref

REPO = pathlib.Path(os.environ.get("QE_SOURCE", pathlib.Path(__file__).resolve().parents[2]))
BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))

SEED = 1234
PROMPT = [int(t) for t in np.random.default_rng(SEED).integers(0, 256, size=23)]

FLOAT_TOL, QUANT_TOL = 1e-4, 1e-2


VARIANTS = {
    # name: (spec, relative tolerance)
    "f32": (tiny.TinySpec(wtype="f32"), FLOAT_TOL),
    "f16": (tiny.TinySpec(wtype="f16"), FLOAT_TOL),
    "bf16": (tiny.TinySpec(wtype="bf16", tied=False), FLOAT_TOL),  # the f32 path; vdpbf16ps: test_bf16_dot
    "q8_0": (tiny.TinySpec(wtype="q8_0"), QUANT_TOL),
    "q4_0": (tiny.TinySpec(wtype="q4_0", n_kv_heads=4, tied=False), QUANT_TOL),
    "q4_1": (tiny.TinySpec(wtype="q4_1"), QUANT_TOL),
    "q4_1_untied_mha": (tiny.TinySpec(wtype="q4_1", n_kv_heads=4, tied=False), QUANT_TOL),
    "q4_0_q6k_out": (tiny.TinySpec(wtype="q4_0", dim=256, n_ff=256, q6k_output=True), QUANT_TOL),
    "f32_rope_scaled": (tiny.TinySpec(wtype="f32", rope_scale=2.0, rope_freqs=True), FLOAT_TOL),
}


def qrun() -> pathlib.Path:
    path = BIN / "qrun"
    if not path.exists():
        pytest.skip(f"{path} is not built (set QE_BIN)")
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("tiny")
    out = {}
    for name, (spec, _) in VARIANTS.items():
        out[name] = d / f"{name}.gguf"
        tiny.write_model(str(out[name]), spec)
    return out


def dump_logits(model: pathlib.Path, tmp: pathlib.Path, *extra: str, tokens=PROMPT) -> np.ndarray:
    out = tmp / "logits.f32"
    args = [str(qrun()), "-m", str(model), "--token-ids", ",".join(map(str, tokens)), "-n", "0",
            "--dump-logits", str(out), "-c", "64", *extra]
    proc = subprocess.run(args, capture_output=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(args)}: {proc.stderr.decode(errors='replace')}"
    return np.fromfile(out, dtype=np.float32).reshape(len(tokens), -1)


@pytest.fixture(scope="module")
def bf16_dot(models) -> bool:
    """Whether qrun computes bf16 weights with vdpbf16ps, whose activations are rounded to bf16
    (kernels/interleaved.h): AVX-512 with AVX512_BF16 where it pays, not on Intel's cores
    (kernels/kernel_tables.h); every other case keeps the exact f32 path. Its kernels line says which."""
    args = [str(qrun()), "-m", str(models["bf16"]), "--token-ids", str(PROMPT[0]), "-n", "0", "-c", "64"]
    proc = subprocess.run(args, capture_output=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(args)}: {proc.stderr.decode(errors='replace')}"
    return b"vdpbf16ps" in proc.stderr


@pytest.mark.parametrize("cache", ["f32", "f16"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_logits_match_numpy(models, bf16_dot, tmp_path, name, cache):
    spec, rel_tol = VARIANTS[name]
    exact_bf16 = ("--isa", "avx2") if name == "bf16" and bf16_dot else ()  # f32 activations
    got = dump_logits(models[name], tmp_path, "--cache-type", cache, "-b", "5", *exact_bf16)
    want = ref.forward(ref.load_model(str(models[name])), PROMPT, act_quant=True, cache_f16=(cache == "f16"))
    assert got.shape == want.shape
    span = float(want.max() - want.min())
    err = np.abs(got - want)
    tol = rel_tol * span
    worst = np.unravel_index(np.argmax(err), err.shape)
    print(f"{name} cache {cache}: max |d| = {err.max():.3g} (range {span:.3g}, tol {tol:.3g}) at {worst}")
    assert err.max() <= tol, (f"{name} (seed {SEED}): max |Δ| {err.max():.4g} at position {worst[0]}, token "
                              f"{worst[1]}: qrun {got[worst]:.6g}, numpy {want[worst]:.6g}; tol {tol:.4g}")
    exact = err.max(axis=1) <= FLOAT_TOL * span
    assert exact.mean() >= 0.8, f"{name} (seed {SEED}): only {exact.sum()} of {len(exact)} positions within " \
                                f"{FLOAT_TOL} of the range: per-position max |Δ| {err.max(axis=1)}"
    # Greedy choice: identical wherever numpy's top two are clearly apart.
    top2 = np.sort(want, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * tol
    assert clear.sum() >= len(PROMPT) // 2, "too few positions with a clear winner to test argmax"
    np.testing.assert_array_equal(got.argmax(axis=1)[clear], want.argmax(axis=1)[clear])


@pytest.mark.parametrize("cache", ["f32", "f16"])
def test_bf16_dot_matches_numpy_with_bf16_activations(models, bf16_dot, tmp_path, cache):
    """vdpbf16ps rounds each bf16 matmul's input to bf16; the reference rounds it the same way. Like q8
    rounding this flips now and then ((b) above; measured: about half the prompts exact to 6e-8 of the
    range, the rest up to 2e-3), and a flip in an early K/V entry moves every later position, so only
    the quantized tolerance and the clear argmaxes are checked here."""
    if not bf16_dot:
        pytest.skip("qrun computes bf16 in f32 here (no AVX512_BF16, or a CPU where vdpbf16ps does not pay)")
    got = dump_logits(models["bf16"], tmp_path, "--cache-type", cache, "-b", "5")
    want = ref.forward(ref.load_model(str(models["bf16"])), PROMPT, act_quant=True, cache_f16=(cache == "f16"),
                       bf16_act=True)
    span = float(want.max() - want.min())
    err = np.abs(got - want)
    assert err.max() <= QUANT_TOL * span, f"bf16 dot (seed {SEED}): max |Δ| {err.max():.4g}, range {span:.4g}"
    top2 = np.sort(want, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * QUANT_TOL * span
    np.testing.assert_array_equal(got.argmax(axis=1)[clear], want.argmax(axis=1)[clear])


def test_reference_rounding_matters(models, tmp_path):
    """The q8 activation rounding the reference applies is a real effect: without it numpy is further
    from qrun than with it (so the tolerance is not hiding a missing quantization)."""
    m = ref.load_model(str(models["q4_1"]))
    got = dump_logits(models["q4_1"], tmp_path, "--cache-type", "f32")
    with_q = np.abs(got - ref.forward(m, PROMPT, act_quant=True)).max()
    without_q = np.abs(got - ref.forward(m, PROMPT, act_quant=False)).max()
    assert with_q < without_q / 100, f"with rounding {with_q:.3g}, without {without_q:.3g}"


@pytest.mark.parametrize("name", ["q4_1", "f16", "q4_0_q6k_out"])
def test_batch_size_and_threads_do_not_change_bits(models, tmp_path, name):
    base = dump_logits(models[name], tmp_path, "-b", "64", "-t", "1")
    for extra in (["-b", "1", "-t", "1"], ["-b", "5", "-t", "2"], ["-b", "7", "-t", "3"]):
        np.testing.assert_array_equal(dump_logits(models[name], tmp_path, *extra), base, err_msg=" ".join(extra))


def test_greedy_generation_follows_the_reference(models, tmp_path):
    """qrun --temp 0 -n 6 appends the reference's argmax token at each step (where it is clear)."""
    model = models["f32"]
    m = ref.load_model(str(model))
    args = [str(qrun()), "-m", str(model), "--token-ids", ",".join(map(str, PROMPT[:8])), "-n", "6",
            "--temp", "0", "-c", "64", "-v"]
    proc = subprocess.run(args, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    tokens = list(PROMPT[:8])
    for _ in range(6):
        logits = ref.forward(m, tokens, act_quant=True)[-1]
        tokens.append(int(np.argmax(logits)))
    # stdout is the prompt and the generated text and a newline. Token i of the byte vocabulary is byte i,
    # streamed as UTF-8 with U+FFFD for what cannot be decoded, as Python's errors="replace".
    assert proc.stdout == bytes(tokens).decode("utf-8", errors="replace").encode("utf-8") + b"\n"


@pytest.mark.parametrize("args, message", [
    (["-m", "/nonexistent.gguf", "-p", "x"], "No such file"),
    (["-m", "/", "-p", "x"], "directory"),
    (["-m", "{bad}", "-p", "x"], "GGUF"),
    (["-m", "{tiny}", "--token-ids", ",".join(["3"] * 100), "-c", "16"], "longer than the context"),
    (["-m", "{tiny}", "--token-ids", "999"], "outside the vocabulary"),
    (["-m", "{tiny}", "-p", "x", "--cache-type", "q8_0"], "cache-type"),
])
def test_bad_input_is_one_line_and_exit_1(models, tmp_path, args, message):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    args = [a.replace("{tiny}", str(models["q4_0"])).replace("{bad}", str(bad)) for a in args]
    proc = subprocess.run([str(qrun()), *args], capture_output=True, timeout=60)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 1, err
    assert proc.stdout == b""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qrun: ") and message.lower() in lines[0].lower(), err
