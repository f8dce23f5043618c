"""Our q5_0, q5_1, iq4_nl and iq4_xs (src/formats/blocks_q5.cpp, blocks_iq4.cpp) against ggml itself,
byte for byte:

- plain quantization (build/tests/quant_tool, the traits' from_float) == ggml_quantize_chunk with no
  imatrix (for iq4_nl that is quantize_iq4_nl's 7-try search, not ggml's from_float_ref, which skips it);
- importance-weighted quantization (build/tests/quant_weighted_tool, one whole row at a time) ==
  ggml_quantize_chunk with an imatrix row, for several weightings, and with none;
- our dequantization (quant_tool dequantize) == ggml's to_float bit for bit, on ggml-made blocks and on
  random bytes with finite fp16 scales; gguf.quants (numpy) as a second witness: it quantizes q5_0 / q5_1
  (ggml's *_ref) and dequantizes all four.

The witness is llama-cpp-python's libggml-base (tests/python/ggml_quantizers.py); the ggml tests are
skipped when llama_cpp is not installed. NaN/Inf inputs are left out as in test_quant_bitexact.py.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import gguf.quants as gq
from gguf import GGMLQuantizationType as T

from our_quantizers import ours_dequantize, ours_plain, ours_weighted
from ggml_quantizers import TYPES, ggml_dequantize, ggml_quantize, load_ggml
from test_quant_bitexact import edge_blocks, random_values
from test_quant_imatrix import WEIGHTINGS, edge_matrix, imatrix_like, weight_matrix, weights_for

# gguf.quants and numpy warn on the overflows that the heavy-tailed inputs provoke on purpose.
pytestmark = [pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")]

SEED = 20240918
NAMES = ("q5_0", "q5_1", "iq4_nl", "iq4_xs")
GGUF_TYPE = {"q5_0": T.Q5_0, "q5_1": T.Q5_1, "iq4_nl": T.IQ4_NL, "iq4_xs": T.IQ4_XS}
KINDS = ("normal", "outliers", "offset", "wide")
# Byte offsets of each block's fp16 fields (ggml-common.h): d, and q5_1's m.
FP16_FIELDS = {"q5_0": (0,), "q5_1": (0, 2), "iq4_nl": (0,), "iq4_xs": (0,)}


@pytest.fixture(scope="module")
def ggml() -> ctypes.CDLL:
    return load_ggml()


@pytest.fixture(scope="module")
def values() -> np.ndarray:
    """test_quant_bitexact's inputs: 1M values in four distributions with per-block scales 10^-6..10^4,
    then its edge blocks (f16 extremes and subnormals, rounding ties, lone outliers), padded to rows of 4096."""
    x = np.concatenate([random_values(SEED), edge_blocks(SEED)]).astype(np.float32)
    return np.concatenate([x, np.zeros((-x.size) % 4096, np.float32)])


# ---------------------------------------------------------------------------------------------- ours

# ---------------------------------------------------------------------------------------------- checks

def assert_same_bytes(ours: bytes, ref: bytes, name: str, x: np.ndarray, w: np.ndarray | None, what: str) -> None:
    """Equal bytes; otherwise fail with the first differing block, its input and its importances."""
    _, block_bytes, block = TYPES[name]
    a, b = np.frombuffer(ours, np.uint8), np.frombuffer(ref, np.uint8)
    assert a.size == b.size, f"{what}: {a.size} bytes != {b.size}"
    bad = np.flatnonzero(a != b)
    if bad.size:
        blk = int(bad[0] // block_bytes)
        flat = np.asarray(x, np.float32).ravel()
        cols = x.shape[1] if x.ndim == 2 else flat.size
        col = blk * block % cols
        pytest.fail(f"{what} (seed {SEED}): {bad.size} of {a.size} bytes differ in "
                    f"{np.unique(bad // block_bytes).size} blocks; first in block {blk}\n"
                    f"  input   {flat[blk * block:(blk + 1) * block].tolist()}\n"
                    f"  weights {None if w is None else w[col:col + block].tolist()}\n"
                    f"  ours    {a[blk * block_bytes:(blk + 1) * block_bytes].tobytes().hex()}\n"
                    f"  ggml    {b[blk * block_bytes:(blk + 1) * block_bytes].tobytes().hex()}")


def assert_same_f32(ours: np.ndarray, ref: np.ndarray, name: str, data: bytes, what: str) -> None:
    """Bit-identical float32 (NaN matches NaN); otherwise fail with the first differing block's bytes."""
    _, block_bytes, block = TYPES[name]
    ours, ref = np.ascontiguousarray(ours, np.float32), np.ascontiguousarray(ref, np.float32)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    both_nan = np.isnan(ours) & np.isnan(ref)
    bad = np.flatnonzero((ours.view(np.uint32) != ref.view(np.uint32)) & ~both_nan)
    if bad.size:
        i = int(bad[0])
        blk = i // block
        pytest.fail(f"{what} (seed {SEED}): {bad.size} of {ours.size} floats differ; first at {i} (block {blk}): "
                    f"ours {ours[i]!r} ref {ref[i]!r}\n"
                    f"  block {data[blk * block_bytes:(blk + 1) * block_bytes].hex()}")


