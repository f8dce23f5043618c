"""qconvert with llama-quantize's habits (tools/quantize/quantize.cpp, src/llama-quant.cpp, common.cpp):

  (a) the positional form `qconvert IN [OUT] TYPE [NTHREADS]`: the same bytes as -o OUT --type TYPE
      -t NTHREADS; TYPE in any case, an alias (Q4_K) or llama-quantize's number (7 = Q8_0); without OUT,
      llama-quantize's default name ggml-model-<TYPE>.gguf beside IN; positionals that disagree with
      flags, a second positional that is not a type and the rest are one line on stderr and no output;
      --hash / --json without --info say so;
  (b) --override-kv KEY=TYPE:VALUE: each type read back with the gguf package as llama-quantize writes it
      (int as u32 of |value|, float as f32, bool, str), appended after general.file_type (a key the input
      has moves there); a malformed spec is one line naming it; refused with --to-hf;
  (c) witness, when llama-quantize is built (scripts/build-llamacpp-tools.sh; skipped otherwise): the
      same overrides give llama-quantize's file byte for byte, and `IN TYPE` the same file name and bytes.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

import pytest

from gguf import GGUFReader, GGUFValueType

from conftest import REPO, program, synthetic_llama
from make_tiny_hf_model import make_tiny_hf_model
from make_tiny_model import TinySpec, write_model

LLAMA_BIN = pathlib.Path(os.environ.get("QE_LLAMACPP_TOOLS", REPO / ".venv" / "llama.cpp-tools")) / "bin"
OVERRIDES = ["general.name=str:X", "foo.n=int:7", "foo.f=float:0.5", "foo.b=bool:true"]


def qconvert(*args, ok=True, cwd=None) -> subprocess.CompletedProcess:
    exe = program("qconvert").resolve()  # absolute: some cases run in another directory
    p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)
    if ok and p.returncode != 0:
        pytest.fail(f"qconvert {' '.join(map(str, args))} exited {p.returncode}: {p.stderr}")
    return p


def one_line_error(p: subprocess.CompletedProcess, *words: str) -> None:
    assert p.returncode == 1, f"exit {p.returncode}: {p.stderr}"
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("qconvert: "), p.stderr
    for w in words:
        assert w in p.stderr, f"{w!r} not in {p.stderr!r}"


def overrides_args(specs) -> list[str]:
    return [a for s in specs for a in ("--override-kv", s)]


def field(r: GGUFReader, key: str):
    f = r.fields[key]
    if f.types[0] == GGUFValueType.STRING:
        return f.types[0], bytes(f.parts[f.data[0]]).decode()
    return f.types[0], f.parts[f.data[0]][0].item()


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    d = tmp_path_factory.mktemp("habits")
    write_model(str(d / "tiny.gguf"), TinySpec(wtype="f32", tied=False, seed=11))
    make_tiny_hf_model(d / "hf", seed=11)
    return d


# ---------------------------------------------------------------------------------------------- (a)

SAME_AS_FLAGS = [
    # (id, positionals after IN and OUT, the flags they stand for)
    ("type", ["q8_0"], ["--type", "q8_0"]),
    ("upper-case", ["Q4_1"], ["--type", "q4_1"]),
    ("type-threads", ["Q8_0", "2"], ["--type", "q8_0", "-t", "2"]),
    ("number-7-is-q8_0", ["7"], ["--type", "q8_0"]),
    ("number-2-is-q4_0", ["2"], ["--type", "q4_0"]),
    ("alias-q4_k", ["q4_k"], ["--type", "Q4_K_M"]),
    ("agreeing-flags", ["q8_0", "-o", "{out}", "--type", "Q8_0"], ["--type", "q8_0"]),
]


@pytest.mark.parametrize("positionals, flags", [c[1:] for c in SAME_AS_FLAGS], ids=[c[0] for c in SAME_AS_FLAGS])
def test_positional_form_writes_the_flag_forms_bytes(src, tmp_path, positionals, flags):
    ours, ref = tmp_path / "positional.gguf", tmp_path / "flags.gguf"
    qconvert(src / "tiny.gguf", ours, *[a.format(out=ours) for a in positionals])
    qconvert(src / "tiny.gguf", "-o", ref, *flags)
    assert ours.read_bytes() == ref.read_bytes()


@pytest.mark.parametrize("type_arg, name", [("Q8_0", "Q8_0"), ("q8_0", "Q8_0"), ("7", "Q8_0"), ("q4_k", "Q4_K"),
                                            ("15", "Q4_K"), ("q4_k_m", "Q4_K_M"), ("f16", "F16")])
def test_default_output_name_is_llama_quantizes(src, tmp_path, type_arg, name):
    d = tmp_path / "models"
    d.mkdir()
    shutil.copy(src / "tiny.gguf", d / "in.gguf")
    qconvert(d / "in.gguf", type_arg)
    assert sorted(os.listdir(d)) == sorted(["in.gguf", f"ggml-model-{name}.gguf"])


def test_default_output_without_a_folder_is_in_the_current_directory(src, tmp_path):
    shutil.copy(src / "tiny.gguf", tmp_path / "in.gguf")
    qconvert("in.gguf", "q8_0", "1", cwd=tmp_path)
    ref = tmp_path / "ref.gguf"
    qconvert("in.gguf", "-o", ref, "--type", "q8_0", cwd=tmp_path)
    assert (tmp_path / "ggml-model-Q8_0.gguf").read_bytes() == ref.read_bytes()


def test_hf_directory_with_positionals(src, tmp_path):
    ours, ref = tmp_path / "a.gguf", tmp_path / "b.gguf"
    qconvert(src / "hf", ours, "Q8_0", "2")
    qconvert(src / "hf", "-o", ref, "--type", "q8_0", "-t", "2")
    assert ours.read_bytes() == ref.read_bytes()


POSITIONAL_ERRORS = [
    # (id, arguments after IN ({d}: the test's folder), words the one line must hold)
    ("out-without-type", ["{d}/o.gguf"], ["give the output type: qconvert IN OUT TYPE, or -o OUT --type TYPE"]),
    ("out-without-type-with-flag", ["{d}/o.gguf", "--type", "q8_0"], ["give the output type"]),
    ("not-a-type", ["{d}/o.gguf", "q9_9"], ["'q9_9' is not an output type"]),
    ("copy-is-not-written", ["{d}/o.gguf", "COPY"], ["'COPY' is not an output type"]),
    ("out-disagrees", ["{d}/o.gguf", "q8_0", "-o", "{d}/p.gguf"], ["OUT", "-o", "disagree"]),
    ("type-disagrees", ["{d}/o.gguf", "q8_0", "--type", "q4_0"], ["TYPE 'q8_0' and --type 'q4_0' disagree"]),
    ("threads-disagree", ["{d}/o.gguf", "q8_0", "2", "-t", "3"], ["NTHREADS '2' and -t '3' disagree"]),
    ("threads-not-a-number", ["{d}/o.gguf", "q8_0", "two"], ["NTHREADS 'two'"]),
    ("five-arguments", ["{d}/o.gguf", "q8_0", "2", "x"], ["at most 4"]),
    ("too-many-after-type", ["q8_0", "2", "x"], ["too many arguments after TYPE"]),
    ("with-to-hf", ["{d}/o.gguf", "f16", "--to-hf", "{d}/hf"], ["--to-hf"]),
    ("type-with-to-hf", ["f16", "--to-hf", "{d}/hf"], ["--to-hf"]),
    ("hash-without-info", ["--hash"], ["--hash goes with --info PATH"]),
    ("json-without-info", ["{d}/o.gguf", "q8_0", "--json"], ["--json goes with --info PATH"]),
]


@pytest.mark.parametrize("args, words", [c[1:] for c in POSITIONAL_ERRORS], ids=[c[0] for c in POSITIONAL_ERRORS])
def test_positional_errors(src, tmp_path, args, words):
    p = qconvert(src / "tiny.gguf", *[a.format(d=tmp_path) for a in args], ok=False)
    one_line_error(p, *words)
    assert os.listdir(tmp_path) == [], os.listdir(tmp_path)


def test_hash_alone_says_it_goes_with_info():
    one_line_error(qconvert("--hash", ok=False), "--hash goes with --info PATH")


def test_help_shows_the_positional_form():
    out = qconvert("--help").stdout
    assert "INPUT [OUTPUT.gguf] TYPE [NTHREADS]" in out and "--override-kv" in out, out


# ---------------------------------------------------------------------------------------------- (b)

def test_override_kv_types_read_back(src, tmp_path):
    out = tmp_path / "o.gguf"
    p = qconvert(src / "tiny.gguf", out, "q8_0", *overrides_args(OVERRIDES + ["foo.neg=int:-3", "foo.s=str:a b=c:d"]))
    assert "foo.neg=int:-3: written as 3" in p.stderr, p.stderr
    r = GGUFReader(out)
    keys = list(r.fields)
    assert keys.count("general.name") == 1
    # llama-quantize's order: the input's keys, quantization version, file type, then the overrides
    assert keys[-8:] == ["general.quantization_version", "general.file_type", "general.name", "foo.n", "foo.f",
                         "foo.b", "foo.neg", "foo.s"], keys
    assert field(r, "general.name") == (GGUFValueType.STRING, "X")
    assert field(r, "foo.n") == (GGUFValueType.UINT32, 7)
    assert field(r, "foo.f") == (GGUFValueType.FLOAT32, 0.5)
    assert field(r, "foo.b") == (GGUFValueType.BOOL, True)
    assert field(r, "foo.neg") == (GGUFValueType.UINT32, 3)
    assert field(r, "foo.s") == (GGUFValueType.STRING, "a b=c:d")


def test_override_kv_the_last_of_a_key_wins(src, tmp_path):
    out = tmp_path / "o.gguf"
    qconvert(src / "tiny.gguf", "-o", out, "--type", "q8_0", *overrides_args(["foo.x=int:1", "foo.y=bool:false",
                                                                              "foo.x=str:two"]))
    r = GGUFReader(out)
    assert list(r.fields)[-2:] == ["foo.y", "foo.x"]
    assert field(r, "foo.x") == (GGUFValueType.STRING, "two")


def test_override_kv_from_hf(src, tmp_path):
    out = tmp_path / "o.gguf"
    qconvert(src / "hf", "-o", out, *overrides_args(["foo.n=int:9", "general.name=str:Y"]))
    r = GGUFReader(out)
    assert list(r.fields)[-2:] == ["foo.n", "general.name"]
    assert field(r, "foo.n") == (GGUFValueType.UINT32, 9)
    assert field(r, "general.name") == (GGUFValueType.STRING, "Y")


KV_ERRORS = [
    # (id, spec, words)
    ("no-equals", "foo", ["'foo'", "KEY=TYPE:VALUE"]),
    ("no-type", "foo=7", ["'foo=7'", "KEY=TYPE:VALUE"]),
    ("empty-key", "=int:1", ["'=int:1'", "key is empty"]),
    ("unknown-type", "foo=u8:1", ["'foo=u8:1'", "type 'u8'"]),
    ("bad-int", "foo=int:7x", ["'foo=int:7x'", "not an integer"]),
    ("empty-int", "foo=int:", ["'foo=int:'", "not an integer"]),
    ("bad-float", "foo=float:abc", ["'foo=float:abc'", "not a number"]),
    ("bad-bool", "foo=bool:yes", ["'foo=bool:yes'", "true or false"]),
    ("bool-is-lower-case", "foo=bool:True", ["'foo=bool:True'", "true or false"]),
    ("key-128", "k" * 128 + "=int:1", ["128 bytes", "at most 127"]),
    ("str-128", "foo=str:" + "v" * 128, ["128 bytes", "at most 127"]),
    ("int-past-u32", "foo=int:4294967296", ["foo: 4294967296", "u32"]),
]


@pytest.mark.parametrize("spec, words", [c[1:] for c in KV_ERRORS], ids=[c[0] for c in KV_ERRORS])
def test_override_kv_errors(src, tmp_path, spec, words):
    p = qconvert(src / "tiny.gguf", tmp_path / "o.gguf", "q8_0", "--override-kv", spec, ok=False)
    one_line_error(p, "--override-kv", *words)
    assert os.listdir(tmp_path) == []


def test_override_kv_limits_are_inclusive(src, tmp_path):
    out = tmp_path / "o.gguf"
    qconvert(src / "tiny.gguf", out, "q8_0", "--override-kv", "k" * 127 + "=str:" + "v" * 127,
             "--override-kv", "foo.max=int:4294967295")
    r = GGUFReader(out)
    assert field(r, "k" * 127) == (GGUFValueType.STRING, "v" * 127)
    assert field(r, "foo.max") == (GGUFValueType.UINT32, 4294967295)


def test_override_kv_refused_with_to_hf(src, tmp_path):
    p = qconvert(src / "tiny.gguf", "--to-hf", tmp_path / "hf", "--override-kv", "foo=int:1", ok=False)
    one_line_error(p, "--override-kv", "--to-hf")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------- (c)

def llama_quantize() -> pathlib.Path:
    path = LLAMA_BIN / "llama-quantize"
    if not path.exists():
        pytest.skip(f"{path} is not built (scripts/build-llamacpp-tools.sh)")
    return path


@pytest.fixture(scope="module")
def synthetic_model(tmp_path_factory):
    """scripts/make-synthetic-llama.py's `tiny` shape in f32: a model llama-quantize loads."""
    llama_quantize()
    mod = synthetic_llama()
    path = tmp_path_factory.mktemp("habits_llama") / "tiny-f32.gguf"
    mod.write_model(str(path), mod.SHAPES["tiny"], "tiny", "f32", 20240701)
    return path


