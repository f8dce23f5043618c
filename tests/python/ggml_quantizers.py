"""ggml's own quantizers through ctypes: ggml_quantize_chunk from the libggml-base that llama-cpp-python
ships (scripts/compare-llamacpp.sh builds it from source), with or without an importance-matrix row, as
llama-quantize calls it. The witness of our q4_0 / q4_1 / q8_0 bytes, plain and importance-weighted."""

from __future__ import annotations

import ctypes
import pathlib

import numpy as np
import pytest

# name -> (ggml type id, block bytes); 32 values per block
TYPES = {"q4_0": (2, 18), "q4_1": (3, 20), "q8_0": (8, 34)}


def load_ggml() -> ctypes.CDLL:
    """libggml-base with ggml_quantize_chunk's signature; skips the test when llama_cpp is missing."""
    llama_cpp = pytest.importorskip("llama_cpp")
    path = pathlib.Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"
    if not path.exists():
        pytest.skip(f"{path} not found in this llama_cpp install")
    lib = ctypes.CDLL(str(path))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_quantize_init.restype = None
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    return lib


def ggml_quantize(lib: ctypes.CDLL, name: str, x: np.ndarray, w: np.ndarray | None) -> bytes:
    """llama-quantize's call for one 2-D tensor: ggml_quantize_chunk over all rows, with the imatrix row w
    (one weight per column) or None."""
    qtype, block_bytes = TYPES[name]
    x = np.ascontiguousarray(x, np.float32)
    rows, cols = x.shape
    out = np.zeros(rows * cols // 32 * block_bytes, np.uint8)
    w_ptr = None
    if w is not None:
        w = np.ascontiguousarray(w, np.float32)
        assert w.shape == (cols,)
        w_ptr = w.ctypes.data
    lib.ggml_quantize_init(qtype)  # a no-op for these types; llama-quantize calls it all the same
    assert lib.ggml_quantize_chunk(qtype, x.ctypes.data, out.ctypes.data, 0, rows, cols, w_ptr) == out.size
    return out.tobytes()
