"""Hostile sources for qconvert. Every corrupt-GGUF class of the reader (hostile_gguf_cases), given to
`qconvert SRC -o OUT` and to `qconvert SRC --to-hf DIR`; every corrupt-safetensors class of the reader's
unit tests, in a shard of a Hugging Face model directory, plus the directory's own classes (index, shards,
tokenizer), given to `qconvert DIR -o OUT`.

The contract for each: exit 1 (no signal, no sanitizer report: scripts/sanitize.sh runs this file against
the ASan+UBSan build) and exactly one line on stderr, `qconvert: <file>: <field>: <reason>`, naming the
source file (and the field, where the class has one); nothing appears in the output's directory (no output,
no temporary, no --to-hf directory); the source's files keep their bytes and modification times, and no
file appears beside them. The configuration classes (config.json) are in test_qconvert_hostile.py.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import struct
import subprocess

import pytest

import hostile_gguf as h
from conftest import age, check_exit, program, snapshot
from hostile_gguf_cases import MODEL_CASES, READER_CASES, tiny_llama
from make_tiny_hf_model import make_tiny_hf_model, write_safetensors

TIMEOUT_S = 120


def qconvert(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(program("qconvert")), *map(str, args)], capture_output=True, timeout=TIMEOUT_S)


def refused(src: pathlib.Path, out_args: list, out_dir: pathlib.Path, names: list[str], what: str) -> str:
    """Runs qconvert SRC OUT_ARGS and checks the contract above; returns the error line."""
    age(src)
    watched = src.parent if src.is_file() else src
    before_src, before_out = snapshot(watched), sorted(os.listdir(out_dir))
    err = check_exit(qconvert(src, *out_args), 1, what)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("qconvert: "), f"{what}: not one error line:\n{err}"
    assert lines[0].isprintable() and "\ufffd" not in lines[0], f"{what}: raw bytes in the error: {lines[0]!r}"
    for name in names:
        assert name in lines[0], f"{what}: the error does not name {name!r}: {lines[0]}"
    assert sorted(os.listdir(out_dir)) == before_out, f"{what}: left {sorted(os.listdir(out_dir))} in {out_dir}"
    assert snapshot(watched) == before_src, f"{what}: the source changed (bytes, mtime or a new file beside it)"
    return lines[0]


@pytest.fixture(scope="module")
def good_gguf() -> h.Gguf:
    return tiny_llama()


@pytest.fixture
def dirs(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    return src, out


# ---- GGUF sources -----------------------------------------------------------------------------------

OUTPUTS = {"gguf": lambda out: ["-o", out / "o.gguf", "--type", "q8_0"], "to_hf": lambda out: ["--to-hf", out / "hf"]}


@pytest.mark.parametrize("output", sorted(OUTPUTS))
@pytest.mark.parametrize("case", sorted(READER_CASES))
def test_corrupt_gguf(case, output, good_gguf, dirs):
    src, out = dirs
    path = src / f"{case}.gguf"
    path.write_bytes(READER_CASES[case](good_gguf))
    refused(path, OUTPUTS[output](out), out, [str(path)], case)


def test_gguf_truncated_anywhere(good_gguf, dirs):
    """Cuts through the header, metadata, tensor infos and data (every 61st byte, then the data)."""
    src, out = dirs
    b = good_gguf.to_bytes()
    path = src / "cut.gguf"
    for n in list(range(0, good_gguf.header_end(), 61)) + [good_gguf.header_end() + 1, len(b) // 2, len(b) - 1]:
        path.write_bytes(b[:n])
        refused(path, OUTPUTS["gguf"](out), out, [str(path)], f"cut at {n} of {len(b)} bytes")


def test_terminal_escapes_in_names(good_gguf, dirs):
    """A tensor name made to drive the terminal (OSC title, BEL, C1 CSI) reaches stderr escaped."""
    src, out = dirs
    g = good_gguf.copy()
    g.tensors[0].name = g.tensors[1].name = "\x1b]0;owned\x07\x9b2J"
    path = src / "escapes.gguf"
    path.write_bytes(g.to_bytes())
    for output in sorted(OUTPUTS):
        refused(path, OUTPUTS[output](out), out, [str(path), "\\x1b]0;owned\\x07\\xc2\\x9b2J"], output)


# A GGUF export needs a llama model: each model-level class is refused, naming the file, except two that
# make a valid Hugging Face model. A q4_0 norm dequantizes exactly (qrun refuses it only because its
# kernels take f32 norms); a tokenizer shorter than the embedding is HF's padded vocabulary.
TO_HF_EXPORTS = {"norm_is_quantized", "token_list_short"}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_wrong_model_to_hf(case, good_gguf, dirs):
    src, out = dirs
    path = src / f"{case}.gguf"
    path.write_bytes(MODEL_CASES[case](good_gguf))
    if case not in TO_HF_EXPORTS:
        refused(path, ["--to-hf", out / "hf"], out, [str(path)], case)
        return
    check_exit(qconvert(path, "--to-hf", out / "hf"), 0, case)
    assert sorted(os.listdir(out / "hf")) == ["README.md", "config.json", "generation_config.json", "model.safetensors",
                                              "tokenizer.json", "tokenizer_config.json"]


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_wrong_model_requantized(case, good_gguf, dirs):
    """Requantization goes tensor by tensor, as llama-quantize's does, so a well-formed GGUF that is not a
    model qrun runs still converts (its metadata copied), through the layer rules of a mix; only a tensor
    that would need requantizing is refused."""
    src, out = dirs
    path = src / f"{case}.gguf"
    path.write_bytes(MODEL_CASES[case](good_gguf))
    args = ["-o", out / "o.gguf", "--type", "q4_k_m"]
    if case == "norm_is_quantized":
        refused(path, args, out, [str(path), "blk.0.attn_norm.weight: is already q4_0"], case)
        return
    check_exit(qconvert(path, *args), 0, case)
    assert sorted(os.listdir(out)) == ["o.gguf"]


# ---- safetensors sources ----------------------------------------------------------------------------

T = "model.norm.weight"              # F16 [64]: the tensor the shard cases break
ALIAS = "model.layers.0.input_layernorm.weight"  # same size, earlier in the data section
SHARD = "model.safetensors"


def st_split(b: bytes) -> tuple[dict, bytes]:
    n = struct.unpack_from("<Q", b)[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


def st_join(header, data: bytes, n: int | None = None) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if n is None else n) + text + data


def text_of(hdr: dict) -> bytes:
    return json.dumps(hdr).encode()


def entry_text(hdr: dict, name: str) -> bytes:
    return f'"{name}": {json.dumps(hdr[name])}'.encode()


def edit_entry(**changes):
    """A case that sets (or, with None, removes) fields of T's entry."""
    def f(hdr, data):
        e = hdr[T]
        for k, v in changes.items():
            if v is None:
                e.pop(k)
            else:
                e[k] = v
        return st_join(hdr, data)
    return f


