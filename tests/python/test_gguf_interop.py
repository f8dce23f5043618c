"""Our GGUF reader and writer (src/formats/gguf_*.cpp, driven through build/tests/gguf_tool) against the
`gguf` Python package, which is what llama.cpp's converters use:

  (a) the file our writer makes (`gguf_tool write-all-types`) read by gguf.GGUFReader: every key, type
      and value, every tensor's type, shape and bytes, as written down independently below;
  (b) a file gguf.GGUFWriter makes (every value type, nested arrays, a tensor of every ggml type) read
      by our `gguf_tool dump --hash`: the same metadata, types and XXH3 of every tensor;
  (c) our dump of a file equals the same JSON built from gguf.GGUFReader (our file, gguf-py's file,
      and the default llama.cpp-written model).

gguf-py's q8_1 block size is stale (40 bytes; ggml packs d and s as half2, 36), so (b) leaves q8_1 out.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import xxhash

import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V

from conftest import run_tool

TYPE_NAMES = {V.UINT8: "uint8", V.INT8: "int8", V.UINT16: "uint16", V.INT16: "int16", V.UINT32: "uint32",
              V.INT32: "int32", V.FLOAT32: "float32", V.BOOL: "bool", V.STRING: "string", V.ARRAY: "array",
              V.UINT64: "uint64", V.INT64: "int64", V.FLOAT64: "float64"}
FLOAT_TYPES = (V.FLOAT32, V.FLOAT64)


def ggml_name(t: T) -> str:
    """ggml's type name: the enum name in lower case, except that the k-quants keep their capital K."""
    n = t.name.lower()
    return n[:-2] + "_K" if n.endswith("_k") else n


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def strict_eq(a, b) -> bool:
    """Equality that also tells bool from int from float (json gives 1 and 1.0 and True distinct types)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_eq(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


# ------------------------------------------------------------------ decoding gguf.GGUFReader's fields

def decode(parts: list, i: int, vtype: V) -> tuple[object, int, str]:
    """Value at parts[i:] of type vtype -> (python value, next index, our type name). Walks the raw
    parts rather than ReaderField.contents(), which flattens arrays of arrays."""
    if vtype == V.STRING:
        return bytes(parts[i + 1]).decode("utf-8"), i + 2, "string"
    if vtype == V.ARRAY:
        itype, n = V(int(parts[i][0])), int(parts[i + 1][0])
        i += 2
        items, names = [], []
        for _ in range(n):
            v, i, name = decode(parts, i, itype)
            items.append(v)
            names.append(name)
        if itype != V.ARRAY:
            return items, i, f"array[{TYPE_NAMES[itype]}]"
        same = n > 0 and all(x == names[0] for x in names)
        return items, i, f"array[{names[0]}]" if same else "array[array]"
    x = parts[i][0]
    if vtype == V.BOOL:
        v = bool(x)
    elif vtype in FLOAT_TYPES:
        v = float(x)
    else:
        v = int(x)
    return v, i + 1, TYPE_NAMES[vtype]


def reader_fields(r: gguf.GGUFReader) -> list[tuple[str, str, object]]:
    """[(key, type name, value)] in file order, without the reader's synthetic GGUF.* header fields."""
    out = []
    for field in list(r.fields.values())[3:]:
        value, end, name = decode(field.parts, 3, V(int(field.parts[2][0])))
        assert end == len(field.parts), field.name
        out.append((field.name, name, value))
    return out


def reader_json(path: Path) -> dict:
    """gguf.GGUFReader's view of a file in the shape of our gguf_to_json(with_hash=true)."""
    r = gguf.GGUFReader(path)
    meta, types = {}, {}
    for key, name, value in reader_fields(r):
        meta[key], types[key] = value, name
    tensors = []
    for t in r.tensors:
        data = np.asarray(t.data)
        tensors.append({"name": t.name, "type": ggml_name(t.tensor_type), "shape": [int(d) for d in t.shape],
                        "bytes": int(t.n_bytes), "offset": int(t.data_offset),
                        "xxh3": xxhash.xxh3_64(data.tobytes()).hexdigest()})
    return {"metadata": meta, "metadata_types": types, "tensors": tensors}


def our_json(path: Path) -> dict:
    return json.loads(run_tool("gguf_tool", "dump", path, "--hash"))


