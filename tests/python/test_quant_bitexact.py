"""Our reference quantizers (src/formats/blocks.cpp, driven through build/tests/quant_tool) must write the
same BYTES as the gguf package's gguf.quants, and dequantize to the same float32 BIT patterns.

gguf.quants mirrors ggml's *_ref C functions operation by operation, so agreeing with it is agreeing with
the files llama.cpp's tools write. Types gguf.quants does not implement (q8_1, q8_K) are checked against
small numpy mirrors of ggml's C written below.

Known, deliberate exclusions from the quantized (not f16/bf16) inputs:
  * NaN/Inf: float -> int8 of NaN/Inf is undefined in C and platform-dependent in numpy (x86 gives 0,
    arm64 saturates), so no witness is portable.
  * an all-zero q4_0 block whose first element is -0.0: ggml keeps max = +0 (it only replaces on a strictly
    larger |x|) and writes d = -0, gguf.quants takes x[argmax] = -0 and writes d = +0. We follow ggml.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import gguf.quants as gq
from gguf import GGMLQuantizationType as T

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("QE_TEST_BIN", REPO / "build" / "tests"))
TOOL = BIN / "quant_tool"

# gguf.quants and numpy warn on the overflows and Inf * 0 that the heavy-tailed inputs provoke on purpose.
pytestmark = [pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")]

SEED = 20240611
N_DIST = 1 << 18  # values per random distribution; 4 distributions -> 1,048,576 values per type
F16_MAX = 65504.0


# ---------------------------------------------------------------------------------------------- helpers

def tool(mode: str, type_name: str, data: bytes, tmp_path: Path) -> bytes:
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    src.write_bytes(data)
    r = subprocess.run([str(TOOL), mode, type_name, str(src), str(dst)], capture_output=True, text=True)
    assert r.returncode == 0, f"quant_tool {mode} {type_name} failed: {r.stderr}"
    return dst.read_bytes()


def f32_bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def assert_same_f32(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    """Bit-identical float32, except that any NaN matches any NaN (payloads of computed NaNs are the FPU's)."""
    ours, ref = np.ascontiguousarray(ours, np.float32), np.ascontiguousarray(ref, np.float32)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    both_nan = np.isnan(ours) & np.isnan(ref)
    bad = np.flatnonzero((f32_bits(ours) != f32_bits(ref)) & ~both_nan)
    assert bad.size == 0, (f"{what} (seed {SEED}): {bad.size} of {ours.size} floats differ; first at {bad[0]}: "
                           f"ours {ours[bad[0]]!r} ({f32_bits(ours)[bad[0]]:#010x}) "
                           f"ref {ref[bad[0]]!r} ({f32_bits(ref)[bad[0]]:#010x})")


def assert_same_bytes(ours: bytes, ref: bytes, block_bytes: int, x: np.ndarray, what: str) -> None:
    a, b = np.frombuffer(ours, np.uint8), np.frombuffer(ref, np.uint8)
    assert a.size == b.size, f"{what}: {a.size} bytes != {b.size}"
    bad = np.flatnonzero(a != b)
    if bad.size:
        blk = bad[0] // block_bytes
        n_per = x.size // (a.size // block_bytes)
        pytest.fail(f"{what} (seed {SEED}): {bad.size} of {a.size} bytes differ; first in block {blk}\n"
                    f"  input  {x[blk * n_per:(blk + 1) * n_per].tolist()}\n"
                    f"  ours   {a[blk * block_bytes:(blk + 1) * block_bytes].tobytes().hex()}\n"
                    f"  ref    {b[blk * block_bytes:(blk + 1) * block_bytes].tobytes().hex()}")


def f32_from_bits(*bits: int) -> np.ndarray:
    return np.array(bits, dtype=np.uint32).view(np.float32)


# ---------------------------------------------------------------------------------------------- inputs

def random_values(seed: int) -> np.ndarray:
    """Four distributions, each block of 32 scaled by its own 10^U(-6, 4)."""
    rng = np.random.default_rng(seed)
    n_blocks = N_DIST // 32

    def scaled(v: np.ndarray) -> np.ndarray:
        scale = 10.0 ** rng.uniform(-6, 4, size=(n_blocks, 1))
        return (v.reshape(n_blocks, 32) * scale).astype(np.float32).ravel()

    normal = scaled(rng.standard_normal(N_DIST))
    uniform = scaled(rng.uniform(-1, 1, N_DIST))
    heavy = scaled(rng.standard_t(1.5, N_DIST))  # occasional 1e3..1e5-sigma outliers
    offset = scaled(rng.standard_normal(N_DIST) + rng.uniform(-20, 20, size=(n_blocks, 1)).repeat(32))  # min far from 0
    return np.concatenate([normal, uniform, heavy, offset])


def edge_blocks(seed: int) -> np.ndarray:
    """Blocks of 32 that sit on the quantizers' special cases."""
    rng = np.random.default_rng(seed + 1)
    blocks: list[np.ndarray] = []
    add = lambda v: blocks.append(np.asarray(v, dtype=np.float32).reshape(32))  # noqa: E731

    add(np.zeros(32))
    for c in (1.0, -1.0, 3.14159, -2.5e-3, 1e4, F16_MAX, -F16_MAX, 1e-7):
        add(np.full(32, c))
    for pos in (0, 13, 31):  # single outlier at either end and inside
        for out in (1000.0, -1000.0):
            v = np.zeros(32)
            v[pos] = out
            add(v)
            add(np.where(np.arange(32) == pos, out, rng.standard_normal(32) * 1e-3))
    add(np.tile([F16_MAX, -F16_MAX], 16))  # equal |x| with both signs: the first one wins in q4_0
    add(np.tile([-F16_MAX, F16_MAX], 16))
    add(np.concatenate([[F16_MAX], rng.standard_normal(31)]))
    add(np.concatenate([rng.standard_normal(31), [-F16_MAX]]))
    # f16 subnormals (units of 2^-24), exact and halfway, and the subnormal/normal boundary.
    sub = 2.0 ** -24
    add(rng.integers(-1023, 1024, 32) * sub)
    add((rng.integers(-1023, 1023, 32) + 0.5) * sub)
    add(np.array([sub, -sub, sub / 2, -sub / 2, 1.5 * sub, 2.5 * sub, 0.75 * sub, 0.25 * sub,
                  1023 * sub, 1023.5 * sub, 1024 * sub, 2.0 ** -14 - sub / 4, 2.0 ** -15, 2.0 ** -25 * 1.0001,
                  3 * 2.0 ** -26] + [0.0] * 17))
    # Exact .5 boundaries after scaling, at power-of-two scales (which keep them exact).
    for s in (2.0 ** -12, 1.0, 2.0 ** 5):
        # q8_0/q8_1: amax 127 -> d = 1, id = 1, so k + 0.5 hits roundf's tie.
        add(np.concatenate([[127.0], np.arange(-15.5, 15.5, 1.0)]) * s)
        add(np.concatenate([[-127.0], rng.integers(-127, 127, 31) + 0.5]) * s)
        # q4_0: max -8 -> d = 1; x + 8.5 lands on integers and on .5.
        add(np.concatenate([[-8.0], np.arange(-7.5, 8.0, 0.5)[:31]]) * s)
        add(np.concatenate([[8.0], np.arange(-7.5, 8.0, 0.5)[:31]]) * s)
        # q4_1: min 0, max 15 -> d = 1; and an offset minimum.
        add(np.concatenate([[0.0, 15.0], np.arange(0.5, 15.25, 0.5)[:30]]) * s)
        add(np.concatenate([[-7.0, 8.0], np.arange(-6.5, 8.25, 0.5)[:30]]) * s)
    return np.concatenate(blocks).astype(np.float32)


def f16_special_values(seed: int) -> np.ndarray:
    """Every f16 value, every midpoint between neighbours (round-to-even ties), NaN/Inf, f32 extremes,
    and random f32 bit patterns (every exponent range), for f16/bf16."""
    rng = np.random.default_rng(seed + 2)
    h = np.arange(0x10000, dtype=np.uint32).astype(np.uint16).view(np.float16)
    finite = h[np.isfinite(h)].astype(np.float32)
    pos = np.sort(finite[finite > 0])
    mids = ((pos[:-1].astype(np.float64) + pos[1:]) / 2).astype(np.float32)  # exact in f32
    top = np.array([65519.0, 65520.0, 65520.0 + 1 / 64, 65536.0, 3.0e38], dtype=np.float32)
    nans = f32_from_bits(0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fa00000,
                         0x7f801fff, 0x7f802000, 0x7fbfffff, 0x7fffffff, 0xffffffff, 0x7f7fffff, 0xff7fffff,
                         0x00800000, 0x00000001, 0x807fffff, 0x3f808000, 0x3f818000, 0x3f807fff, 0x3f808001)
    bf16_ties = ((rng.integers(0, 1 << 16, 4096, dtype=np.uint32) << 16) | 0x8000).view(np.float32)
    bits = rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32).view(np.float32)
    out = np.concatenate([finite, mids, -mids, top, -top, nans, bf16_ties, bits]).astype(np.float32)
    return np.concatenate([out, np.zeros((-out.size) % 256, np.float32)])