def set_entry(value):
    def f(hdr, data):
        hdr[T] = value
        return st_join(hdr, data)
    return f


def relayout(hdr: dict, data: bytes, *, drop: str = "", rename: tuple[str, str] = ("", ""), gap_before: str = "",
             extra: bytes = b"") -> bytes:
    """The shard rewritten in data order, offsets recomputed: `drop` left out, a tensor renamed, `gap_before`
    preceded by 8 stray bytes (data_offsets keep pointing at the tensors), `extra` appended."""
    out_hdr, out_data = {"__metadata__": hdr.get("__metadata__", {})}, bytearray()
    entries = [(k, v) for k, v in hdr.items() if k != "__metadata__"]
    for name, e in sorted(entries, key=lambda kv: kv[1]["data_offsets"]):
        if name == drop:
            continue
        if name == gap_before:
            out_data += b"\0" * 8
        b0, b1 = e["data_offsets"]
        new = dict(e, data_offsets=[len(out_data), len(out_data) + b1 - b0])
        out_hdr[rename[1] if name == rename[0] else name] = new
        out_data += data[b0:b1]
    return st_join(out_hdr, bytes(out_data) + extra)


def shift_offsets(delta: int):
    def f(hdr, data):
        b0, b1 = hdr[T]["data_offsets"]
        hdr[T]["data_offsets"] = [b0 + delta, b1 + delta]
        return st_join(hdr, data)
    return f


def alias(hdr, data):
    hdr[T]["data_offsets"] = hdr[ALIAS]["data_offsets"]
    return st_join(hdr, data)


def duplicate_key(hdr, data):
    e = entry_text(hdr, T)
    return st_join(text_of(hdr).replace(e, e + b", " + e), data)