# ------------------------------------------------------------------ (a) our writer, read by gguf-py

U64_MAX, I64_MIN, I64_MAX = (1 << 64) - 1, -(1 << 63), (1 << 63) - 1

# Mirrors build_all_types() in tests/tools/gguf_tool.cpp, written out independently.
OUR_METADATA = [
    ("general.architecture", "string", "test"),
    ("general.alignment", "uint32", 64),
    ("test.u8", "uint8", 255),
    ("test.i8", "int8", -128),
    ("test.u16", "uint16", 65535),
    ("test.i16", "int16", -32768),
    ("test.u32", "uint32", 4294967295),
    ("test.i32", "int32", -(1 << 31)),
    ("test.f32", "float32", f32(0.1)),
    ("test.f32_subnormal", "float32", f32(1e-40)),
    ("test.bool_true", "bool", True),
    ("test.bool_false", "bool", False),
    ("test.string", "string", "hello"),
    ("test.string_empty", "string", ""),
    ("test.string_unicode", "string", "héllo ✓ 日本 🦙"),
    ("test.u64", "uint64", U64_MAX),
    ("test.i64", "int64", I64_MIN),
    ("test.f64", "float64", 2.718281828459045),
    ("test.f64_tiny", "float64", -2.5e-300),
    ("test.arr_u8", "array[uint8]", [0, 1, 255]),
    ("test.arr_i8", "array[int8]", [-128, 0, 127]),
    ("test.arr_u16", "array[uint16]", [0, 65535]),
    ("test.arr_i16", "array[int16]", [-32768, 32767]),
    ("test.arr_u32", "array[uint32]", [0, 4294967295]),
    ("test.arr_i32", "array[int32]", [-(1 << 31), 0, (1 << 31) - 1]),
    ("test.arr_f32", "array[float32]", [0.5, -1.25, 1e10, f32(0.1)]),
    ("test.arr_bool", "array[bool]", [True, False, True]),
    ("test.arr_string", "array[string]", ["a", "", "ü"]),
    ("test.arr_u64", "array[uint64]", [0, U64_MAX]),
    ("test.arr_i64", "array[int64]", [I64_MIN, I64_MAX]),
    ("test.arr_f64", "array[float64]", [0.1, -2.5e-300]),
    ("test.arr_empty_u32", "array[uint32]", []),
    ("test.arr_empty_string", "array[string]", []),
    ("test.nested_ints", "array[array[int32]]", [[1, 2, 3], [4], []]),
    ("test.nested_strings", "array[array[string]]", [["x", "y"], ["z"]]),
    ("test.nested_deep", "array[array[array[array[int8]]]]", [[[[1, -1]]]]),
    ("test.nested_mixed", "array[array]", [[7], ["s"]]),
    ("tokenizer.ggml.tokens", "array[string]", ["<s>", "</s>", "hello"]),
    ("tokenizer.ggml.scores", "array[float32]", [0.0, -1.5, -2.0]),
    ("tokenizer.ggml.token_type", "array[int32]", [3, 3, 1]),
]

OUR_TENSORS = [  # name, type, dims (innermost first)
    ("t.f32", T.F32, [5, 3]), ("t.f16", T.F16, [7, 2]), ("t.bf16", T.BF16, [9]),
    ("t.q4_0", T.Q4_0, [64, 2]), ("t.q4_1", T.Q4_1, [32, 3]), ("t.q8_0", T.Q8_0, [96]),
    ("t.q6_K", T.Q6_K, [256, 2]), ("t.f32_4d", T.F32, [2, 3, 4, 5]),
]