@pytest.fixture(scope="module")
def values() -> np.ndarray:
    if not TOOL.exists():
        pytest.fail(f"{TOOL} not found: build the quant_tool target or set QE_TEST_BIN")
    x = np.concatenate([random_values(SEED), edge_blocks(SEED)])
    return np.concatenate([x, np.zeros((-x.size) % 256, np.float32)])  # whole q8_K super-blocks too


# ---------------------------------------------------------------------------------------------- mirrors

def q8_1_mirror(x: np.ndarray) -> bytes:
    """ggml's quantize_row_q8_1_ref (gguf.quants has no q8_1; its GGML_QUANT_SIZES entry of 40 bytes is also
    stale: ggml's block_q8_1 is 36 bytes, fp16 d then fp16 s = fp16(sum(q) * d) with the f32 d)."""
    b = x.reshape(-1, 32)
    d = np.abs(b).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d)
    qs = gq.np_roundf(b * inv).astype(np.int8)
    s = qs.astype(np.int32).sum(axis=1, keepdims=True).astype(np.float32) * d
    out = np.concatenate([d.astype(np.float16).view(np.uint8), s.astype(np.float16).view(np.uint8),
                          qs.view(np.uint8)], axis=1)
    return out.tobytes()


def q8_K_mirror(x: np.ndarray) -> bytes:
    """ggml's quantize_row_q8_K_ref: iscale = -127/max (signed max, first on ties), q = nearest-even(iscale*x)
    capped at 127, d = 1/iscale as f32, bsums per 16. ggml leaves bsums unwritten for an all-zero block; we
    write zeros."""
    b = x.reshape(-1, 256)
    mx = np.take_along_axis(b, np.abs(b).argmax(axis=1, keepdims=True), axis=1)
    zero = mx == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(zero, np.float32(1), np.float32(-127) / mx).astype(np.float32)
        q = np.minimum(np.rint(iscale * b), 127).astype(np.int8)
        d = np.float32(1) / iscale
    q = np.where(zero, np.int8(0), q)
    d = np.where(zero, np.float32(0), d).astype(np.float32)
    bsums = q.reshape(-1, 16, 16).astype(np.int32).sum(axis=2).astype(np.int16)
    return np.concatenate([d.view(np.uint8), q.view(np.uint8), bsums.view(np.uint8)], axis=1).tobytes()