def duplicate_field(hdr, data):
    e = entry_text(hdr, T)
    return st_join(text_of(hdr).replace(e, e.replace(b'"dtype": "F16"', b'"dtype": "F16", "dtype": "BF16"')), data)


def deep(hdr, data):
    return st_join(text_of(hdr)[:-1] + b', "x": ' + b"[" * 100 + b"]" * 100 + b"}", data)


T_FIELD = "tensor " + T
# name -> (shard bytes from (header, data), what the error line must contain besides the shard's path)
SHARD_CASES = {
    "empty_file": (lambda hdr, data: b"", "header: file is 0 bytes"),
    "too_short": (lambda hdr, data: b"abc", "header: file is 3 bytes, too short"),
    "header_length_above_cap": (lambda hdr, data: st_join(hdr, data, n=100_000_001),
                                "header: header length 100000001 is above"),
    "header_length_past_end": (lambda hdr, data: st_join(hdr, data, n=len(text_of(hdr)) + len(data) + 1),
                               "header: header length"),
    "header_length_u64_max": (lambda hdr, data: st_join(hdr, data, n=(1 << 64) - 1), "header: header length"),
    "header_not_an_object": (lambda hdr, data: st_join(b" " + text_of(hdr), data),
                             "header: JSON header does not start"),
    "invalid_json": (lambda hdr, data: st_join(text_of(hdr)[:-1], data), "header: invalid JSON"),
    "nul_in_header": (lambda hdr, data: st_join(text_of(hdr) + b"\0\0", data), "header: invalid JSON"),
    "invalid_utf8_name": (lambda hdr, data: st_join(text_of(hdr).replace(T.encode(), b"\xff" + T.encode()[1:]), data),
                          "ill-formed UTF-8 byte; last read: '\"\\xff'"),  # escaped, not raw
    "duplicate_tensor": (duplicate_key, f'header: duplicate key "{T}"'),
    "duplicate_field": (duplicate_field, "duplicate key"),
    "nesting_too_deep": (deep, "nested deeper"),
    "entry_not_an_object": (set_entry([1, 2]), f"{T_FIELD}: entry must be an object, got array"),
    "missing_dtype": (edit_entry(dtype=None), f'{T_FIELD}: missing "dtype"'),
    "missing_shape": (edit_entry(shape=None), f'{T_FIELD}: missing "shape"'),
    "missing_data_offsets": (edit_entry(data_offsets=None), f'{T_FIELD}: missing "data_offsets"'),
    "dtype_not_a_string": (edit_entry(dtype=16), f'{T_FIELD}: "dtype" must be a string'),
    "unknown_dtype": (edit_entry(dtype="float16"), f'{T_FIELD}: unknown dtype "float16"'),
    "unsupported_dtype": (edit_entry(dtype="I16"), f"{T_FIELD}: dtype I16 is not supported"),
    "shape_not_an_array": (edit_entry(shape=64), f'{T_FIELD}: "shape" must be an array'),
    "shape_negative": (edit_entry(shape=[-64]), f"{T_FIELD}: shape[0] must be a non-negative integer, got -64"),
    "shape_float": (edit_entry(shape=[64.0]), f"{T_FIELD}: shape[0] must be a non-negative integer"),
    "shape_above_2_64": (edit_entry(shape=[1 << 64]), f"{T_FIELD}: shape[0] must be a non-negative integer"),
    "element_count_overflow": (edit_entry(shape=[1 << 32, 1 << 32, 2]),
                               f"{T_FIELD}: shape [4294967296, 4294967296, 2] has more than 2^64"),
    "byte_count_overflow": (edit_entry(shape=[1 << 62]),
                            f"{T_FIELD}: shape [4611686018427387904] x F16 overflows 64 bits"),
    "sub_byte_dtype": (edit_entry(dtype="F4", shape=[255]), f"{T_FIELD}: shape [255] x F4 is 1020 bits"),
    "size_not_matching_shape": (edit_entry(shape=[32]), "do not match shape [32] x F16 (64 bytes)"),
    "data_offsets_one_number": (edit_entry(data_offsets=[0]), f"{T_FIELD}: \"data_offsets\" must be [begin, end]"),
    "data_offsets_negative": (edit_entry(data_offsets=[-1, 127]),
                              f"{T_FIELD}: \"data_offsets\" must be two non-negative"),
    "begin_after_end": (lambda hdr, data: edit_entry(data_offsets=hdr[T]["data_offsets"][::-1])(hdr, data),
                        "begin is after end"),
    "offsets_near_2_64": (edit_entry(data_offsets=[(1 << 64) - 129, (1 << 64) - 1]),
                          f"{T_FIELD}: data_offsets [18446744073709551487, 18446744073709551615] run past the end"),
    "overlap": (shift_offsets(-2), "overlap tensor model.layers.1.mlp.down_proj.weight"),
    "two_tensors_one_range": (alias, f"overlap tensor {ALIAS}"),
    "hole": (lambda hdr, data: relayout(hdr, data, gap_before=T), "leave a hole"),
    "trailing_bytes": (lambda hdr, data: st_join(hdr, data + b"polyglot"), "at the end of the data section belong to"),
    "data_truncated": (lambda hdr, data: st_join(hdr, data[:-10]), "run past the end of the data section"),
    "metadata_not_an_object": (lambda hdr, data: st_join(dict(hdr, __metadata__=["pt"]), data),
                               "__metadata__: must be an object"),
    "metadata_value_not_a_string": (lambda hdr, data: st_join(dict(hdr, __metadata__={"format": 1}), data),
                                    "__metadata__.format: value must be a string"),
    # The shard is sound; the model in it is not.
    "shape_not_the_configs": (edit_entry(shape=[32, 2]), f"{T_FIELD}: shape [32, 2] does not match config.json"),
    "tensor_not_llama": (lambda hdr, data: relayout(hdr, data, rename=(T, "model.extra.weight")),
                         "tensor model.extra.weight: is not a tensor of a Llama model"),
    "bias": (lambda hdr, data: relayout(hdr, data, rename=(T, "model.layers.0.self_attn.q_proj.bias")),
             "biases are not part of the llama architecture"),
}
# Errors that name the model directory, not the shard.
DIR_CASES = {
    "tensor_missing": (lambda hdr, data: relayout(hdr, data, drop=T), f"{T_FIELD}: missing"),
}


