"""Our safetensors reader/writer against the reference `safetensors` package (Hugging Face).

Tools come from QE_TEST_BIN (default <repo>/build/tests): st_tool dump PATH [--hash], st_tool write OUT.
"""

import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import safetensors
import xxhash
from safetensors import TensorSpec, safe_open
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("QE_TEST_BIN", REPO / "build" / "tests"))
ST_TOOL = BIN / "st_tool"

pytestmark = pytest.mark.skipif(not ST_TOOL.exists(), reason=f"{ST_TOOL} not built")


def run_tool(*args, ok=True):
    p = subprocess.run([str(ST_TOOL), *map(str, args)], capture_output=True, text=True)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def dump(path, hash_=True):
    return json.loads(run_tool("dump", path, *(["--hash"] if hash_ else [])).stdout)


def bf16_bits(a):
    """Exact bf16 bits of float32 values that fit in 8 significant bits."""
    bits = np.asarray(a, dtype=np.float32).view(np.uint32)
    assert np.all((bits & 0xFFFF) == 0)
    return (bits >> 16).astype(np.uint16)


def expected_tensors():
    """What `st_tool write` writes (keep in step with tests/tools/st_tool.cpp), in file order:
    name -> (safetensors dtype, numpy array holding the raw values; bf16 as uint16 bits)."""
    return {
        "a.weight": ("F32", (np.arange(6, dtype=np.float32) * 0.5 - 1.0).reshape(2, 3)),
        "b.empty": ("F32", np.zeros((0, 4), dtype=np.float32)),
        "c.scalar": ("F32", np.array(3.25, dtype=np.float32)),
        "d.bf16.weight": ("BF16", bf16_bits(np.arange(24, dtype=np.float32) * 0.25 - 2.0).reshape(2, 3, 4)),
        "e.f16": ("F16", (np.arange(5, dtype=np.float32) * 1.5 - 3.0).astype(np.float16)),
    }


EXPECTED_METADATA = {"format": "pt", "producer": "qe st_tool"}


def read_header(path):
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return raw, n, json.loads(raw[8 : 8 + n])


def test_our_file_loads_in_reference(tmp_path):
    out = tmp_path / "ours.safetensors"
    run_tool("write", out)
    expected = expected_tensors()
    with safe_open(str(out), framework="np") as f:
        assert f.metadata() == EXPECTED_METADATA
        assert f.offset_keys() == list(expected)
        for name, (dtype, arr) in expected.items():
            if dtype == "BF16":
                continue  # numpy has no bfloat16: checked through the raw bytes below
            got = f.get_tensor(name)
            assert got.dtype == arr.dtype, name
            assert got.shape == arr.shape, name
            np.testing.assert_array_equal(got, arr)
    # The reference's own parser (checks coverage, offsets, sizes) and the raw bytes of every tensor.
    views = dict(safetensors.deserialize(out.read_bytes()))
    assert set(views) == set(expected)
    for name, (dtype, arr) in expected.items():
        assert views[name]["dtype"] == dtype
        assert views[name]["shape"] == list(arr.shape)
        assert bytes(views[name]["data"]) == arr.tobytes(), name
    # The data section starts 8-byte aligned, as the reference writer pads it.
    _, n, _ = read_header(out)
    assert (8 + n) % 8 == 0


def test_our_bytes_match_reference_serializer(tmp_path):
    out = tmp_path / "ours.safetensors"
    run_tool("write", out)
    names = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
    arrays = {k: np.ascontiguousarray(a) for k, (_, a) in expected_tensors().items()}
    specs = {
        k: TensorSpec(dtype=names[d], shape=list(a.shape), data_ptr=arrays[k].ctypes.data, data_len=a.nbytes)
        for k, (d, a) in expected_tensors().items()
    }
    ref = safetensors.serialize(specs, metadata=EXPECTED_METADATA)
    ours = out.read_bytes()
    # Same length, same header (metadata key order is a hash map's in the reference), same data.
    assert len(ours) == len(ref)
    assert ours[:8] == ref[:8]
    (n,) = struct.unpack("<Q", ref[:8])
    assert json.loads(ours[8 : 8 + n]) == json.loads(ref[8 : 8 + n])
    assert ours[8 + n :] == ref[8 + n :]


def check_dump_matches_file(path, got, file_name=None):
    """Every tensor of `path` (read with the reference) appears in our dump with the same facts."""
    raw, n, header = read_header(path)
    with safe_open(str(path), framework="np") as f:
        order = f.offset_keys()
    ref = dict(safetensors.deserialize(raw))
    rows = [t for t in got["tensors"] if file_name is None or t["file"] == file_name]
    assert [t["name"] for t in rows] == order
    for t in rows:
        h = header[t["name"]]
        begin, end = h["data_offsets"]
        assert t["type"] == h["dtype"] == ref[t["name"]]["dtype"]
        assert t["shape"] == h["shape"]
        assert t["offset"] == 8 + n + begin
        assert t["bytes"] == end - begin
        data = raw[8 + n + begin : 8 + n + end]
        assert data == bytes(ref[t["name"]]["data"])
        assert t["xxh3"] == xxhash.xxh3_64(data).hexdigest()
        assert len(t["xxh3"]) == 16


