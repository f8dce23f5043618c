"""Our importance-matrix files and quantizer against llama.cpp's own tools (llama-imatrix, llama-quantize),
built by scripts/build-llamacpp-tools.sh from the llama.cpp that llama-cpp-python 0.3.16 vendors:

  (a) llama-imatrix's GGUF, written for a tiny model, read by ours (build/tests/imatrix_tool) agrees with
      what gguf.GGUFReader reads from it: names, shapes, in_sum2, counts, metadata; importance is
      in_sum2 / counts; and our writer, given what we read, writes the same bytes back;
  (b) llama-quantize loads an imatrix our writer made (its log: "loaded N importance matrix entries") and
      the weights change its output;
  (c) qconvert --pure --imatrix gives the bytes llama-quantize --pure --imatrix gives, tensor by tensor
      (skipped while qconvert has no --imatrix).

Skipped, with the reason, when the tools are not built. Tools from $QE_LLAMACPP_TOOLS/bin (default
<repo>/.venv/llama.cpp-tools/bin), qconvert from $QE_BIN (default <repo>/build/bin).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf import GGUFValueType as V

from conftest import REPO, run_tool
from make_tiny_model import TinySpec, write_model

LLAMA_BIN = pathlib.Path(os.environ.get("QE_LLAMACPP_TOOLS", REPO / ".venv" / "llama.cpp-tools")) / "bin"
BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))
SEED = 20240613
CTX, CHUNKS = 64, 4


def llama_tool(name: str) -> pathlib.Path:
    path = LLAMA_BIN / name
    if not path.exists():
        pytest.skip(f"{path} is not built (scripts/build-llamacpp-tools.sh)")
    return path


def run(exe: pathlib.Path, *args) -> str:
    """Runs a tool with one thread; stdout + stderr; a non-zero exit fails the test with its log's tail."""
    p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=300)
    log = p.stdout + p.stderr
    if p.returncode != 0:
        pytest.fail(f"{exe.name} {' '.join(map(str, args))} exited {p.returncode}:\n{log[-3000:]}")
    return log


def calib_text(seed: int = SEED) -> str:
    """~12 kB of word salad: the tiny model's byte vocabulary makes each byte a token (CHUNKS * CTX = 256)."""
    words = ("the a of to in is for on that by with as from at this be are it or an data value file list "
             "name return object default string number").split()
    return " ".join(np.random.default_rng(seed).choice(words, 2000))


