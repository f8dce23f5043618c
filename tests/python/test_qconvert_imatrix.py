"""qconvert --imatrix: importance-weighted rounding, end to end, against ggml itself.

Every quantized tensor qconvert writes with an importance matrix must be, byte for byte, what ggml's
ggml_quantize_chunk writes for the same f32 rows and that tensor's imatrix row (what llama-quantize
--imatrix writes): GGUF -> GGUF and HF -> GGUF (q/k rows permuted as convert_hf_to_gguf.py does; the
importance is per column, so the permutation leaves it alone), q4_0 and q4_1, --pure. Tensors without an
entry are rounded plainly; entries for tensors the model does not have are ignored; q8_0 ignores the
imatrix. The legacy .dat form gives the same bytes as the GGUF form, and the output carries
llama-quantize's quantize.imatrix.* keys with its types. A bad imatrix is one line on stderr and no output.

The witness is llama-cpp-python's libggml-base loaded with ctypes (as in test_quant_imatrix.py); the tests
that need it are skipped when llama_cpp is not installed.
"""

from __future__ import annotations

import ctypes
import json
import os
import pathlib
import struct
import subprocess

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf import GGUFValueType as V

from ggml_quantizers import TYPES as GGML_TYPES, ggml_quantize, load_ggml
from conftest import REPO
from make_tiny_hf_model import make_tiny_hf_model
from make_tiny_model import TinySpec, write_model

BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))
SEED = 20240612
# ggml.h's enum ggml_type and each type's bytes per block of 32.
QTYPES = {T.Q4_0: "q4_0", T.Q4_1: "q4_1", T.Q8_0: "q8_0"}


def qconvert(*args, ok=True):
    exe = BIN / "qconvert"
    if not exe.exists():
        pytest.skip(f"{exe} is not built (set QE_BIN)")
    p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=300)
    if ok and p.returncode != 0:
        pytest.fail(f"qconvert {' '.join(map(str, args))} exited {p.returncode}: {p.stderr}")
    return p


@pytest.fixture(scope="module")
def ggml() -> ctypes.CDLL:
    return load_ggml()


# ---------------------------------------------------------------------------------------------- inputs

def imatrix_entries(model: dict[str, np.ndarray], rng: np.random.Generator, skip: set[str]) -> dict:
    """name -> (in_sum2 (n_cols,), count): llama-imatrix-like sums (log-normal channel scales, a few hot
    channels, one dead channel) for every 2-D blk weight except `skip`, and one for a weight the model
    does not have (blk.9.*: must be ignored)."""
    out = {}
    names = [n for n, v in model.items() if v.ndim == 2 and n.startswith("blk.") and n not in skip]
    for name in names + ["blk.9.attn_q.weight"]:
        cols = model[name].shape[1] if name in model else 64
        count = float(rng.integers(200, 5000))
        scale = np.exp(rng.normal(0.0, 1.2, cols))
        scale[rng.random(cols) < 0.03] *= 10.0
        sums = (scale ** 2 * count).astype(np.float32)
        sums[rng.integers(cols)] = 0.0
        out[name] = (sums, np.float32(count))
    return out


