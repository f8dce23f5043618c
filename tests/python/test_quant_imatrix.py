"""Our importance-weighted quantizers (src/formats/blocks_weighted.cpp, driven through
build/tests/quant_weighted_tool) must write the same BYTES as ggml's ggml_quantize_chunk given an imatrix:
what llama-quantize --imatrix writes for q4_0 / q4_1 (and q8_0, which ignores the imatrix).

The witness is ggml itself: llama-cpp-python's libggml-base, loaded with ctypes; the tests that need it
are skipped when llama_cpp is not installed (the `ggml` fixture: files that import this one keep their
other tests).
"""

import ctypes
import pathlib
import subprocess

import numpy as np
import pytest

from ggml_quantizers import TYPES, ggml_quantize, load_ggml
from conftest import tool
from our_quantizers import ours_weighted

SEED = 20240611
# ggml.h's enum ggml_type, and each type's block bytes for 32 values.


# ---------------------------------------------------------------------------------------------- ggml

@pytest.fixture(scope="module")
def ggml() -> ctypes.CDLL:
    return load_ggml()


def ours(name: str, x: np.ndarray, w: np.ndarray | None, tmp_path: pathlib.Path) -> bytes:
    return ours_weighted(name, x, w, tmp_path)


def assert_same_bytes(a_bytes: bytes, b_bytes: bytes, name: str, x: np.ndarray, w, what: str) -> None:
    _, block_bytes, _ = TYPES[name]
    a, b = np.frombuffer(a_bytes, np.uint8), np.frombuffer(b_bytes, np.uint8)
    assert a.size == b.size, f"{what}: {a.size} bytes != {b.size}"
    bad = np.flatnonzero(a != b)
    if bad.size:
        blk = bad[0] // block_bytes
        flat = x.ravel()
        col = blk * 32 % x.shape[1]
        pytest.fail(f"{what} (seed {SEED}): {bad.size} of {a.size} bytes differ in "
                    f"{np.unique(bad // block_bytes).size} blocks; first in block {blk}\n"
                    f"  input   {flat[blk * 32:(blk + 1) * 32].tolist()}\n"
                    f"  weights {None if w is None else w[col:col + 32].tolist()}\n"
                    f"  ours    {a[blk * block_bytes:(blk + 1) * block_bytes].tobytes().hex()}\n"
                    f"  ggml    {b[blk * block_bytes:(blk + 1) * block_bytes].tobytes().hex()}")


# ---------------------------------------------------------------------------------------------- inputs

def imatrix_like(rng: np.random.Generator, n: int, zero_fraction: float = 0.0) -> np.ndarray:
    """An imatrix row: per input channel the mean of squared activations over many tokens. Channel scales
    are log-normal (spread over ~3 decades), with a few outlier channels 100x hotter, as real activations
    have; some channels can be exactly 0 (never activated, e.g. dead experts' inputs)."""
    scale = np.exp(rng.normal(0.0, 1.2, n))
    act = rng.standard_normal((64, n)) * scale
    w = (act * act).mean(axis=0)
    hot = rng.random(n) < 0.01
    w[hot] *= 100.0
    w[rng.random(n) < zero_fraction] = 0.0
    return w.astype(np.float32)