# ---------------------------------------------------------------------------------------------- tests

GGUF_TYPES = [("q4_0", T.Q4_0, 32, 18), ("q4_1", T.Q4_1, 32, 20), ("q8_0", T.Q8_0, 32, 34)]


@pytest.mark.parametrize("name,qtype,block,size", GGUF_TYPES)
def test_block_types_match_gguf(name, qtype, block, size, values, tmp_path):
    ref = gq.quantize(values, qtype).tobytes()
    ours = tool("quantize", name, values.tobytes(), tmp_path)
    assert_same_bytes(ours, ref, size, values, f"{name} quantize")
    ours_f = np.frombuffer(tool("dequantize", name, ours, tmp_path), np.float32)
    ref_f = gq.dequantize(np.frombuffer(ref, np.uint8), qtype).ravel()
    assert_same_f32(ours_f, ref_f, f"{name} dequantize")
    print(f"{name}: {values.size} values, {len(ref)} bytes identical")


@pytest.mark.parametrize("name,qtype,block,size", GGUF_TYPES)
def test_block_types_dequantize_random_bytes(name, qtype, block, size, tmp_path):
    # Codes the quantizer never writes (q4_1 with a negative d, q8_0 with -128) must still read alike.
    rng = np.random.default_rng(SEED + 3)
    raw = rng.integers(0, 256, (8192, size), dtype=np.uint8)
    h = raw[:, :4].copy().view(np.uint16)
    h[(h & 0x7c00) == 0x7c00] &= 0xbfff  # finite fp16 d (and m)
    raw[:, :4] = h.view(np.uint8)
    ours = np.frombuffer(tool("dequantize", name, raw.tobytes(), tmp_path), np.float32)
    assert_same_f32(ours, gq.dequantize(raw.ravel(), qtype).ravel(), f"{name} dequantize random bytes")