def run_llama_quantize(*args) -> None:
    p = subprocess.run([str(llama_quantize()), *map(str, args)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"llama-quantize {args} exited {p.returncode}:\n{(p.stdout + p.stderr)[-3000:]}"


def test_override_kv_bytes_equal_llama_quantize(synthetic_model, tmp_path):
    specs = OVERRIDES + ["foo.neg=int:-3", "foo.e=float:1e-3"]
    theirs, ours = tmp_path / "theirs.gguf", tmp_path / "ours.gguf"
    run_llama_quantize(*overrides_args(specs), synthetic_model, theirs, "q8_0", 2)
    qconvert(synthetic_model, ours, "q8_0", 2, *overrides_args(specs))
    assert list(GGUFReader(ours).fields) == list(GGUFReader(theirs).fields), "key order"
    assert ours.read_bytes() == theirs.read_bytes()


@pytest.mark.parametrize("type_arg", ["7", "q4_k"])
def test_default_name_and_bytes_equal_llama_quantize(synthetic_model, tmp_path, type_arg):
    a, b = tmp_path / "llama", tmp_path / "ours"
    for d in (a, b):
        d.mkdir()
        shutil.copy(synthetic_model, d / "in.gguf")
    run_llama_quantize(a / "in.gguf", type_arg, 2)
    qconvert(b / "in.gguf", type_arg, 2)
    names = sorted(os.listdir(a))
    assert sorted(os.listdir(b)) == names and len(names) == 2, (os.listdir(a), os.listdir(b))
    made = next(n for n in names if n != "in.gguf")
    assert (a / made).read_bytes() == (b / made).read_bytes()


# The tensor-type flags of llama-quantize, each against its file byte for byte.
TYPE_FLAGS = [
    ("output-type", ["--output-tensor-type", "q8_0"], "q4_k"),
    ("token-type", ["--token-embedding-type", "q8_0"], "q4_0"),
    ("both", ["--output-tensor-type", "q5_0", "--token-embedding-type", "q6_k"], "q4_k_m"),
    ("leave-output", ["--leave-output-tensor"], "q4_0"),
    ("leave-output-pure", ["--leave-output-tensor", "--pure"], "q4_k"),
    ("tensor-type-last-match-wins", ["--tensor-type", "attn=q8_0", "--tensor-type", "attn_v=q5_1"], "q4_k"),
]


@pytest.mark.parametrize("flags, type_arg", [c[1:] for c in TYPE_FLAGS], ids=[c[0] for c in TYPE_FLAGS])
def test_tensor_type_flags_bytes_equal_llama_quantize(synthetic_model, tmp_path, flags, type_arg):
    theirs, ours = tmp_path / "theirs.gguf", tmp_path / "ours.gguf"
    run_llama_quantize(*flags, synthetic_model, theirs, type_arg, 2)
    qconvert(synthetic_model, ours, type_arg, 2, *flags)
    want = {t.name: t.tensor_type.name for t in GGUFReader(theirs).tensors}
    assert {t.name: t.tensor_type.name for t in GGUFReader(ours).tensors} == want
    assert ours.read_bytes() == theirs.read_bytes()


@pytest.mark.parametrize("flag", ["--include-weights", "--exclude-weights", "--prune-layers", "--keep-split"])
def test_llama_quantize_flags_without_counterpart_are_named(src, tmp_path, flag):
    p = qconvert(flag, "x", src, tmp_path / "o.gguf", "q8_0", ok=False)
    one_line_error(p, flag, "not supported")
    assert not (tmp_path / "o.gguf").exists()


@pytest.mark.parametrize("flag", ["-xyz", "-ngl", "--nosuch"])
def test_unknown_options_are_unknown(src, tmp_path, flag):
    p = qconvert(flag, src, tmp_path / "o.gguf", "q8_0", ok=False)
    one_line_error(p, f"unknown option {flag}")


# Options whose absence is their default (an action, a file to read or write, a list of rules).
NO_DEFAULT = {"--info", "--to-hf", "--override-kv", "--tensor-type", "--report", "--imatrix", "--awq",
              "--imatrix-out", "--config", "input"}


def test_help_gives_every_valued_option_its_default():
    text = qconvert("--help").stdout
    valued = re.findall(r"^\s+(?:-\w,)?(--[\w-]+|input) (?:TEXT|INT|UINT)\b.*$", text, re.M)
    assert len(valued) >= 20, text
    for line in text.splitlines():
        m = re.match(r"^\s+(?:-\w,)?(--[\w-]+|input) (?:TEXT|INT|UINT)\b", line)
        if m and m.group(1) not in NO_DEFAULT:
            assert "default" in line, line
