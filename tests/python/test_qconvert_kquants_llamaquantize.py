"""qconvert's k-quant, q5 and iq4 types against llama-quantize, byte for byte, on synthetic llama models
(scripts/make-synthetic-llama.py: random weights with a spread of row scales, outlier channels, a zero
and a constant block in every matrix):

  * shape `tiny` (dim 256, ff 512, untied output): every row a multiple of 256, so every matrix is the
    mix's own k-quant;
  * shape `tiny576` (dim 576, ff 1536, 9/1 heads, tied): 576-wide rows are not a multiple of 256, so
    llama-quantize falls back (q2_K/q3_K -> iq4_nl, q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0) while
    ffn_down (1536 = 6 * 256) keeps its k-quant, and the tied token_embd is quantized as the output.

For each type of a representative set, with and without a synthetic imatrix (llama-imatrix's GGUF
layout), every tensor has llama-quantize's type, shape and bytes, and general.file_type is the same.
Also: qrun runs llama-quantize's Q4_K_M of both shapes (greedy, a few tokens); and the whole files are
compared (tensor order, key order, bytes): expected to fail until qconvert orders them as llama-quantize.

Skipped, with the reason, when llama-quantize is not built (scripts/build-llamacpp-tools.sh; CI builds
it). Tools from $QE_LLAMACPP_TOOLS/bin (default <repo>/.venv/llama.cpp-tools/bin), qconvert and qrun
from $QE_BIN (default <repo>/build/bin).
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import numpy as np
import pytest

from gguf import GGML_QUANT_SIZES, GGUFReader

from conftest import REPO, synthetic_llama

LLAMA_BIN = pathlib.Path(os.environ.get("QE_LLAMACPP_TOOLS", REPO / ".venv" / "llama.cpp-tools")) / "bin"
BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))
SEED = 20240701
SHAPES = ["tiny", "tiny576"]
TYPES = ["Q2_K", "Q3_K_M", "Q4_K_S", "Q4_K_M", "Q5_K_M", "Q6_K", "Q5_0", "Q5_1", "IQ4_NL", "IQ4_XS", "Q4_0"]


def exe(path: pathlib.Path, hint: str) -> pathlib.Path:
    if not path.exists():
        pytest.skip(f"{path} is not built ({hint})")
    return path


def run(cmd: pathlib.Path, *args, timeout: float = 300) -> str:
    """Runs a tool; stdout + stderr; a non-zero exit fails the test with its log's tail."""
    p = subprocess.run([str(cmd), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    log = p.stdout + p.stderr
    if p.returncode != 0:
        pytest.fail(f"{cmd.name} {' '.join(map(str, args))} exited {p.returncode}:\n{log[-3000:]}")
    return log


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Per shape: an f32 model and its synthetic imatrix."""
    exe(LLAMA_BIN / "llama-quantize", "scripts/build-llamacpp-tools.sh")
    mod = synthetic_llama()
    d = tmp_path_factory.mktemp("kquants_llamaquantize")
    out = {}
    for shape in SHAPES:
        model, im = d / f"{shape}-f32.gguf", d / f"{shape}.imatrix.gguf"
        mod.write_model(str(model), mod.SHAPES[shape], shape, "f32", SEED)
        mod.write_imatrix(str(im), mod.SHAPES[shape], SEED)
        out[shape] = (model, im)
    return out


def file_type(r: GGUFReader) -> int | None:
    f = r.fields.get("general.file_type")
    return None if f is None else int(f.parts[f.data[0]][0])


def differences(ours: pathlib.Path, theirs: pathlib.Path) -> list[str]:
    """Every tensor whose name, type, shape or bytes differ, with its first differing block."""
    a, b = GGUFReader(ours), GGUFReader(theirs)
    ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
    out = [f"{n}: only in {'ours' if n in ta else 'llama-quantize'}" for n in sorted(set(ta) ^ set(tb))]
    for name in sorted(set(ta) & set(tb)):
        x, y = ta[name], tb[name]
        if x.tensor_type != y.tensor_type or x.shape.tolist() != y.shape.tolist():
            out.append(f"{name}: ours {x.tensor_type.name} {x.shape.tolist()}, "
                       f"llama-quantize {y.tensor_type.name} {y.shape.tolist()}")
            continue
        bx, by = (np.frombuffer(np.ascontiguousarray(t.data), np.uint8) for t in (x, y))
        if not np.array_equal(bx, by):
            _, type_size = GGML_QUANT_SIZES[y.tensor_type]
            neq = np.flatnonzero(bx != by) // type_size
            out.append(f"{name} ({y.tensor_type.name}): {np.unique(neq).size} of {bx.size // type_size} blocks "
                       f"differ, the first is block {neq[0]}")
    if file_type(a) != file_type(b):
        out.append(f"general.file_type: ours {file_type(a)}, llama-quantize {file_type(b)}")
    return out


@pytest.fixture(scope="module")
def llama_quantized(models, tmp_path_factory):
    """llama-quantize's output for (shape, type, imatrix), made once and shared by the tests."""
    quantize = exe(LLAMA_BIN / "llama-quantize", "scripts/build-llamacpp-tools.sh")
    d = tmp_path_factory.mktemp("llama_quantize")
    done: dict[tuple[str, str, bool], pathlib.Path] = {}

    def get(shape: str, qtype: str, imatrix: bool) -> pathlib.Path:
        key = (shape, qtype, imatrix)
        if key not in done:
            model, im = models[shape]
            out = d / f"{shape}-{qtype}-{'imatrix' if imatrix else 'plain'}.gguf"
            run(quantize, *(["--imatrix", im] if imatrix else []), model, out, qtype, 2)
            done[key] = out
        return done[key]
    return get


@pytest.mark.parametrize("imatrix", [False, True], ids=["plain", "imatrix"])
@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_qconvert_bytes_equal_llama_quantize(models, llama_quantized, tmp_path, shape, qtype, imatrix):
    qconvert = exe(BIN / "qconvert", "set QE_BIN")
    model, im = models[shape]
    theirs, ours = llama_quantized(shape, qtype, imatrix), tmp_path / "ours.gguf"
    run(qconvert, model, "-o", ours, "--type", qtype, *(["--imatrix", im] if imatrix else []), "-t", 2)
    diff = differences(ours, theirs)
    assert not diff, (f"{shape} {qtype}{' + imatrix' if imatrix else ''}: {len(diff)} differences from "
                      f"llama-quantize (seed {SEED}):\n" + "\n".join(diff[:20]))
    if imatrix:
        # Guards the witness: the imatrix changes llama-quantize's rounding of every blk weight whose type
        # uses it (q8_0 and the like ignore it).
        plain = {t.name: t for t in GGUFReader(llama_quantized(shape, qtype, False)).tensors}
        weighted = [t for t in GGUFReader(theirs).tensors if t.name.startswith("blk.") and len(t.shape) == 2]
        changed = [t.name for t in weighted if bytes(t.data) != bytes(plain[t.name].data)]
        uses = [t.name for t in weighted if t.tensor_type.name not in ("Q8_0", "F16", "F32")]
        assert uses and set(uses) <= set(changed), f"the imatrix left {sorted(set(uses) - set(changed))} unchanged"


@pytest.mark.parametrize("shape", SHAPES)
def test_qrun_runs_llama_quantize_q4_k_m(models, llama_quantized, shape):
    qrun = exe(BIN / "qrun", "set QE_BIN")
    model, _ = models[shape]
    q = llama_quantized(shape, "Q4_K_M", False)
    types = {t.tensor_type.name for t in GGUFReader(q).tensors}
    assert "Q4_K" in types, types
    for m in (model, q):  # the f32 source too: the synthetic tokenizer loads in qrun
        log = run(qrun, "-m", m, "-p", "hello world", "-n", 4, "--temp", 0, "-t", 1)
        assert "hello world" in log, log[-2000:]


@pytest.mark.parametrize("shape", SHAPES)
def test_qconvert_whole_file_equals_llama_quantize(models, llama_quantized, tmp_path, shape):
    qconvert = exe(BIN / "qconvert", "set QE_BIN")
    model, im = models[shape]
    theirs, ours = llama_quantized(shape, "Q4_K_M", True), tmp_path / "ours.gguf"
    run(qconvert, model, "-o", ours, "--type", "Q4_K_M", "--imatrix", im, "-t", 2)
    a, b = GGUFReader(ours), GGUFReader(theirs)
    assert [t.name for t in a.tensors] == [t.name for t in b.tensors], "tensor order"
    assert list(a.fields) == list(b.fields), "key order"
    assert ours.read_bytes() == theirs.read_bytes()