@pytest.fixture(scope="module")
def good_hf(tmp_path_factory) -> dict[str, pathlib.Path]:
    base = tmp_path_factory.mktemp("good")
    make_tiny_hf_model(base / "single", dtype="f16")
    make_tiny_hf_model(base / "sharded", dtype="f16", shards=2)
    return {"single": base / "single", "sharded": base / "sharded"}


def hf_copy(good_hf, kind: str, src: pathlib.Path) -> pathlib.Path:
    d = src / "model"
    shutil.copytree(good_hf[kind], d, symlinks=True)
    return d


@pytest.mark.parametrize("case", sorted(SHARD_CASES) + sorted(DIR_CASES))
def test_corrupt_safetensors(case, good_hf, dirs):
    src, out = dirs
    d = hf_copy(good_hf, "single", src)
    make, expect = SHARD_CASES.get(case) or DIR_CASES[case]
    shard = d / SHARD
    shard.write_bytes(make(*st_split(shard.read_bytes())))
    named = str(shard) if case in SHARD_CASES else str(d)
    refused(d, ["-o", out / "o.gguf", "--type", "q8_0"], out, [named + ":", expect], case)


def test_layers_beyond_config(good_hf, dirs):
    src, out = dirs
    d = hf_copy(good_hf, "single", src)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(dict(cfg, num_hidden_layers=1)))
    refused(d, ["-o", out / "o.gguf"], out, [str(d / SHARD), "is beyond the 1 layers of config.json"], "layers")


# ---- sharded directories: the index and the shards ---------------------------------------------------

INDEX = "model.safetensors.index.json"
SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def index_edit(fn):
    """A case that rewrites the index's JSON object with fn(index, first tensor of shard 1)."""
    def f(d):
        idx = json.loads((d / INDEX).read_text())
        first = next(k for k, v in idx["weight_map"].items() if v == SHARDS[0])
        fn(idx, first)
        (d / INDEX).write_text(json.dumps(idx))
    return f


def index_text(text: str):
    def f(d):
        (d / INDEX).write_text(text)
    return f


