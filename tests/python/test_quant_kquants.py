"""Our k-quants (q2_K .. q6_K, src/formats/blocks_kquants*.cpp) against ggml itself, byte for byte:

- plain quantization (build/tests/quant_tool, the traits' from_float) == ggml_quantize_chunk with no imatrix;
- importance-weighted quantization (build/tests/quant_weighted_tool, one whole row at a time) ==
  ggml_quantize_chunk with an imatrix row, for several weightings, and with none;
- our dequantization (quant_tool dequantize) == ggml's to_float bit for bit, on ggml-made blocks and on
  random bytes with sane fp16 scales; gguf.quants (numpy) as a second witness.

The witness is llama-cpp-python's libggml-base (tests/python/ggml_quantizers.py); the tests that need it
are skipped when llama_cpp is not installed.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from our_quantizers import ours_dequantize, ours_plain, ours_weighted
from ggml_quantizers import TYPES, ggml_dequantize, ggml_quantize, load_ggml
from test_quant_imatrix import WEIGHTINGS, imatrix_like, weight_matrix, weights_for

SEED = 20240917
K_TYPES = ("q2_K", "q3_K", "q4_K", "q5_K", "q6_K")
QK_K = 256
KINDS = ("normal", "outliers", "offset", "wide")

# Byte offsets and counts of each block's fp16 scales (ggml-common.h): d, and dmin where the type has one.
FP16_FIELDS = {"q2_K": (80, 82), "q3_K": (108,), "q4_K": (0, 2), "q5_K": (0, 2), "q6_K": (208,)}


@pytest.fixture(scope="module")
def ggml() -> ctypes.CDLL:
    return load_ggml()


# ---------------------------------------------------------------------------------------------- ours

# ---------------------------------------------------------------------------------------------- checks

def assert_same_bytes(ours: bytes, ref: bytes, name: str, x: np.ndarray, w: np.ndarray | None, what: str) -> None:
    """Fails with the first differing super-block: its input, weights and both encodings."""
    _, block_bytes, block = TYPES[name]
    a, b = np.frombuffer(ours, np.uint8), np.frombuffer(ref, np.uint8)
    assert a.size == b.size, f"{what}: {a.size} bytes != {b.size}"
    bad = np.flatnonzero(a != b)
    if bad.size:
        blk = bad[0] // block_bytes
        col = blk * block % x.shape[1]
        pytest.fail(f"{what} (seed {SEED}): {bad.size} of {a.size} bytes differ in "
                    f"{np.unique(bad // block_bytes).size} blocks; first at byte {bad[0] % block_bytes} of block "
                    f"{blk}\n"
                    f"  input   {x.ravel()[blk * block:(blk + 1) * block].tolist()}\n"
                    f"  weights {None if w is None else w[col:col + block].tolist()}\n"
                    f"  ours    {a[blk * block_bytes:(blk + 1) * block_bytes].tobytes().hex()}\n"
                    f"  ggml    {b[blk * block_bytes:(blk + 1) * block_bytes].tobytes().hex()}")


def assert_same_floats(ours: np.ndarray, ref: np.ndarray, name: str, data: bytes, what: str) -> None:
    """Bit-for-bit float equality (so -0.0 != 0.0); fails with the first differing block's bytes."""
    _, block_bytes, block = TYPES[name]
    assert ours.shape == ref.shape, f"{what}: {ours.shape} != {ref.shape}"
    bad = np.flatnonzero(ours.view(np.uint32) != ref.view(np.uint32))
    if bad.size:
        blk = bad[0] // block
        pytest.fail(f"{what} (seed {SEED}): {bad.size} of {ours.size} values differ; first at value "
                    f"{bad[0] % block} of block {blk}: ours {ours[bad[0]]!r}, reference {ref[bad[0]]!r}\n"
                    f"  block {data[blk * block_bytes:(blk + 1) * block_bytes].hex()}")


# ---------------------------------------------------------------------------------------------- inputs

