"""A byte-level GGUF writer for hostile-input tests: every field of the header, the metadata and the
tensor infos can be set to a value no honest writer would produce (counts larger than the file,
duplicate keys, unaligned or overlapping offsets, out-of-range types, arrays nested too deep...).

A `Gguf` holds metadata as (key, type, value) triples and tensors as (name, dims, type, data) in file
order; `to_bytes()` lays them out as GGUF v3 (little-endian, dims innermost first, offsets relative to
the aligned data section) with overrides for the fields a test wants to break. `from_file()` loads a
valid GGUF (e.g. one written by make_tiny_model.py) through gguf-py's reader, so a test can start from
a complete llama model and break exactly one thing.
"""

from __future__ import annotations

import copy
import struct
from dataclasses import dataclass, field

# GGUF value types (gguf.h: enum gguf_type).
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B",
           U64: "<Q", I64: "<q", F64: "<d"}


def enc_str(s: str | bytes, length: int | None = None) -> bytes:
    """A GGUF string: u64 length then the bytes; `length` overrides the stored length."""
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b) if length is None else length) + b


def enc_value(vtype: int, value) -> bytes:
    """The bytes of a value of type `vtype` (without the type tag). An array value is
    (element_type, [values]); a `bytes` value is taken as already encoded."""
    if isinstance(value, (bytes, bytearray)) and vtype != STR:
        return bytes(value)
    if vtype == STR:
        return enc_str(value)
    if vtype == ARR:
        etype, items = value
        out = struct.pack("<IQ", etype, len(items))
        return out + b"".join(enc_value(etype, v) for v in items)
    return struct.pack(_SCALAR[vtype], value)


def enc_kv(key: str | bytes, vtype: int, value) -> bytes:
    return enc_str(key) + struct.pack("<I", vtype) + enc_value(vtype, value)


def nested_array(depth: int) -> bytes:
    """The encoded value of an array nested `depth` levels deep (depth 1 = an array of one u8), built
    without recursion so that a depth of 10^5 is cheap."""
    return struct.pack("<IQ", ARR, 1) * (depth - 1) + struct.pack("<IQB", U8, 1, 7)


@dataclass
class Tensor:
    name: str | bytes
    dims: list[int]     # innermost first, as GGUF stores them
    ttype: int          # ggml type id
    data: bytes


@dataclass
class Gguf:
    kvs: list[tuple[str | bytes, int, object]] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)
    alignment: int = 32

    def copy(self) -> "Gguf":
        return copy.deepcopy(self)

    # ---- Metadata edits
    def keys(self) -> list:
        return [k for k, _, _ in self.kvs]

    def get(self, key: str):
        for k, _, v in self.kvs:
            if k == key:
                return v
        raise KeyError(key)

    def set(self, key: str, vtype: int, value) -> "Gguf":
        for i, (k, _, _) in enumerate(self.kvs):
            if k == key:
                self.kvs[i] = (key, vtype, value)
                return self
        self.kvs.append((key, vtype, value))
        return self

    def drop(self, key: str) -> "Gguf":
        self.kvs = [kv for kv in self.kvs if kv[0] != key]
        return self

    def tensor(self, name: str) -> Tensor:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def drop_tensor(self, name: str) -> "Gguf":
        self.tensors = [t for t in self.tensors if t.name != name]
        return self

    # ---- Layout
    def data_layout(self) -> list[int]:
        """Offsets of each tensor in the data section, each aligned."""
        offsets, pos = [], 0
        for t in self.tensors:
            pos = _align(pos, self.alignment)
            offsets.append(pos)
            pos += len(t.data)
        return offsets

    def to_bytes(self, *, magic: bytes = b"GGUF", version: int = 3, n_kv: int | None = None,
                 n_tensors: int | None = None, offsets: dict[int, int] | None = None,
                 n_dims: dict[int, int] | None = None, raw_kvs: list[bytes] | None = None) -> bytes:
        """The file. `offsets` / `n_dims` override tensor i's stored offset / dim count; `raw_kvs`
        are appended to the metadata as already-encoded key/value records (counted in n_kv)."""
        raw_kvs = raw_kvs or []
        out = bytearray(magic)
        out += struct.pack("<I", version)
        out += struct.pack("<Q", len(self.tensors) if n_tensors is None else n_tensors)
        out += struct.pack("<Q", len(self.kvs) + len(raw_kvs) if n_kv is None else n_kv)
        for k, vt, v in self.kvs:
            out += enc_kv(k, vt, v)
        for raw in raw_kvs:
            out += raw
        layout = self.data_layout()
        for i, t in enumerate(self.tensors):
            out += enc_str(t.name)
            out += struct.pack("<I", len(t.dims) if not n_dims or i not in n_dims else n_dims[i])
            out += b"".join(struct.pack("<Q", d) for d in t.dims)
            out += struct.pack("<I", t.ttype)
            out += struct.pack("<Q", offsets[i] if offsets and i in offsets else layout[i])
        out += bytes(_align(len(out), self.alignment) - len(out))
        data_start = len(out)
        for t, off in zip(self.tensors, layout):
            out += bytes(data_start + off - len(out))
            out += t.data
        return bytes(out)

    def header_end(self) -> int:
        """Where the data section starts in to_bytes() (the aligned end of the tensor infos)."""
        return len(self.copy_without_data().to_bytes())

    def copy_without_data(self) -> "Gguf":
        g = self.copy()
        for t in g.tensors:
            t.data = b""
        return g


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def from_file(path: str) -> Gguf:
    """Reads a valid GGUF with gguf-py into a Gguf that to_bytes() can write back."""
    import numpy as np
    from gguf import GGUFReader

    r = GGUFReader(path)
    g = Gguf()
    for name, f in r.fields.items():
        if name.startswith("GGUF."):
            continue
        vt = int(f.types[0])
        if vt == ARR:
            et = int(f.types[1])
            if et == STR:
                items = [bytes(f.parts[i]) for i in f.data]
            else:
                items = [f.parts[i][0].item() for i in f.data]
            g.kvs.append((name, ARR, (et, items)))
        elif vt == STR:
            g.kvs.append((name, STR, bytes(f.parts[f.data[0]])))
        else:
            g.kvs.append((name, vt, f.parts[f.data[0]][0].item()))
        if name == "general.alignment":
            g.alignment = int(f.parts[f.data[0]][0])
    for t in r.tensors:
        g.tensors.append(Tensor(t.name, [int(d) for d in t.shape], int(t.tensor_type),
                                np.ascontiguousarray(t.data).tobytes()))
    return g