@pytest.mark.parametrize("name,qtype", [("f16", T.F16), ("bf16", T.BF16), ("f32", T.F32)])
def test_float_types_match_gguf(name, qtype, values, tmp_path):
    x = np.concatenate([values, f16_special_values(SEED)])
    ours = tool("quantize", name, x.tobytes(), tmp_path)
    ref = gq.quantize(x, qtype).tobytes()
    if qtype == T.F16:
        # NaN-aware: a NaN input must give an f16 NaN of the same sign (numpy's payload handling is its own).
        a, b = np.frombuffer(ours, np.uint16), np.frombuffer(ref, np.uint16)
        nan_a, nan_b = (a & 0x7c00 == 0x7c00) & (a & 0x3ff != 0), (b & 0x7c00 == 0x7c00) & (b & 0x3ff != 0)
        assert np.array_equal(nan_a, nan_b), "f16: NaN positions differ"
        assert np.array_equal(a[nan_a] & 0x8000, b[nan_b] & 0x8000), "f16: NaN signs differ"
        assert_same_bytes(np.where(nan_a, 0, a).astype(np.uint16).tobytes(),
                          np.where(nan_b, 0, b).astype(np.uint16).tobytes(), 2, x, "f16 quantize")
    else:
        assert_same_bytes(ours, ref, 2 if qtype == T.BF16 else 4, x, f"{name} quantize")
    ours_f = np.frombuffer(tool("dequantize", name, ref, tmp_path), np.float32)
    assert_same_f32(ours_f, gq.dequantize(np.frombuffer(ref, np.uint8), qtype).ravel(), f"{name} dequantize")
    print(f"{name}: {x.size} values identical")


@pytest.mark.parametrize("name", ["f16", "bf16"])
def test_every_16_bit_pattern_dequantizes_like_gguf(name, tmp_path):
    raw = np.arange(0x10000, dtype=np.uint32).astype(np.uint16)
    ours = np.frombuffer(tool("dequantize", name, raw.tobytes(), tmp_path), np.float32)
    qtype = T.F16 if name == "f16" else T.BF16
    assert_same_f32(ours, gq.dequantize(raw.view(np.uint8), qtype).ravel(), f"{name} all 65536 patterns")


def test_q8_1_matches_numpy_mirror(values, tmp_path):
    ours = tool("quantize", "q8_1", values.tobytes(), tmp_path)
    assert_same_bytes(ours, q8_1_mirror(values), 36, values, "q8_1 quantize")
    # q8_1's qs and d are laid out like q8_0's after the 2-byte s: dequantize must agree with q8_0's reader.
    blocks = np.frombuffer(ours, np.uint8).reshape(-1, 36)
    as_q8_0 = np.concatenate([blocks[:, :2], blocks[:, 4:]], axis=1)
    ours_f = np.frombuffer(tool("dequantize", "q8_1", ours, tmp_path), np.float32)
    assert_same_f32(ours_f, gq.dequantize(as_q8_0.ravel(), T.Q8_0).ravel(), "q8_1 dequantize")


def test_q8_K_matches_numpy_mirror(values, tmp_path):
    ours = tool("quantize", "q8_K", values.tobytes(), tmp_path)
    assert_same_bytes(ours, q8_K_mirror(values), 292, values, "q8_K quantize")
    blocks = np.frombuffer(ours, np.uint8).reshape(-1, 292)
    ref_f = blocks[:, :4].copy().view(np.float32) * blocks[:, 4:260].view(np.int8).astype(np.float32)
    ours_f = np.frombuffer(tool("dequantize", "q8_K", ours, tmp_path), np.float32)
    assert_same_f32(ours_f, ref_f.ravel(), "q8_K dequantize")


def test_q6_K_dequantizes_like_gguf(tmp_path):
    rng = np.random.default_rng(SEED + 4)
    n = 4096  # 1,048,576 weights
    raw = rng.integers(0, 256, (n, 210), dtype=np.uint8)  # random ql, qh, scales
    d = rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
    d[(d & 0x7c00) == 0x7c00] &= 0xbfff  # a random finite fp16 (subnormals included)
    raw[:, 208:] = d.view(np.uint8).reshape(n, 2)
    ours = np.frombuffer(tool("dequantize", "q6_K", raw.tobytes(), tmp_path), np.float32)
    assert_same_f32(ours, gq.dequantize(raw.ravel(), T.Q6_K).ravel(), "q6_K dequantize")


@pytest.mark.parametrize("args,data", [
    (["quantize", "q4_0"], np.zeros(31, np.float32).tobytes()),       # not a whole block
    (["quantize", "f32"], b"\0\0\0"),                                 # not whole floats
    (["dequantize", "q8_0"], b"\0" * 35),                             # not a whole block
    (["quantize", "iq2_xs"], np.zeros(256, np.float32).tobytes()),    # unsupported type
    (["dequantize", "iq3_s"], b"\0" * 110),                           # unsupported type
    (["quantize", "nope"], b""),
    (["frobnicate", "q4_0"], b""),
])
def test_tool_rejects_bad_input(args, data, tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    r = subprocess.run([str(TOOL), *args, str(src), str(tmp_path / "out.bin")], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("quant_tool: "), r.stderr
    for missing in (tmp_path / "missing", tmp_path):  # absent, and a directory
        r = subprocess.run([str(TOOL), "quantize", "q4_0", str(missing), str(tmp_path / "o")],
                           capture_output=True, text=True)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