def shard_elsewhere(d):
    outside = d.parent / "outside.safetensors"
    shutil.copy(d / SHARDS[0], outside)
    (d / "link.safetensors").symlink_to(outside)
    index_edit(lambda idx, t: idx["weight_map"].__setitem__(t, "link.safetensors"))(d)


def tensor_in_both_shards(d):
    h1, data1 = st_split((d / SHARDS[0]).read_bytes())
    h2, data2 = st_split((d / SHARDS[1]).read_bytes())
    name = next(k for k in h1 if k != "__metadata__")
    tensors = {}
    for hdr, data in ((h2, data2), ({name: h1[name]}, data1)):
        for k, e in hdr.items():
            if k != "__metadata__":
                b0, b1 = e["data_offsets"]
                tensors[k] = (e["dtype"], e["shape"], data[b0:b1])
    write_safetensors(d / SHARDS[1], tensors)


def set_map(value):
    return index_edit(lambda idx, t: idx["weight_map"].__setitem__(t, value))


# name -> (edit of the directory, the file the error names ("": the directory), what else the line must contain)
DIR_SHARD_CASES = {
    "index_invalid_json": (index_text('{"weight_map": {'), INDEX, "invalid JSON"),
    "index_not_an_object": (index_text("[]"), INDEX, "must be a JSON object, got array"),
    "index_without_weight_map": (index_text('{"metadata": {}}'), INDEX, "weight_map: missing"),
    "weight_map_not_an_object": (index_text('{"weight_map": []}'), INDEX, "weight_map: must be an object"),
    "weight_map_empty": (index_text('{"weight_map": {}}'), INDEX, "weight_map: lists no tensors"),
    "shard_not_a_string": (set_map(3), INDEX, "shard must be a string"),
    "shard_empty_name": (set_map(""), INDEX, "empty shard file name"),
    "shard_absolute": (set_map("/etc/passwd"), INDEX, "is absolute"),
    "shard_nul_byte": (set_map("model\0.safetensors"), INDEX, "NUL byte"),
    "shard_symlink_outside": (shard_elsewhere, INDEX, "outside the model directory"),
    "shard_is_a_directory": (lambda d: ((d / "sub.safetensors").mkdir(), set_map("sub.safetensors")(d)),
                             "sub.safetensors", "is a directory"),
    "tensor_in_the_wrong_shard": (set_map(SHARDS[1]), INDEX, "is not in its shard"),
    "tensor_not_in_the_index": (index_edit(lambda idx, t: idx["weight_map"].pop(t)), SHARDS[0], "not listed in"),
    "tensor_in_two_shards": (tensor_in_both_shards, SHARDS[1], "also present in shard"),
    "shard_truncated": (lambda d: (d / SHARDS[1]).write_bytes((d / SHARDS[1]).read_bytes()[:-1]), SHARDS[1],
                        "run past the end"),
    "tokenizer_invalid_json": (lambda d: (d / "tokenizer.json").write_text('{"model": '), "tokenizer.json", "JSON"),
    "tokenizer_missing": (lambda d: (d / "tokenizer.json").unlink(), "", "tokenizer.json: missing"),
    "tokenizer_config_invalid_json": (lambda d: (d / "tokenizer_config.json").write_text("{,}"),
                                      "tokenizer_config.json", "JSON"),
}


@pytest.mark.parametrize("case", sorted(DIR_SHARD_CASES))
def test_corrupt_model_directory(case, good_hf, dirs):
    src, out = dirs
    d = hf_copy(good_hf, "sharded", src)
    edit, named, expect = DIR_SHARD_CASES[case]
    edit(d)
    refused(d, ["-o", out / "o.gguf", "--type", "q4_0"], out, [str(d / named), expect], case)


def test_good_sources_convert(good_gguf, good_hf, dirs):
    """The bases every case above breaks convert (so each case fails for its one defect)."""
    src, out = dirs
    path = src / "good.gguf"
    path.write_bytes(good_gguf.to_bytes())
    for args in ([path, "-o", out / "a.gguf", "--type", "q8_0"], [path, "--to-hf", out / "hf"],
                 [good_hf["single"], "-o", out / "b.gguf", "--type", "q8_0"],
                 [good_hf["sharded"], "-o", out / "c.gguf", "--type", "q4_0"]):
        check_exit(qconvert(*args), 0, " ".join(map(str, args)))
    assert sorted(os.listdir(out)) == ["a.gguf", "b.gguf", "c.gguf", "hf"]
