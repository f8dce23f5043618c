"""Our quantizers as the bit-exactness tests drive them: build/tests/quant_tool (reference quantizers and
dequantizers, generic over block_traits) and quant_weighted_tool (importance-weighted, row by row)."""

from __future__ import annotations

import pathlib
import subprocess

import numpy as np

from conftest import tool


def ours_plain(name: str, x: np.ndarray, tmp_path: pathlib.Path) -> bytes:
    """quant_tool quantize: the reference quantizer over the whole buffer as one flat row."""
    src, dst = tmp_path / "x.f32", tmp_path / "out.bin"
    np.ascontiguousarray(x, np.float32).tofile(src)
    r = subprocess.run([str(tool("quant_tool")), "quantize", name, str(src), str(dst)], capture_output=True,
                       text=True)
    assert r.returncode == 0, f"quant_tool quantize {name} failed: {r.stderr}"
    return dst.read_bytes()


def ours_weighted(name: str, x: np.ndarray, w: np.ndarray | None, tmp_path: pathlib.Path) -> bytes:
    """quant_weighted_tool: the weighted quantizer row by row (w None: no importances)."""
    src, wts, dst = tmp_path / "x.f32", tmp_path / "w.f32", tmp_path / "out.bin"
    np.ascontiguousarray(x, np.float32).tofile(src)
    if w is None:
        w_arg = f"-:{x.shape[1]}"
    else:
        np.ascontiguousarray(w, np.float32).tofile(wts)
        w_arg = str(wts)
    r = subprocess.run([str(tool("quant_weighted_tool")), name, str(src), w_arg, str(dst)], capture_output=True,
                       text=True)
    assert r.returncode == 0, f"quant_weighted_tool {name} failed: {r.stderr}"
    return dst.read_bytes()


def ours_dequantize(name: str, data: bytes, tmp_path: pathlib.Path) -> np.ndarray:
    src, dst = tmp_path / "q.bin", tmp_path / "y.f32"
    src.write_bytes(data)
    r = subprocess.run([str(tool("quant_tool")), "dequantize", name, str(src), str(dst)], capture_output=True,
                       text=True)
    assert r.returncode == 0, f"quant_tool dequantize {name} failed: {r.stderr}"
    return np.fromfile(dst, np.float32)