def field(r: GGUFReader, key: str):
    f = r.fields[key]
    if f.types[0] == V.STRING:
        return bytes(f.parts[f.data[0]]).decode()
    if f.types[0] == V.ARRAY:
        return [bytes(f.parts[i]).decode() for i in f.data]
    return f.parts[f.data[0]].tolist()[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An f32 tiny model (tied embeddings), a calibration text and llama-imatrix's GGUF for it."""
    imatrix = llama_tool("llama-imatrix")
    d = tmp_path_factory.mktemp("llamacpp_imatrix")
    model = d / "tiny-f32.gguf"
    write_model(str(model), TinySpec(wtype="f32", tied=True, seed=11))
    text = d / "calib.txt"
    text.write_text(calib_text())
    im = d / "llama.imatrix.gguf"
    log = run(imatrix, "-m", model, "-f", text, "-c", CTX, "--chunks", CHUNKS, "-o", im, "--no-ppl", "-t", 1)
    assert im.exists(), log[-2000:]
    return d, model, text, im


def weight_names(model: pathlib.Path) -> list[str]:
    """The 2-D blk weights: what llama-imatrix collects (token_embd is a lookup, the output is tied)."""
    return sorted(t.name for t in GGUFReader(model).tensors if t.name.startswith("blk.") and len(t.shape) == 2)


def test_llama_imatrix_file_read_by_ours(tiny):
    d, model, text, im = tiny
    ours = json.loads(run_tool("imatrix_tool", "dump", im))
    r = GGUFReader(im)

    assert ours["format"] == "gguf"
    assert field(r, "general.type") == "imatrix"
    assert ours["datasets"] == field(r, "imatrix.datasets") == [str(text)]
    assert ours["chunk_count"] == field(r, "imatrix.chunk_count") == CHUNKS
    assert ours["chunk_size"] == field(r, "imatrix.chunk_size") == CTX

    by_name = {t.name: t for t in r.tensors}
    names = [e["name"] for e in ours["entries"]]
    assert names == weight_names(model), "every 2-D blk weight, sorted by name"
    assert sorted(by_name) == sorted([n + ".in_sum2" for n in names] + [n + ".counts" for n in names])
    for e in ours["entries"]:
        s = np.asarray(by_name[e["name"] + ".in_sum2"].data, np.float32)
        c = np.asarray(by_name[e["name"] + ".counts"].data, np.float32).ravel()
        assert by_name[e["name"] + ".in_sum2"].tensor_type == T.F32
        assert (e["n_mat"], e["n_cols"]) == s.reshape(len(c), -1).shape, e["name"]
        np.testing.assert_array_equal(np.asarray(e["in_sum2"], np.float32), s.ravel(), err_msg=e["name"])
        np.testing.assert_array_equal(np.asarray(e["counts"], np.float32), c, err_msg=e["name"])
        # Every token of every chunk passed through every dense weight once.
        assert e["counts"] == [float(CHUNKS * CTX)], e["name"]
        assert np.all(s > 0), e["name"]
        # llama-quantize's load_imatrix: in_sum2 / count in float32.
        np.testing.assert_array_equal(np.asarray(e["importance"], np.float32), s.ravel() / c[0], err_msg=e["name"])

    # Our writer, given what our reader read, writes llama-imatrix's file byte for byte.
    back = d / "rewritten.imatrix.gguf"
    spec = d / "dump.json"
    spec.write_text(json.dumps(ours))
    run_tool("imatrix_tool", "write-gguf", spec, back)
    assert back.read_bytes() == im.read_bytes()


def test_llama_quantize_loads_our_imatrix(tiny, tmp_path):
    quantize = llama_tool("llama-quantize")
    _, model, _, _ = tiny
    names = weight_names(model)
    rng = np.random.default_rng(SEED)
    entries = []
    for n in names:
        cols = next(t for t in GGUFReader(model).tensors if t.name == n).shape.tolist()[0]
        # Log-normal channel importances with a few hot channels, as real activations have.
        s = np.exp(rng.standard_normal(cols) * 1.5).astype(np.float32) * 300
        s[rng.integers(0, cols, 3)] *= 50
        entries.append({"name": n, "in_sum2": s.tolist(), "counts": [300.0]})
    spec = tmp_path / "im.json"
    spec.write_text(json.dumps({"datasets": ["calib.txt"], "chunk_count": 12, "chunk_size": 512, "entries": entries}))
    ours = tmp_path / "ours.imatrix.gguf"
    run_tool("imatrix_tool", "write-gguf", spec, ours)

    weighted, plain = tmp_path / "weighted.gguf", tmp_path / "plain.gguf"
    log = run(quantize, "--pure", "--imatrix", ours, model, weighted, "q4_0", 1)
    assert f"loaded {len(names)} importance matrix entries from {ours} computed on 12 chunks" in log, log[-2000:]
    assert "imatrix datasets=['calib.txt']" in log
    assert re.findall(r"did not find weights for (\S+)", log) == ["token_embd.weight"]  # a lookup: no entry
    run(quantize, "--pure", model, plain, "q4_0", 1)

    w, p = ({t.name: t for t in GGUFReader(f).tensors} for f in (weighted, plain))
    assert w.keys() == p.keys()
    changed = [n for n in names if bytes(w[n].data) != bytes(p[n].data)]
    assert all(w[n].tensor_type == T.Q4_0 for n in names)
    assert changed == names, f"the imatrix left {sorted(set(names) - set(changed))} unchanged"
    assert bytes(w["token_embd.weight"].data) == bytes(p["token_embd.weight"].data)  # no entry: plain rounding


def test_qconvert_imatrix_matches_llama_quantize(tiny, tmp_path):
    quantize = llama_tool("llama-quantize")
    qconvert = BIN / "qconvert"
    if not qconvert.exists():
        pytest.skip(f"{qconvert} is not built (set QE_BIN)")
    help_text = subprocess.run([str(qconvert), "--help"], capture_output=True, text=True).stdout
    if not re.search(r"^\s*--imatrix\b", help_text, re.M):
        pytest.skip("qconvert has no --imatrix yet")
    _, model, _, im = tiny

    ours, theirs = tmp_path / "ours.gguf", tmp_path / "llama.gguf"
    run(qconvert, model, "-o", ours, "--type", "q4_0", "--pure", "--imatrix", im, "-t", 1)
    run(quantize, "--pure", "--imatrix", im, model, theirs, "q4_0", 1)

    a, b = ({t.name: t for t in GGUFReader(f).tensors} for f in (ours, theirs))
    assert a.keys() == b.keys()
    assert {n: t.tensor_type for n, t in a.items()} == {n: t.tensor_type for n, t in b.items()}
    q4 = [n for n, t in a.items() if t.tensor_type == T.Q4_0]
    assert set(weight_names(model)) <= set(q4)
    differ = [n for n in q4 if bytes(a[n].data) != bytes(b[n].data)]
    assert not differ, f"q4_0 bytes differ from llama-quantize --imatrix for {differ}"

    # Guards the witness: without the imatrix the blk weights round differently.
    plain = tmp_path / "plain.gguf"
    run(qconvert, model, "-o", plain, "--type", "q4_0", "--pure", "-t", 1)
    p = {t.name: t for t in GGUFReader(plain).tensors}
    assert all(bytes(p[n].data) != bytes(a[n].data) for n in weight_names(model))
