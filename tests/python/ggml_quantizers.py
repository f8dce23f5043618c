"""ggml's own quantizers through ctypes: ggml_quantize_chunk from the libggml-base that llama-cpp-python
ships (scripts/compare-llamacpp.sh builds it from source), with or without an importance-matrix row, as
llama-quantize calls it, and ggml's to_float (ggml_get_type_traits). The witness of our block bytes,
plain and importance-weighted, and of our dequantizers."""

from __future__ import annotations

import ctypes
import pathlib

import numpy as np
import pytest

from conftest import optional_reference

# name -> (ggml type id, block bytes, values per block)
TYPES = {
    "q4_0": (2, 18, 32), "q4_1": (3, 20, 32), "q5_0": (6, 22, 32), "q5_1": (7, 24, 32), "q8_0": (8, 34, 32),
    "q2_K": (10, 84, 256), "q3_K": (11, 110, 256), "q4_K": (12, 144, 256), "q5_K": (13, 176, 256),
    "q6_K": (14, 210, 256), "iq4_nl": (20, 18, 32), "iq4_xs": (23, 136, 256),
}


class _TypeTraits(ctypes.Structure):
    """ggml.h's struct ggml_type_traits (the fields up to from_float_ref)."""
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64), ("blck_size_interleave", ctypes.c_int64),
                ("type_size", ctypes.c_size_t), ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]


_TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


def load_ggml() -> ctypes.CDLL:
    """libggml-base with ggml_quantize_chunk's signature; skips the test when llama_cpp is missing."""
    llama_cpp = optional_reference("llama_cpp")
    path = pathlib.Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"
    if not path.exists():
        pytest.skip(f"{path} not found in this llama_cpp install")
    lib = ctypes.CDLL(str(path))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_quantize_init.restype = None
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    lib.ggml_get_type_traits.restype = ctypes.POINTER(_TypeTraits)
    lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
    return lib


def ggml_quantize(lib: ctypes.CDLL, name: str, x: np.ndarray, w: np.ndarray | None) -> bytes:
    """llama-quantize's call for one 2-D tensor: ggml_quantize_chunk over all rows, with the imatrix row w
    (one weight per column) or None."""
    qtype, block_bytes, block = TYPES[name]
    x = np.ascontiguousarray(x, np.float32)
    rows, cols = x.shape
    assert cols % block == 0
    out = np.zeros(rows * cols // block * block_bytes, np.uint8)
    w_ptr = None
    if w is not None:
        w = np.ascontiguousarray(w, np.float32)
        assert w.shape == (cols,)
        w_ptr = w.ctypes.data
    lib.ggml_quantize_init(qtype)  # tables of the i-quants; a no-op for the others, called all the same
    assert lib.ggml_quantize_chunk(qtype, x.ctypes.data, out.ctypes.data, 0, rows, cols, w_ptr) == out.size
    return out.tobytes()


def ggml_dequantize(lib: ctypes.CDLL, name: str, data: bytes) -> np.ndarray:
    """ggml's to_float for a buffer of whole blocks of type `name` (one flat row)."""
    qtype, block_bytes, block = TYPES[name]
    assert len(data) % block_bytes == 0
    n = len(data) // block_bytes * block
    src = np.frombuffer(data, np.uint8).copy()
    out = np.zeros(n, np.float32)
    traits = lib.ggml_get_type_traits(qtype).contents
    assert traits.blck_size == block and traits.type_size == block_bytes and traits.to_float
    _TO_FLOAT(traits.to_float)(src.ctypes.data, out.ctypes.data, n)
    return out
