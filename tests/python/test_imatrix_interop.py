"""Our imatrix reader/writer (src/convert/imatrix_file.cpp, driven through build/tests/imatrix_tool)
against witnesses we did not write, in llama.cpp's layouts (tools/imatrix/imatrix.cpp):

  (a) the GGUF our writer makes, read by gguf.GGUFReader: llama-imatrix's keys, key types, tensor names
      and order, shapes (ggml's trimmed n_dims), types and the values we wrote;
  (b) a GGUF made by gguf.GGUFWriter in llama-imatrix's layout (numpy shapes, so gguf-py's untrimmed
      dims) read by ours: the same values, and importance = in_sum2 / count (1 where count is 0), as
      llama-quantize derives it;
  (c) a legacy .dat packed here byte by byte as save_imatrix_legacy writes it, read by ours, with
      importance = value / ncall as llama-quantize's legacy loader derives it;
  (d) a broken file and an existing output are refused with one line.
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V

from conftest import run_tool, tool

SEED = 20240611


def entries(seed: int = SEED) -> list[dict]:
    """A dense weight (one matrix) and an MoE weight (3 experts, expert 1 never routed to)."""
    rng = np.random.default_rng(seed)
    q = (rng.standard_normal(8, dtype=np.float32) ** 2 * 100).astype(np.float32)
    moe = (rng.standard_normal((3, 4), dtype=np.float32) ** 2 * 10).astype(np.float32)
    moe[1] = 0
    return [
        {"name": "blk.0.attn_q.weight", "in_sum2": q.reshape(1, 8), "counts": np.array([6144], np.float32)},
        {"name": "blk.1.ffn_up_exps.weight", "in_sum2": moe, "counts": np.array([40, 0, 17], np.float32)},
    ]


def expected_importance(e: dict) -> list[float]:
    """llama-quantize's load_imatrix: sums / count per matrix, 1 for a matrix with count 0 (float32)."""
    out = []
    for row, c in zip(e["in_sum2"], e["counts"]):
        out += [float(v / c) if c > 0 else 1.0 for v in row.astype(np.float32)]
    return out


def dump(path: Path) -> dict:
    return json.loads(run_tool("imatrix_tool", "dump", path))


def field_value(f):
    """The value of a gguf.ReaderField: a scalar, a string, or a list of strings."""
    if f.types[0] == V.STRING:
        return bytes(f.parts[f.data[0]]).decode()
    if f.types[0] == V.ARRAY:
        assert f.types[1] == V.STRING
        return [bytes(f.parts[i]).decode() for i in f.data]
    return f.parts[f.data[0]].tolist()[0]


def test_our_gguf_read_by_gguf_py(tmp_path):
    es = entries()
    spec = {"datasets": ["wiki.train.raw", "more.txt"], "chunk_count": 25, "chunk_size": 512,
            "entries": [{"name": e["name"], "in_sum2": e["in_sum2"].ravel().tolist(),
                         "counts": e["counts"].tolist()} for e in reversed(es)]}  # writer must sort
    src = tmp_path / "in.json"
    src.write_text(json.dumps(spec))
    out = tmp_path / "ours.imatrix.gguf"
    run_tool("imatrix_tool", "write-gguf", src, out)

    r = gguf.GGUFReader(out)
    assert r.data_offset % 32 == 0
    keys = [k for k in r.fields if not k.startswith("GGUF.")]
    assert keys == ["general.type", "imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"]
    assert r.fields["general.type"].types == [V.STRING]
    assert field_value(r.fields["general.type"]) == "imatrix"
    assert r.fields["imatrix.datasets"].types == [V.ARRAY, V.STRING]
    assert field_value(r.fields["imatrix.datasets"]) == spec["datasets"]
    for k, v in (("imatrix.chunk_count", 25), ("imatrix.chunk_size", 512)):
        assert r.fields[k].types == [V.UINT32], k  # ggml asserts this type in llama-quantize
        assert field_value(r.fields[k]) == v

    # llama-imatrix: sorted by weight name, in_sum2 then counts, f32, ne {n_cols, n_mat} and {1, n_mat}
    # with ggml's trailing 1s dropped (a single matrix is {n_cols} and {1}).
    want = [("blk.0.attn_q.weight.in_sum2", [8], es[0]["in_sum2"]),
            ("blk.0.attn_q.weight.counts", [1], es[0]["counts"]),
            ("blk.1.ffn_up_exps.weight.in_sum2", [4, 3], es[1]["in_sum2"]),
            ("blk.1.ffn_up_exps.weight.counts", [1, 3], es[1]["counts"])]
    assert [t.name for t in r.tensors] == [w[0] for w in want]
    for t, (name, shape, values) in zip(r.tensors, want):
        assert t.tensor_type == T.F32, name
        assert t.shape.tolist() == shape, name
        np.testing.assert_array_equal(np.asarray(t.data, np.float32).ravel(), values.ravel(), err_msg=name)

    # And ours reads back what it wrote.
    d = dump(out)
    assert d["format"] == "gguf" and d["datasets"] == spec["datasets"]
    assert [e["name"] for e in d["entries"]] == [e["name"] for e in es]