def test_reference_numpy_file_dumped_by_us(tmp_path):
    rng = np.random.default_rng(1234)
    tensors = {
        "model.embed_tokens.weight": rng.standard_normal((7, 5)).astype(np.float32),
        "model.norm.weight": rng.standard_normal(5).astype(np.float16),
        "position_ids": np.arange(11, dtype=np.int64).reshape(1, 11),
        "mask": rng.integers(0, 255, size=(3, 3), dtype=np.uint8),
        "flags": np.array([True, False, True]),
        "f64": rng.standard_normal((2, 2)),
        "i32.scalar": np.array(-7, dtype=np.int32),
        "u16": np.arange(3, dtype=np.uint16),
    }
    path = tmp_path / "np.safetensors"
    save_file(tensors, str(path), metadata={"format": "np", "note": "ünïcode"})
    got = dump(path)
    assert got["metadata"] == {"format": "np", "note": "ünïcode"}
    check_dump_matches_file(path, got)
    by_name = {t["name"]: t for t in got["tensors"]}
    assert by_name["position_ids"]["type"] == "I64"
    assert by_name["mask"]["type"] == "U8"
    assert by_name["flags"]["type"] == "BOOL"
    assert by_name["i32.scalar"]["shape"] == []


def test_reference_bf16_and_fp8_file_dumped_by_us(tmp_path):
    bf = bf16_bits(np.arange(12, dtype=np.float32) * 0.5 - 3.0).reshape(3, 4)
    f32 = np.arange(6, dtype=np.float32)
    f8 = np.arange(10, dtype=np.uint8)
    specs = {
        "w.bf16": TensorSpec(dtype="bfloat16", shape=[3, 4], data_ptr=bf.ctypes.data, data_len=bf.nbytes),
        "w.f32": TensorSpec(dtype="float32", shape=[6], data_ptr=f32.ctypes.data, data_len=f32.nbytes),
        "w.f8": TensorSpec(dtype="float8_e4m3fn", shape=[2, 5], data_ptr=f8.ctypes.data, data_len=f8.nbytes),
    }
    path = tmp_path / "bf.safetensors"
    safetensors.serialize_file(specs, str(path), metadata={"format": "pt"})
    got = dump(path)
    check_dump_matches_file(path, got)
    types = {t["name"]: t["type"] for t in got["tensors"]}
    assert types == {"w.bf16": "BF16", "w.f32": "F32", "w.f8": "F8_E4M3"}


def test_sharded_directory_dumped_by_us(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    rng = np.random.default_rng(7)
    shards = {
        "model-00001-of-00002.safetensors": {
            "model.embed_tokens.weight": rng.standard_normal((6, 4)).astype(np.float32),
            "model.layers.0.input_layernorm.weight": np.ones(4, dtype=np.float16),
        },
        "model-00002-of-00002.safetensors": {
            "lm_head.weight": rng.standard_normal((6, 4)).astype(np.float32),
            "model.norm.weight": np.ones(4, dtype=np.float32),
        },
    }
    weight_map = {}
    for file_name, tensors in shards.items():
        save_file(tensors, str(model / file_name), metadata={"format": "pt"})
        weight_map.update({k: file_name for k in tensors})
    total = sum(a.nbytes for t in shards.values() for a in t.values())
    (model / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    )
    config = {"architectures": ["LlamaForCausalLM"], "hidden_size": 4, "rope_theta": 10000.0}
    (model / "config.json").write_text(json.dumps(config))

    got = dump(model)
    assert got["metadata"]["config"] == config
    assert got["metadata"]["format"] == "pt"
    assert {t["name"]: t["file"] for t in got["tensors"]} == weight_map
    assert len(got["tensors"]) == len(weight_map)
    for file_name in shards:
        check_dump_matches_file(model / file_name, got, file_name)


def test_bad_inputs_fail_with_one_line(tmp_path):
    good = tmp_path / "good.safetensors"
    save_file({"x": np.ones(4, dtype=np.float32)}, str(good))
    raw = good.read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(raw[:-1])
    p = run_tool("dump", bad, ok=False)
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1
    assert str(bad) in p.stderr and "tensor x" in p.stderr and "run past the end" in p.stderr

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "../good.safetensors"}}))
    p = run_tool("dump", model, ok=False)
    assert p.returncode == 1
    assert "weight_map.x" in p.stderr and ".." in p.stderr