# ---------------------------------------------------------------------------------------------- inputs

def cases():
    """(type, rows, cols, kind): every row length of 32..4096 the block size allows, four data shapes."""
    out = []
    for name in NAMES:
        block = TYPES[name][2]
        for cols, rows in ((32, 64), (64, 48), (256, 16), (288, 16), (1024, 8), (4096, 4)):
            if cols % block:
                continue
            for kind in KINDS:
                out.append(pytest.param(name, rows, cols, kind, id=f"{name}-{kind}-{rows}x{cols}"))
    return out


def iq4_xs_edge_rows(rng: np.random.Generator) -> np.ndarray:
    """Super-blocks on iq4_xs's special cases: zero groups among live ones, a group far larger than the
    others (their 6-bit scales round to 0), scales of both signs, values exactly on the table's levels."""
    table = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.float32)
    rows = []
    r = rng.standard_normal(256)
    r[64:96] = 0.0
    rows.append(r)
    r = rng.standard_normal(256) * 1e-3
    r[200:232] *= 1e4
    rows.append(r)
    r = np.zeros(256)
    r[0] = 5.0
    rows.append(r)
    r = rng.standard_normal(256)
    r[::32] = np.tile([40.0, -40.0], 4)  # each group's extreme alternates sign
    rows.append(r)
    rows.append(table[rng.integers(0, 16, 256)] * 0.01)
    rows.append(np.tile(table, 16) * np.repeat(2.0 ** np.arange(-4, 4), 32))
    rows.append(np.full(256, 1e-16))
    rows.append(rng.standard_normal(256) * 1e-14)
    return np.stack(rows).astype(np.float32)