def weight_matrix(rng: np.random.Generator, rows: int, cols: int, kind: str) -> np.ndarray:
    if kind == "normal":  # per-row scale, like a trained linear layer
        x = rng.standard_normal((rows, cols)) * 10.0 ** rng.uniform(-3, 0, (rows, 1))
    elif kind == "outliers":  # heavy tails plus a few huge single weights
        x = rng.standard_t(3.0, (rows, cols)) * 0.02
        mask = rng.random((rows, cols)) < 0.002
        x[mask] *= rng.uniform(20, 200, mask.sum())
    elif kind == "offset":  # blocks whose values sit away from 0 (q4_1's min, clamped to <= 0 with weights)
        x = rng.standard_normal((rows, cols)) * 0.1 + rng.uniform(-1, 1, (rows, cols // 32)).repeat(32, axis=1)
    elif kind == "wide":  # every block on its own scale, 10^-6 .. 10^4
        x = rng.standard_normal((rows, cols)) * 10.0 ** rng.uniform(-6, 4, (rows, cols // 32)).repeat(32, axis=1)
    else:
        raise ValueError(kind)
    return x.astype(np.float32)


def edge_matrix(rng: np.random.Generator) -> np.ndarray:
    """Rows of 128 with blocks on the quantizers' special cases."""
    blocks = [np.zeros(32), np.full(32, 0.5), np.full(32, -0.5), np.full(32, 1e-16),  # below GROUP_MAX_EPS
              rng.standard_normal(32) * 1e-14, np.abs(rng.standard_normal(32)),  # all positive: m clamps to 0
              -np.abs(rng.standard_normal(32)), np.where(np.arange(32) == 7, 3.0, 0.0),
              np.where(np.arange(32) == 7, -3.0, 0.0), np.tile([1.0, -1.0], 16),  # equal |x|, both signs
              np.arange(32) - 16.0, (np.arange(32) - 16.0) / 8.0,  # exact grids: ties in nearest_int
              rng.integers(-8, 8, 32) * 0.25, rng.integers(0, 16, 32) * 0.125,
              rng.standard_normal(32) * 2.0 ** -20, rng.standard_normal(32) * 60000.0 / 8]
    x = np.concatenate(blocks)
    x = np.concatenate([x, np.zeros((-x.size) % 128)])
    return x.reshape(-1, 128).astype(np.float32)


def cases():
    """(id, rows, cols, data kind, weight kind): 32..4096 columns, four data shapes, five weightings."""
    out = []
    for cols, rows in ((32, 64), (64, 48), (96, 32), (256, 16), (288, 16), (1024, 8), (4096, 6)):
        for kind in ("normal", "outliers", "offset", "wide"):
            out.append(pytest.param(f"{kind}-{rows}x{cols}", rows, cols, kind, id=f"{kind}-{rows}x{cols}"))
    return out


WEIGHTINGS = ("imatrix", "imatrix-zeros", "uniform", "sparse", "none")


def weights_for(rng: np.random.Generator, how: str, cols: int) -> np.ndarray | None:
    if how == "imatrix":
        return imatrix_like(rng, cols)
    if how == "imatrix-zeros":
        w = imatrix_like(rng, cols, zero_fraction=0.2)
        w[:32] = 0.0  # a whole block with no importance: q4_0's fit has suml2 == 0, q4_1's D == 0
        return w
    if how == "uniform":
        return np.ones(cols, np.float32)
    if how == "sparse":  # nearly all importance on a handful of channels, the rest tiny
        w = np.full(cols, 1e-6, np.float32)
        w[rng.choice(cols, max(1, cols // 64), replace=False)] = rng.uniform(1, 1e4, max(1, cols // 64))
        return w
    return None


# ---------------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("name", ["q4_0", "q4_1"])
@pytest.mark.parametrize("case_id,rows,cols,kind", cases())
def test_weighted_matches_ggml(name, case_id, rows, cols, kind, ggml, tmp_path):
    rng = np.random.default_rng([SEED, rows, cols, ["normal", "outliers", "offset", "wide"].index(kind)])
    x = weight_matrix(rng, rows, cols, kind)
    for how in WEIGHTINGS:
        w = weights_for(rng, how, cols)
        assert_same_bytes(ours(name, x, w, tmp_path), ggml_quantize(ggml, name, x, w), name, x, w,
                          f"{name} {case_id} weights={how}")


@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q8_0"])
def test_edge_blocks_match_ggml(name, ggml, tmp_path):
    rng = np.random.default_rng(SEED + 1)
    x = edge_matrix(rng)
    for how in WEIGHTINGS:
        w = weights_for(rng, how, x.shape[1])
        assert_same_bytes(ours(name, x, w, tmp_path), ggml_quantize(ggml, name, x, w), name, x, w,
                          f"{name} edge blocks weights={how}")
    # Rows of all zeros: sigma2 = 0, so every weight is 0 as well.
    z = np.zeros((3, 64), np.float32)
    w = imatrix_like(rng, 64)
    assert_same_bytes(ours(name, z, w, tmp_path), ggml_quantize(ggml, name, z, w), name, z, w,
                      f"{name} zero rows")


def test_q8_0_ignores_weights(ggml, tmp_path):
    rng = np.random.default_rng(SEED + 2)
    x = weight_matrix(rng, 16, 512, "outliers")
    w = imatrix_like(rng, 512)
    ref = ggml_quantize(ggml, "q8_0", x, None)
    assert ggml_quantize(ggml, "q8_0", x, w) == ref
    assert_same_bytes(ours("q8_0", x, w, tmp_path), ref, "q8_0", x, w, "q8_0 with weights")


def test_weights_change_the_bytes(ggml, tmp_path):
    # Guards the witness itself: if the imatrix were silently dropped on either side, the byte comparisons
    # above would still pass against the plain quantizer.
    rng = np.random.default_rng(SEED + 3)
    x = weight_matrix(rng, 8, 1024, "normal")
    w = imatrix_like(rng, 1024)
    for name in ("q4_0", "q4_1"):
        plain, weighted = ggml_quantize(ggml, name, x, None), ggml_quantize(ggml, name, x, w)
        diff = np.count_nonzero(np.frombuffer(plain, np.uint8) != np.frombuffer(weighted, np.uint8))
        assert diff > len(plain) // 4, f"{name}: only {diff} of {len(plain)} bytes differ with an imatrix"
        assert ours(name, x, w, tmp_path) == weighted


@pytest.mark.parametrize("args", [
    ["q4_0", "x", "-:31", "o"],     # not whole blocks
    ["q4_0", "x", "-:0", "o"],
    ["q4_0", "x", "-:abc", "o"],
    ["iq2_xs", "x", "-:256", "o"],     # unsupported type
    ["q4_0", "x", "w33", "o"],      # weights not whole blocks
    ["q4_0", "x", "missing", "o"],  # weights absent
    ["q4_0", "x100", "-:32", "o"],  # rows not whole
])
def test_tool_rejects_bad_input(args, tmp_path):
    np.zeros(64, np.float32).tofile(tmp_path / "x")
    np.zeros(100, np.float32).tofile(tmp_path / "x100")
    np.zeros(33, np.float32).tofile(tmp_path / "w33")
    r = subprocess.run([str(tool("quant_weighted_tool")), *[str(tmp_path / a) if a[0] in "xwmo" else a
                                                            for a in args]],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("quant_weighted_tool: "), r.stderr