def edge_blocks(rng: np.random.Generator) -> np.ndarray:
    """One super-block (a row of 256) per special case of the k-quant searches."""
    i = np.arange(QK_K)
    g16 = np.repeat(10.0 ** rng.uniform(-6, 3, QK_K // 16), 16)
    blocks = [
        np.zeros(QK_K), np.full(QK_K, 0.5), np.full(QK_K, -0.5), np.full(QK_K, 1e-16),  # constants, below eps
        rng.standard_normal(QK_K) * 1e-14, rng.standard_normal(QK_K) * 1e-20,  # tiny: x^2 is subnormal or 0
        np.abs(rng.standard_normal(QK_K)), -np.abs(rng.standard_normal(QK_K)),  # one sign only
        np.where(i == 7, 3.0, 0.0), np.where(i == 200, -3.0, 0.0),  # one non-zero value
        np.where(i == 100, 50.0, rng.standard_normal(QK_K) * 0.01),  # one outlier in small data
        np.tile([1.0, -1.0], QK_K // 2),  # equal |x|, both signs
        (i % 32) - 16.0, ((i % 32) - 16.0) / 8.0,  # exact grids: ties in nearest_int
        rng.integers(-8, 8, QK_K) * 0.25, rng.integers(0, 16, QK_K) * 0.125, rng.integers(-4, 4, QK_K) * 1.0,
        rng.standard_normal(QK_K) * 2.0 ** -20, rng.standard_normal(QK_K) * 1e4,  # tiny and huge
        rng.standard_normal(QK_K) * 60000.0 / 8,
        np.where(i < 128, 0.0, rng.standard_normal(QK_K)),  # half the groups all zero
        np.where((i // 16) % 2 == 0, 0.0, rng.standard_normal(QK_K)),  # every other group of 16 zero
        rng.standard_normal(QK_K) * g16,  # every group on its own scale, 10^-6 .. 10^3
        np.repeat(rng.uniform(-2, 2, QK_K // 16), 16),  # constant within each group, not across
        np.repeat(rng.uniform(0.5, 2, QK_K // 32), 32) + rng.standard_normal(QK_K) * 1e-3,  # offsets, low noise
    ]
    return np.stack(blocks).astype(np.float32)


SHAPES = ((16, 256), (8, 512), (4, 2048), (3, 4096))


def matrix_cases():
    return [pytest.param(rows, cols, kind, id=f"{kind}-{rows}x{cols}") for rows, cols in SHAPES for kind in KINDS]


def data_rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([SEED, *key])


# ---------------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("name", K_TYPES)
@pytest.mark.parametrize("rows,cols,kind", matrix_cases())
def test_plain_matches_ggml(name, rows, cols, kind, ggml, tmp_path):
    x = weight_matrix(data_rng(rows, cols, KINDS.index(kind)), rows, cols, kind)
    ref = ggml_quantize(ggml, name, x, None)
    assert_same_bytes(ours_plain(name, x, tmp_path), ref, name, x, None, f"{name} plain {kind}-{rows}x{cols}")
    # The weighted entry point without importances must give the same bytes.
    assert_same_bytes(ours_weighted(name, x, None, tmp_path), ref, name, x, None,
                      f"{name} weighted(None) {kind}-{rows}x{cols}")


@pytest.mark.parametrize("name", K_TYPES)
@pytest.mark.parametrize("rows,cols,kind", matrix_cases())
def test_weighted_matches_ggml(name, rows, cols, kind, ggml, tmp_path):
    rng = data_rng(rows, cols, KINDS.index(kind), 1)
    x = weight_matrix(rng, rows, cols, kind)
    for how in WEIGHTINGS:
        w = weights_for(rng, how, cols)
        assert_same_bytes(ours_weighted(name, x, w, tmp_path), ggml_quantize(ggml, name, x, w), name, x, w,
                          f"{name} {kind}-{rows}x{cols} weights={how}")


@pytest.mark.parametrize("name", K_TYPES)
def test_edge_blocks_match_ggml(name, ggml, tmp_path):
    rng = data_rng(99)
    x = edge_blocks(rng)
    assert_same_bytes(ours_plain(name, x, tmp_path), ggml_quantize(ggml, name, x, None), name, x, None,
                      f"{name} edge blocks plain")
    for how in WEIGHTINGS:
        w = weights_for(rng, how, QK_K)
        assert_same_bytes(ours_weighted(name, x, w, tmp_path), ggml_quantize(ggml, name, x, w), name, x, w,
                          f"{name} edge blocks weights={how}")
    # Whole rows of edge blocks: the row statistics mix the special blocks with ordinary ones.
    wide = x[:x.shape[0] // 4 * 4].reshape(-1, 4 * QK_K)
    w = imatrix_like(rng, wide.shape[1])
    assert_same_bytes(ours_weighted(name, wide, w, tmp_path), ggml_quantize(ggml, name, wide, w), name, wide, w,
                      f"{name} edge rows of 1024")
    # A whole super-block of zero importances (dead channels): ggml's q2_K / q4_K / q5_K then divide 0 by 0
    # in make_qp_quants and write d = NaN; the bytes, NaN included, must still be ggml's.
    w[QK_K:2 * QK_K] = 0.0
    assert_same_bytes(ours_weighted(name, wide, w, tmp_path), ggml_quantize(ggml, name, wide, w), name, wide, w,
                      f"{name} edge rows, a super-block of zero importances")
    # Rows of all zeros: sigma2 = 0, so every weight is 0 as well.
    z = np.zeros((3, 512), np.float32)
    w = imatrix_like(rng, 512)
    assert_same_bytes(ours_weighted(name, z, w, tmp_path), ggml_quantize(ggml, name, z, w), name, z, w,
                      f"{name} zero rows")


@pytest.mark.parametrize("name", K_TYPES)
def test_weights_change_the_bytes(name, ggml, tmp_path):
    # Guards the witness itself: if the imatrix were silently dropped on either side, the weighted
    # comparisons above would still pass against the plain quantizer.
    rng = data_rng(7)
    x = weight_matrix(rng, 8, 1024, "normal")
    w = imatrix_like(rng, 1024)
    plain, weighted = ggml_quantize(ggml, name, x, None), ggml_quantize(ggml, name, x, w)
    diff = np.count_nonzero(np.frombuffer(plain, np.uint8) != np.frombuffer(weighted, np.uint8))
    assert diff > len(plain) // 4, f"{name}: only {diff} of {len(plain)} bytes differ with an imatrix"
    assert ours_weighted(name, x, w, tmp_path) == weighted


def random_blocks(rng: np.random.Generator, name: str, count: int) -> bytes:
    """Random bytes, with every fp16 scale field replaced by a finite value of either sign, 2^-24 .. 8,
    some zero, so that ggml's output is finite and both sides can be compared bit for bit."""
    _, block_bytes, _ = TYPES[name]
    raw = rng.integers(0, 256, (count, block_bytes), dtype=np.uint8)
    for off in FP16_FIELDS[name]:
        v = rng.choice([-1.0, 1.0], count) * 10.0 ** rng.uniform(-7.3, 0.9, count)
        v[rng.random(count) < 0.05] = 0.0
        raw[:, off:off + 2] = v.astype(np.float16).view(np.uint8).reshape(count, 2)
    return raw.tobytes()


@pytest.mark.parametrize("name", K_TYPES)
def test_dequantize_matches_ggml(name, ggml, tmp_path):
    rng = data_rng(11)
    # Blocks ggml wrote, plain and weighted, from data of every kind and the edge blocks.
    sources = [weight_matrix(rng, 4, 1024, kind) for kind in KINDS] + [edge_blocks(rng)[:24].reshape(-1, 1024)]
    for i, x in enumerate(sources):
        for w in (None, imatrix_like(rng, x.shape[1])):
            data = ggml_quantize(ggml, name, x, w)
            y = ours_dequantize(name, data, tmp_path)
            assert_same_floats(y, ggml_dequantize(ggml, name, data), name, data,
                               f"{name} dequantize source {i} weights={w is not None}")
    # Random bytes: every code, scale and high-bit pattern, including ones no quantizer writes.
    data = random_blocks(rng, name, 512)
    y = ours_dequantize(name, data, tmp_path)
    ref = ggml_dequantize(ggml, name, data)
    assert np.isfinite(ref).all()
    assert_same_floats(y, ref, name, data, f"{name} dequantize random blocks")


@pytest.mark.parametrize("name", K_TYPES)
def test_dequantize_matches_gguf(name, ggml, tmp_path):
    # A second witness written independently of ggml (numpy, in gguf.quants).
    import gguf
    import gguf.quants as gguf_quants
    qtype = gguf.GGMLQuantizationType[name.upper()]
    rng = data_rng(13)
    x = weight_matrix(rng, 4, 1024, "outliers")
    for data in (ggml_quantize(ggml, name, x, None), random_blocks(rng, name, 256)):
        y = ours_dequantize(name, data, tmp_path)
        ref = gguf_quants.dequantize(np.frombuffer(data, np.uint8), qtype).astype(np.float32).ravel()
        assert_same_floats(y, ref, name, data, f"{name} dequantize vs gguf.quants")