def test_gguf_py_file_read_by_ours(tmp_path):
    es = entries(SEED + 1)
    path = tmp_path / "gguf_py.imatrix.gguf"
    w = gguf.GGUFWriter(path, arch="imatrix")  # gguf-py always adds general.architecture: ignored
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", ["calib.txt"])
    w.add_uint32("imatrix.chunk_count", 7)
    w.add_uint32("imatrix.chunk_size", 256)
    for e in es:
        w.add_tensor(e["name"] + ".in_sum2", e["in_sum2"])                 # numpy (n_mat, n_cols)
        w.add_tensor(e["name"] + ".counts", e["counts"].reshape(-1, 1))    # numpy (n_mat, 1)
    w.add_tensor("unrelated.tensor", np.ones(4, np.float32))  # llama.cpp ignores other tensors
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    d = dump(path)
    assert d["format"] == "gguf"
    assert d["datasets"] == ["calib.txt"]
    assert d["chunk_count"] == 7 and d["chunk_size"] == 256
    assert [e["name"] for e in d["entries"]] == [e["name"] for e in es]
    for got, e in zip(d["entries"], es):
        assert got["n_mat"] == e["in_sum2"].shape[0] and got["n_cols"] == e["in_sum2"].shape[1]
        assert got["in_sum2"] == e["in_sum2"].ravel().tolist()
        assert got["counts"] == e["counts"].tolist()
        assert got["importance"] == expected_importance(e), e["name"]
    assert d["entries"][1]["importance"][4:8] == [1.0] * 4  # the expert without data


def legacy_bytes(es: list[dict], ncalls: list[int], last_chunk: int | None, dataset: str | None) -> bytes:
    """save_imatrix_legacy: int32 n_entries; per entry int32 len, name, int32 ncall, int32 nval,
    f32 values (mean x^2 * ncall, experts concatenated); then int32 last_chunk, int32 len, dataset."""
    b = struct.pack("<i", len(es))
    for e, ncall in zip(es, ncalls):
        name = e["name"].encode()
        vals = e["in_sum2"].astype("<f4").ravel()
        b += struct.pack("<i", len(name)) + name + struct.pack("<ii", ncall, vals.size) + vals.tobytes()
    if last_chunk is not None:
        b += struct.pack("<i", last_chunk)
    if dataset is not None:
        b += struct.pack("<i", len(dataset.encode())) + dataset.encode()
    return b


@pytest.mark.parametrize("trailer", [(9, "wiki.raw"), (None, None)], ids=["with_dataset", "oldest"])
def test_legacy_dat_read_by_ours(tmp_path, trailer):
    es = entries(SEED + 2)
    ncalls = [12, 3]
    path = tmp_path / "legacy.dat"
    path.write_bytes(legacy_bytes(es, ncalls, *trailer))
    d = dump(path)
    assert d["format"] == "legacy"
    assert d["datasets"] == ([trailer[1]] if trailer[1] is not None else [])
    assert d["chunk_count"] == (trailer[0] or 0)
    assert d["chunk_size"] == 0  # the legacy format does not store it
    for got, e, ncall in zip(d["entries"], es, ncalls):
        vals = e["in_sum2"].astype(np.float32).ravel()
        assert got["name"] == e["name"]
        assert got["n_mat"] == 1 and got["n_cols"] == vals.size  # experts are not told apart in .dat
        assert got["in_sum2"] == vals.tolist()
        assert got["counts"] == [float(ncall)]
        # llama-quantize's load_legacy_imatrix: v /= ncall.
        assert got["importance"] == [float(v / np.float32(ncall)) for v in vals]


def test_broken_and_existing_files_are_refused(tmp_path):
    es = entries()
    path = tmp_path / "cut.dat"
    path.write_bytes(legacy_bytes(es, [1, 1], 1, "x")[:60])  # inside entry 0's values
    proc = subprocess.run([str(tool("imatrix_tool")), "dump", str(path)], capture_output=True)
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert err.count("\n") == 1 and str(path) in err and "truncated" in err, err

    src = tmp_path / "in.json"
    src.write_text(json.dumps({"datasets": ["d"], "chunk_count": 1, "chunk_size": 1,
                               "entries": [{"name": "w", "in_sum2": [1.0], "counts": [1.0]}]}))
    out = tmp_path / "exists.gguf"
    out.write_bytes(b"keep")
    proc = subprocess.run([str(tool("imatrix_tool")), "write-gguf", str(src), str(out)],
                                        capture_output=True)
    assert proc.returncode == 1 and "[option overwrite]" in proc.stderr.decode()
    assert out.read_bytes() == b"keep"
    run_tool("imatrix_tool", "write-gguf", src, out, "--force")
    assert dump(out)["entries"][0]["importance"] == [1.0]
