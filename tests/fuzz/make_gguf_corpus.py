"""Writes the seed corpus for fuzz_gguf (tests/fuzz/corpus/gguf/): a few small, valid GGUF files in
versions 2 and 3, with every value type, string and nested arrays, and tensors of several types.
Written with the gguf package (what llama.cpp's converters use) so the seeds are not shaped by our
own writer. Run: .venv/bin/python tests/fuzz/make_gguf_corpus.py
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V

OUT = Path(__file__).resolve().parent / "corpus" / "gguf"


def write(path: Path, kvs, tensors, alignment: int | None = None, version: int = 3) -> None:
    w = gguf.GGUFWriter(path, arch="llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, vtype, sub, value in kvs:
        w.add_key_value(key, value, vtype, sub_type=sub)
    rng = np.random.default_rng(7)
    for name, ttype, dims in tensors:  # dims innermost first
        block, size = gguf.GGML_QUANT_SIZES[ttype]
        row_bytes = dims[0] // block * size
        rows = int(np.prod(dims[1:])) if len(dims) > 1 else 1
        raw = rng.integers(0, 256, row_bytes * rows, dtype=np.uint8).reshape(rows, row_bytes)
        if ttype == T.F32:
            w.add_tensor(name, rng.standard_normal((rows, dims[0])).astype(np.float32))
        else:
            w.add_tensor(name, raw, raw_dtype=ttype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if version != 3:  # v2 has v3's layout; only the version field differs
        data = bytearray(path.read_bytes())
        data[4:8] = struct.pack("<I", version)
        path.write_bytes(bytes(data))


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    scalars = [
        ("s.u8", V.UINT8, None, 7), ("s.i8", V.INT8, None, -7), ("s.u16", V.UINT16, None, 700),
        ("s.i16", V.INT16, None, -700), ("s.u32", V.UINT32, None, 70000), ("s.i32", V.INT32, None, -70000),
        ("s.f32", V.FLOAT32, None, 0.5), ("s.bool", V.BOOL, None, True), ("s.str", V.STRING, None, "hi"),
        ("s.u64", V.UINT64, None, 1 << 40), ("s.i64", V.INT64, None, -(1 << 40)), ("s.f64", V.FLOAT64, None, 0.25),
    ]
    arrays = [
        ("tokenizer.ggml.tokens", V.ARRAY, V.STRING, ["<s>", "</s>", "a", "b"]),
        ("tokenizer.ggml.scores", V.ARRAY, V.FLOAT32, [0.0, -1.0, -2.0, -3.0]),
        ("tokenizer.ggml.token_type", V.ARRAY, V.INT32, [3, 3, 1, 1]),
        ("a.u8", V.ARRAY, V.UINT8, [1, 2]), ("a.bool", V.ARRAY, V.BOOL, [True, False]),
        ("a.u64", V.ARRAY, V.UINT64, [1, 2]), ("a.f64", V.ARRAY, V.FLOAT64, [1.5]),
        ("a.nested", V.ARRAY, V.ARRAY, [[1, 2], ["x"], [[True]]]),
    ]
    llama = [("llama.block_count", V.UINT32, None, 1), ("llama.embedding_length", V.UINT32, None, 32)]
    write(OUT / "v3_arrays_tensors.gguf", llama + scalars + arrays,
          [("token_embd.weight", T.Q4_0, [32, 4]), ("blk.0.attn_norm.weight", T.F32, [32]),
           ("output.weight", T.Q8_0, [32, 4])])
    write(OUT / "v2_arrays_tensors.gguf", llama + arrays,
          [("a.weight", T.F16, [8, 2]), ("b.weight", T.Q4_1, [32])], version=2)
    write(OUT / "v3_align64.gguf", scalars[:4],
          [("q6k.weight", T.Q6_K, [256]), ("bf16.weight", T.BF16, [4, 1, 1, 2])], alignment=64)
    write(OUT / "v3_meta_only.gguf", scalars, [])
    for p in sorted(OUT.iterdir()):
        print(p.name, p.stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