def our_tensor_bytes(ttype: T, dims: list[int], t: int) -> bytes:
    """The deterministic bytes gguf_tool writes for tensor number t (see tensor_bytes() there)."""
    n = math.prod(dims)
    i = np.arange(n, dtype=np.uint64)
    if ttype == T.F32:
        return ((((i * 7 + t) % 97).astype(np.int64) - 48).astype(np.float32) * np.float32(0.25)).tobytes()
    if ttype in (T.F16, T.BF16):
        mask = 0x7BFF if ttype == T.F16 else 0x7F7F
        return (((i * 2311 + t * 97) & mask) | ((i & 1) << 15)).astype(np.uint16).tobytes()
    block, size = gguf.GGML_QUANT_SIZES[ttype]
    nbytes = n // block * size
    out = bytearray(((np.arange(nbytes, dtype=np.uint64) * 131 + t * 17 + 7) & 0xFF).astype(np.uint8).tobytes())
    for b in range(nbytes // size):
        base = b * size
        d, m = 0x2C00 + b % 16, 0xB800 + b % 16
        if ttype == T.Q6_K:
            out[base + 208: base + 210] = struct.pack("<H", d)
        else:
            out[base: base + 2] = struct.pack("<H", d)
            if ttype == T.Q4_1:
                out[base + 2: base + 4] = struct.pack("<H", m)
    return bytes(out)


@pytest.fixture(scope="module")
def our_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "all_types.gguf"
    run_tool("gguf_tool", "write-all-types", path)
    return path


def test_our_file_read_by_gguf_py(our_file: Path):
    r = gguf.GGUFReader(our_file)
    assert int(r.fields["GGUF.version"].parts[0][0]) == 3
    got = reader_fields(r)
    assert [k for k, _, _ in got] == [k for k, _, _ in OUR_METADATA]  # insertion order kept
    for (key, type_name, value), (gkey, gtype, gvalue) in zip(OUR_METADATA, got):
        assert gtype == type_name, key
        assert strict_eq(gvalue, value), f"{key}: {gvalue!r} != {value!r}"

    assert r.alignment == 64
    assert r.data_offset % 64 == 0
    assert len(r.tensors) == len(OUR_TENSORS)
    for t, (rt, (name, ttype, dims)) in enumerate(zip(r.tensors, OUR_TENSORS)):
        assert rt.name == name
        assert rt.tensor_type == ttype, name
        assert [int(d) for d in rt.shape] == dims, name
        assert rt.data_offset % 64 == 0, name
        assert np.asarray(rt.data).tobytes() == our_tensor_bytes(ttype, dims, t), name
    # The f16/bf16 patterns are finite numbers, as documented in the tool.
    f16 = np.frombuffer(our_tensor_bytes(T.F16, [7, 2], 1), dtype=np.float16)
    assert np.isfinite(f16).all()


# ------------------------------------------------------------------ (b) gguf-py's writer, read by us

def gguf_py_file(path: Path) -> tuple[list[tuple[str, str, object]], list[tuple[str, T, list[int], bytes]]]:
    """Writes a file with gguf.GGUFWriter; returns the metadata and tensors it holds."""
    w = gguf.GGUFWriter(path, arch="pytest")
    kvs = [
        ("py.u8", V.UINT8, None, 200), ("py.i8", V.INT8, None, -100), ("py.u16", V.UINT16, None, 60000),
        ("py.i16", V.INT16, None, -30000), ("py.u32", V.UINT32, None, 4000000000),
        ("py.i32", V.INT32, None, -2000000000), ("py.f32", V.FLOAT32, None, 1.1),
        ("py.bool", V.BOOL, None, True), ("py.bool_false", V.BOOL, None, False),
        ("py.string", V.STRING, None, "grüße ⚙"),
        ("py.u64", V.UINT64, None, U64_MAX), ("py.i64", V.INT64, None, I64_MIN),
        ("py.f64", V.FLOAT64, None, 1e-310),
        ("py.arr_u8", V.ARRAY, V.UINT8, [1, 2, 255]), ("py.arr_i8", V.ARRAY, V.INT8, [-1, 1]),
        ("py.arr_u16", V.ARRAY, V.UINT16, [65535]), ("py.arr_i16", V.ARRAY, V.INT16, [-2, 2]),
        ("py.arr_u32", V.ARRAY, V.UINT32, [7, 8]), ("py.arr_i32", V.ARRAY, V.INT32, [-7, 8]),
        ("py.arr_f32", V.ARRAY, V.FLOAT32, [0.25, 3.3]), ("py.arr_bool", V.ARRAY, V.BOOL, [False, True]),
        ("py.arr_string", V.ARRAY, V.STRING, ["α", "", "b"]),
        ("py.arr_u64", V.ARRAY, V.UINT64, [U64_MAX, 0]), ("py.arr_i64", V.ARRAY, V.INT64, [I64_MIN, I64_MAX]),
        ("py.arr_f64", V.ARRAY, V.FLOAT64, [0.1, -0.0]),
        ("py.nested", V.ARRAY, V.ARRAY, [[1, 2], [3]]),                # inner arrays: int32
        ("py.nested_str", V.ARRAY, V.ARRAY, [["a"], ["b", "c"]]),
        ("py.nested_mixed", V.ARRAY, V.ARRAY, [[1.5], ["s"], [True]]),
        ("py.nested_deep", V.ARRAY, V.ARRAY, [[[1]], [[2, 3]]]),
    ]
    for key, vtype, sub, value in kvs:
        w.add_key_value(key, value, vtype, sub_type=sub)

    rng = np.random.default_rng(20240611)
    tensors = []
    skip = {T.Q8_1}  # gguf-py's size for it is stale (see the module docstring)
    for k, ttype in enumerate(t for t in T if t not in skip):
        block, size = gguf.GGML_QUANT_SIZES[ttype]
        dims = [block * 2, 3]  # innermost first
        nbytes = dims[0] // block * size * dims[1]
        raw = rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes()
        name = f"t{k}.{ttype.name.lower()}"
        if ttype in (T.F32, T.F16, T.F64, T.I8, T.I16, T.I32, T.I64):
            np_type = {T.F32: np.float32, T.F16: np.float16, T.F64: np.float64, T.I8: np.int8,
                       T.I16: np.int16, T.I32: np.int32, T.I64: np.int64}[ttype]
            w.add_tensor(name, np.frombuffer(raw, dtype=np_type).reshape(dims[1], dims[0]))
        else:
            w.add_tensor(name, np.frombuffer(raw, dtype=np.uint8).reshape(dims[1], nbytes // dims[1]),
                         raw_dtype=ttype)
        tensors.append((name, ttype, dims, raw))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    def expect(vtype, sub, value):
        """(value as our dump shows it, our type name) for what gguf-py packs."""
        if vtype == V.ARRAY:
            # gguf-py packs an inner array's elements with the type of its first element.
            et = sub if sub is not None else V.get_type(value[0])
            items = [expect(et, None, x) for x in value]
            names = [n for _, n in items]
            if et != V.ARRAY:
                name = f"array[{TYPE_NAMES[et]}]"
            else:
                name = f"array[{names[0]}]" if names and all(n == names[0] for n in names) else "array[array]"
            return [v for v, _ in items], name
        if vtype == V.FLOAT32:
            return f32(value), "float32"
        return value, TYPE_NAMES[vtype]

    meta = [("general.architecture", "string", "pytest")]
    for key, vtype, sub, value in kvs:
        v, n = expect(vtype, sub, value)
        meta.append((key, n, v))
    return meta, tensors


def test_gguf_py_file_read_by_us(tmp_path: Path):
    path = tmp_path / "py.gguf"
    meta, tensors = gguf_py_file(path)
    ours = our_json(path)
    assert list(ours["metadata"].keys()) == sorted(k for k, _, _ in meta)
    for key, type_name, value in meta:
        assert ours["metadata_types"][key] == type_name, key
        assert strict_eq(ours["metadata"][key], value), f"{key}: {ours['metadata'][key]!r} != {value!r}"
    assert len(ours["tensors"]) == len(tensors)
    for got, (name, ttype, dims, raw) in zip(ours["tensors"], tensors):
        assert got["name"] == name
        assert got["type"] == ggml_name(ttype), name
        assert got["shape"] == dims, name
        assert got["bytes"] == len(raw), name
        assert got["offset"] % 32 == 0, name
        assert got["xxh3"] == xxhash.xxh3_64(raw).hexdigest(), name
        assert path.read_bytes()[got["offset"]: got["offset"] + len(raw)] == raw, name


# ------------------------------------------------------------------ (c) our dump == gguf-py's view

def test_dump_matches_gguf_py_our_file(our_file: Path):
    assert strict_eq(our_json(our_file), reader_json(our_file))


def test_dump_matches_gguf_py_their_file(tmp_path: Path):
    path = tmp_path / "py.gguf"
    gguf_py_file(path)
    assert strict_eq(our_json(path), reader_json(path))


def test_dump_matches_gguf_py_real_model(default_model: Path):
    ours, theirs = our_json(default_model), reader_json(default_model)
    assert len(ours["tensors"]) == 272 and len(ours["metadata"]) == 33
    for key in theirs:
        assert strict_eq(ours[key], theirs[key]), key