def write_imatrix_gguf(path: pathlib.Path, entries: dict, dataset="calib.txt", chunks=12) -> None:
    """llama-imatrix's GGUF layout, written by gguf-py (numpy shapes: in_sum2 (1, n_cols), counts (1, 1))."""
    w = gguf.GGUFWriter(path, arch="imatrix")
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", [dataset])
    w.add_uint32("imatrix.chunk_count", chunks)
    w.add_uint32("imatrix.chunk_size", 512)
    for name in sorted(entries):
        sums, count = entries[name]
        w.add_tensor(name + ".in_sum2", np.asarray(sums, np.float32).reshape(-1, np.asarray(sums).shape[-1]))
        w.add_tensor(name + ".counts", np.asarray(count, np.float32).reshape(-1, 1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_imatrix_dat(path: pathlib.Path, entries: dict, dataset="calib.txt", chunks=12) -> None:
    """save_imatrix_legacy: values are mean(x^2) * ncall, i.e. the sums; ncall the count."""
    b = struct.pack("<i", len(entries))
    for name in sorted(entries):
        sums, count = entries[name]
        vals = np.asarray(sums, "<f4").ravel()
        b += struct.pack("<i", len(name)) + name.encode() + struct.pack("<ii", int(count), vals.size) + vals.tobytes()
    b += struct.pack("<i", chunks) + struct.pack("<i", len(dataset)) + dataset.encode()
    path.write_bytes(b)


def importance(entry) -> np.ndarray:
    """llama-quantize's load_imatrix: in_sum2 / count in float32 (1 everywhere when count is 0)."""
    sums, count = entry
    return np.asarray(sums, np.float32) / np.float32(count)


def tensors_of(path: pathlib.Path) -> dict:
    return {t.name: t for t in GGUFReader(path).tensors}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An f32 GGUF (untied, so output.weight exists), its weights, and its imatrix in both formats."""
    d = tmp_path_factory.mktemp("imatrix")
    src = d / "tiny-f32.gguf"
    write_model(str(src), TinySpec(wtype="f32", tied=False, seed=7))
    model = {name: np.asarray(t.data).reshape(list(reversed(t.shape.tolist()))).astype(np.float32)
             for name, t in tensors_of(src).items()}
    entries = imatrix_entries(model, np.random.default_rng(SEED), skip={"blk.1.ffn_down.weight"})
    entries["output.weight"] = (np.abs(np.random.default_rng(SEED + 1).standard_normal(64)).astype(np.float32) * 50,
                                np.float32(100))
    write_imatrix_gguf(d / "im.gguf", entries)
    write_imatrix_dat(d / "im.dat", entries)
    return d, src, model, entries


def check_against_ggml(ggml, out: pathlib.Path, model: dict, entries: dict, report: pathlib.Path | None = None):
    """Every q4_0/q4_1/q8_0 tensor of `out` equals ggml's bytes for the source rows and its imatrix row."""
    got = tensors_of(out)
    assert got.keys() == model.keys()
    weighted = set()
    n_checked = 0
    for name, t in got.items():
        if t.tensor_type not in QTYPES:
            assert t.tensor_type == T.F32 and model[name].ndim == 1, name
            continue
        qname = QTYPES[t.tensor_type]
        w = importance(entries[name]) if name in entries else None
        if w is not None and qname != "q8_0":
            weighted.add(name)
        want = ggml_quantize(ggml, qname, model[name], w)
        have = bytes(np.asarray(t.data).view(np.uint8).ravel())
        if have != want:
            a, b = np.frombuffer(have, np.uint8), np.frombuffer(want, np.uint8)
            bad = np.flatnonzero(a != b)
            blk = bad[0] // GGML_TYPES[qname][1] if a.size == b.size and bad.size else -1
            pytest.fail(f"{name} ({qname}, imatrix {'yes' if w is not None else 'no'}, seed {SEED}): "
                        f"{len(have)} vs {len(want)} bytes, {bad.size} differ, first in block {blk}")
        n_checked += 1
    assert n_checked >= 14
    if report is not None:
        rep = json.loads(report.read_text())
        assert {x["name"] for x in rep["tensors"] if x["weighted"]} == weighted
    return weighted


def kv(path: pathlib.Path) -> dict:
    """Metadata as {key: (types, value)} for the scalar and string keys."""
    out = {}
    for k, f in GGUFReader(path).fields.items():
        if f.types and f.types[0] == V.STRING:
            out[k] = (f.types, bytes(f.parts[f.data[0]]).decode())
        elif f.types and f.types[0] != V.ARRAY:
            out[k] = (f.types, f.parts[f.data[0]].tolist()[0])
    return out


# ---------------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("qtype", ["q4_0", "q4_1"])
def test_gguf_to_gguf_matches_ggml(ggml, tiny, tmp_path, qtype):
    d, src, model, entries = tiny
    out, report = tmp_path / f"out-{qtype}.gguf", tmp_path / "r.json"
    p = qconvert(src, "-o", out, "--type", qtype, "--pure", "--imatrix", d / "im.gguf", "--report", report, "-t", 2)
    weighted = check_against_ggml(ggml, out, model, entries, report)
    # Every blk weight but the one without an entry, and output.weight; never token_embd (no entry).
    assert "blk.1.ffn_down.weight" not in weighted and "token_embd.weight" not in weighted
    assert "output.weight" in weighted and len(weighted) == 14
    assert f"{len(weighted)} tensors rounded with importance weights" in p.stderr

    meta = kv(out)
    assert meta["quantize.imatrix.file"] == ([V.STRING], str(d / "im.gguf"))
    assert meta["quantize.imatrix.dataset"] == ([V.STRING], "calib.txt")
    assert meta["quantize.imatrix.entries_count"] == ([V.UINT32], len(entries))  # the file's, used or not
    assert meta["quantize.imatrix.chunks_count"] == ([V.UINT32], 12)
    keys = list(GGUFReader(out).fields)
    assert keys[-4:] == ["quantize.imatrix.file", "quantize.imatrix.dataset", "quantize.imatrix.entries_count",
                         "quantize.imatrix.chunks_count"], "written after the input's keys, in llama-quantize's order"


def test_weights_change_the_bytes(ggml, tiny, tmp_path):
    # Guards the witness: with the imatrix dropped on both sides the comparison above would still pass.
    d, src, model, entries = tiny
    plain, weighted = tmp_path / "plain.gguf", tmp_path / "weighted.gguf"
    qconvert(src, "-o", plain, "--type", "q4_0", "--pure", "-t", 2)
    qconvert(src, "-o", weighted, "--type", "q4_0", "--pure", "--imatrix", d / "im.gguf", "-t", 2)
    a, b = tensors_of(plain), tensors_of(weighted)
    name = "blk.0.attn_q.weight"
    x, y = np.asarray(a[name].data).view(np.uint8), np.asarray(b[name].data).view(np.uint8)
    assert np.count_nonzero(x != y) > x.size // 4
    assert bytes(np.asarray(a["blk.1.ffn_down.weight"].data).view(np.uint8)) == \
        bytes(np.asarray(b["blk.1.ffn_down.weight"].data).view(np.uint8))  # no entry: plain rounding
    assert "quantize.imatrix.file" not in GGUFReader(plain).fields


def test_legacy_dat_gives_the_same_bytes(tiny, tmp_path):
    d, src, _, entries = tiny
    a, b = tmp_path / "from-gguf.gguf", tmp_path / "from-dat.gguf"
    qconvert(src, "-o", a, "--type", "q4_1", "--pure", "--imatrix", d / "im.gguf", "-t", 2)
    qconvert(src, "-o", b, "--type", "q4_1", "--pure", "--imatrix", d / "im.dat", "-t", 2)
    ta, tb = tensors_of(a), tensors_of(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        assert bytes(np.asarray(ta[name].data).view(np.uint8)) == bytes(np.asarray(tb[name].data).view(np.uint8)), name
    meta = kv(b)
    assert meta["quantize.imatrix.file"][1] == str(d / "im.dat")
    assert meta["quantize.imatrix.dataset"][1] == "calib.txt"  # the .dat trailer's
    assert meta["quantize.imatrix.entries_count"][1] == len(entries)
    assert meta["quantize.imatrix.chunks_count"][1] == 12


def test_q8_0_ignores_the_imatrix(tiny, tmp_path):
    d, src, _, _ = tiny
    a, b, report = tmp_path / "plain.gguf", tmp_path / "im.gguf", tmp_path / "r.json"
    qconvert(src, "-o", a, "--type", "q8_0", "-t", 2)
    qconvert(src, "-o", b, "--type", "q8_0", "--imatrix", d / "im.gguf", "--report", report, "-t", 2)
    ta, tb = tensors_of(a), tensors_of(b)
    for name in ta:
        assert bytes(np.asarray(ta[name].data).view(np.uint8)) == bytes(np.asarray(tb[name].data).view(np.uint8)), name
    assert not any(x["weighted"] for x in json.loads(report.read_text())["tensors"])
    assert "quantize.imatrix.file" in GGUFReader(b).fields  # the provenance is written all the same


def permute(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


HF_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
            "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
            "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def test_hf_to_gguf_matches_ggml(ggml, tmp_path):
    hf = tmp_path / "hf"
    values = make_tiny_hf_model(hf, hidden=64, layers=2, heads=4, kv_heads=2, ff=96, dtype="f32", seed=3)
    model = {}
    for name, v in values.items():
        if name == "model.embed_tokens.weight":
            model["token_embd.weight"] = v
        elif name == "model.norm.weight":
            model["output_norm.weight"] = v
        elif name == "lm_head.weight":
            model["output.weight"] = v
        else:
            _, _, i, rest = name.split(".", 3)
            g = f"blk.{i}.{HF_NAMES[rest[:-len('.weight')]]}.weight"
            if rest.startswith("self_attn.q_proj"):
                v = permute(v, 4)
            elif rest.startswith("self_attn.k_proj"):
                v = permute(v, 2)
            model[g] = v
    entries = imatrix_entries(model, np.random.default_rng(SEED + 2), skip=set())
    write_imatrix_gguf(tmp_path / "im.gguf", entries)
    out = tmp_path / "out.gguf"
    qconvert(hf, "-o", out, "--type", "q4_0", "--pure", "--imatrix", tmp_path / "im.gguf", "-t", 2)
    weighted = check_against_ggml(ggml, out, model, entries)
    assert {"blk.0.attn_q.weight", "blk.1.attn_k.weight", "blk.1.ffn_down.weight"} <= weighted
    assert kv(out)["quantize.imatrix.entries_count"][1] == len(entries)


def assert_refused(p, out: pathlib.Path, *words):
    assert p.returncode != 0
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("qconvert: "), p.stderr
    for w in words:
        assert w in p.stderr, p.stderr
    assert not out.exists()


@pytest.mark.parametrize("case", ["columns", "experts"])
def test_entry_that_does_not_fit_is_refused(tiny, tmp_path, case):
    _, src, model, _ = tiny
    if case == "columns":
        bad = {"blk.0.attn_q.weight": (np.ones(32, np.float32), np.float32(4))}
        words = ["has 32 columns", "64"]
    else:
        bad = {"blk.0.attn_q.weight": (np.ones((2, 64), np.float32), np.ones(2, np.float32))}
        words = ["2 matrices"]
    bad["blk.0.attn_k.weight"] = (np.ones(64, np.float32), np.float32(4))
    im = tmp_path / "bad.imatrix"
    write_imatrix_gguf(im, bad)
    out = tmp_path / "out.gguf"
    p = qconvert(src, "-o", out, "--type", "q4_0", "--imatrix", im, ok=False)
    assert_refused(p, out, str(im), "blk.0.attn_q.weight", *words)


def test_missing_and_broken_imatrix_are_refused(tiny, tmp_path):
    _, src, _, _ = tiny
    out = tmp_path / "out.gguf"
    missing = tmp_path / "nope.imatrix"
    assert_refused(qconvert(src, "-o", out, "--type", "q4_0", "--imatrix", missing, ok=False), out, str(missing))
    cut = tmp_path / "cut.dat"
    cut.write_bytes(struct.pack("<i", 3) + b"\x05\x00")
    assert_refused(qconvert(src, "-o", out, "--type", "q4_0", "--imatrix", cut, ok=False), out, str(cut))


def test_imatrix_is_an_input(tiny, tmp_path):
    d, src, _, _ = tiny
    im = tmp_path / "im.gguf"
    im.write_bytes((d / "im.gguf").read_bytes())
    p = qconvert(src, "-o", im, "--type", "q4_0", "--imatrix", im, "--force", ok=False)
    assert p.returncode != 0 and "is an input file" in p.stderr, p.stderr
    assert im.read_bytes() == (d / "im.gguf").read_bytes()


def test_imatrix_with_to_hf_is_refused(tiny, tmp_path):
    d, src, _, _ = tiny
    out = tmp_path / "hf"
    assert_refused(qconvert(src, "--to-hf", out, "--imatrix", d / "im.gguf", ok=False), out, "--imatrix", "--to-hf")