def edge_rows(name: str, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Edge matrices shaped for the type's block: test_quant_imatrix's edge rows (rows of 128, or 256 for
    iq4_xs), iq4_xs's own super-block cases, and rows of zeros (sigma2 = 0, so every weight is 0)."""
    e = edge_matrix(rng)
    if TYPES[name][2] == 256:
        e = np.concatenate([e.ravel(), np.zeros((-e.size) % 256, np.float32)]).reshape(-1, 256)
    out = [("edge", e), ("iq4_xs-edge", iq4_xs_edge_rows(rng)), ("zeros", np.zeros((3, 256), np.float32))]
    return out


# ---------------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("name,rows,cols,kind", cases())
def test_matches_ggml(name, rows, cols, kind, ggml, tmp_path):
    rng = np.random.default_rng([SEED, NAMES.index(name), rows, cols, KINDS.index(kind)])
    x = weight_matrix(rng, rows, cols, kind)
    ref = ggml_quantize(ggml, name, x, None)
    assert_same_bytes(ours_plain(name, x, tmp_path), ref, name, x, None, f"{name} {kind} {rows}x{cols} plain")
    for how in WEIGHTINGS:
        w = weights_for(rng, how, cols)
        ref = ggml_quantize(ggml, name, x, w)
        assert_same_bytes(ours_weighted(name, x, w, tmp_path), ref, name, x, w,
                          f"{name} {kind} {rows}x{cols} weights={how}")


@pytest.mark.parametrize("name", NAMES)
def test_edge_rows_match_ggml(name, ggml, tmp_path):
    rng = np.random.default_rng([SEED, 1, NAMES.index(name)])
    for label, x in edge_rows(name, rng):
        assert_same_bytes(ours_plain(name, x, tmp_path), ggml_quantize(ggml, name, x, None), name, x, None,
                          f"{name} {label} plain")
        for how in WEIGHTINGS:
            w = weights_for(rng, how, x.shape[1])
            assert_same_bytes(ours_weighted(name, x, w, tmp_path), ggml_quantize(ggml, name, x, w), name, x, w,
                              f"{name} {label} weights={how}")


@pytest.mark.parametrize("name", NAMES)
def test_wide_range_values_match_ggml(name, values, ggml, tmp_path):
    # 1M values whose blocks span 10^-6..10^4 (iq4_xs super-blocks mix them, so most 6-bit scales round to
    # 0), f16 extremes and subnormals: plain as one flat buffer, weighted as rows of 4096.
    assert_same_bytes(ours_plain(name, values, tmp_path), ggml_quantize(ggml, name, values[None, :], None), name,
                      values, None, f"{name} wide-range plain")
    x = values.reshape(-1, 4096)
    w = imatrix_like(np.random.default_rng([SEED, 2]), 4096)
    assert_same_bytes(ours_weighted(name, x, w, tmp_path), ggml_quantize(ggml, name, x, w), name, x, w,
                      f"{name} wide-range weighted")


@pytest.mark.parametrize("name", NAMES)
def test_weights_change_the_bytes(name, ggml, tmp_path):
    # Guards the witness: if the imatrix were silently dropped on either side (or our plain path ran the
    # weighted search), the comparisons above could pass against the wrong quantizer.
    rng = np.random.default_rng([SEED, 3])
    x = weight_matrix(rng, 8, 1024, "normal")
    w = imatrix_like(rng, 1024)
    plain, weighted = ggml_quantize(ggml, name, x, None), ggml_quantize(ggml, name, x, w)
    diff = np.count_nonzero(np.frombuffer(plain, np.uint8) != np.frombuffer(weighted, np.uint8))
    assert diff > len(plain) // 4, f"{name}: only {diff} of {len(plain)} bytes differ with an imatrix"
    assert ours_weighted(name, x, w, tmp_path) == weighted
    assert ours_plain(name, x, tmp_path) == plain


@pytest.mark.parametrize("name", NAMES)
def test_dequantize_matches_ggml_and_gguf(name, values, ggml, tmp_path):
    ref_bytes = ggml_quantize(ggml, name, values[None, :], None)
    ours = ours_dequantize(name, ref_bytes, tmp_path)
    assert_same_f32(ours, ggml_dequantize(ggml, name, ref_bytes), name, ref_bytes, f"{name} dequantize ggml blocks")
    gguf_f = gq.dequantize(np.frombuffer(ref_bytes, np.uint8), GGUF_TYPE[name]).ravel()
    assert_same_f32(ours, gguf_f, name, ref_bytes, f"{name} dequantize ggml blocks (gguf.quants)")


@pytest.mark.parametrize("name", NAMES)
def test_dequantize_random_bytes(name, ggml, tmp_path):
    # Codes and scales the quantizers never write (q5_1 with d < 0, iq4_xs scales of every 6-bit value,
    # fp16 subnormals) must read alike; fp16 fields are kept finite.
    _, block_bytes, _ = TYPES[name]
    rng = np.random.default_rng([SEED, 4, NAMES.index(name)])
    raw = rng.integers(0, 256, (8192, block_bytes), dtype=np.uint8)
    for off in FP16_FIELDS[name]:
        h = raw[:, off:off + 2].copy().view(np.uint16)
        h[(h & 0x7c00) == 0x7c00] &= 0xbfff
        raw[:, off:off + 2] = h.view(np.uint8)
    data = raw.tobytes()
    ours = ours_dequantize(name, data, tmp_path)
    assert_same_f32(ours, ggml_dequantize(ggml, name, data), name, data, f"{name} dequantize random bytes")
    assert_same_f32(ours, gq.dequantize(raw.ravel(), GGUF_TYPE[name]).ravel(), name, data,
                    f"{name} dequantize random bytes (gguf.quants)")


@pytest.mark.parametrize("name", ["q5_0", "q5_1"])
def test_q5_quantize_matches_gguf(name, values, tmp_path):
    # gguf.quants mirrors ggml's quantize_row_q5_{0,1}_ref: the second witness of the plain bytes.
    ref = gq.quantize(values, GGUF_TYPE[name]).tobytes()
    assert_same_bytes(ours_plain(name, values, tmp_path), ref, name, values, None, f"{name} quantize (gguf.quants)")


def test_iq4_nl_plain_is_quantize_chunk_not_from_float_ref(ggml, tmp_path):
    # ggml has two iq4_nl quantizers without importances: ggml_quantize_chunk's (7 tries either side, what
    # llama-quantize writes) and the type traits' from_float_ref (no tries). They differ on ordinary data,
    # and our plain bytes must be the former: files are the contract.
    from ggml_quantizers import _TO_FLOAT as row_fn  # same C signature: (const void*, void*, int64_t)
    x = weight_matrix(np.random.default_rng([SEED, 5]), 4, 1024, "normal")
    traits = ggml.ggml_get_type_traits(TYPES["iq4_nl"][0]).contents
    assert traits.from_float_ref
    ref_row = np.zeros(x.size // 32 * 18, np.uint8)
    row_fn(traits.from_float_ref)(x.ctypes.data, ref_row.ctypes.data, x.size)
    chunk = ggml_quantize(ggml, "iq4_nl", x, None)
    assert np.count_nonzero(ref_row != np.frombuffer(chunk, np.uint8)) > len(chunk) // 20
    assert ours_plain("iq4_nl", x, tmp_path) == chunk
