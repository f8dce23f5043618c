"""qconvert's calibration flags and --config FILE.yaml, at the command line.

  (a) the rules of --imatrix, --awq and its knobs, --imatrix-out and --method: each broken combination is
      one line on stderr, a non-zero exit and no output file;
  (b) --config: a conversion from a YAML file writes the same bytes as the same conversion from flags;
      a flag on the command line overrides the file; an unknown key, a value of the wrong kind, a value
      the flag refuses and a file that is not YAML are one line naming the file and the key.

The calibration itself is not run here (tests for it are with the calibrator): every case below is
decided before it would start, or converts without --awq.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

import gguf

from conftest import REPO
from make_tiny_hf_model import make_tiny_hf_model
from make_tiny_model import TinySpec, write_model

BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))


def qconvert(*args, ok=True, cwd=None):
    exe = BIN / "qconvert"
    if not exe.exists():
        pytest.skip(f"{exe} is not built (set QE_BIN)")
    p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)
    if ok and p.returncode != 0:
        pytest.fail(f"qconvert {' '.join(map(str, args))} exited {p.returncode}: {p.stderr}")
    return p


def one_line_error(p, *words):
    assert p.returncode != 0, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("qconvert: "), p.stderr
    for w in words:
        assert w in p.stderr, f"{w!r} not in {p.stderr!r}"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("awqcli")
    write_model(str(d / "tiny.gguf"), TinySpec(wtype="f32", tied=False, seed=11))
    (d / "calib.txt").write_text("The quick brown fox jumps over the lazy dog. " * 50)
    # A small imatrix (llama-imatrix's GGUF layout) for two of the weights.
    w = gguf.GGUFWriter(d / "im.gguf", arch="imatrix")
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", ["calib.txt"])
    w.add_uint32("imatrix.chunk_count", 3)
    w.add_uint32("imatrix.chunk_size", 64)
    rng = np.random.default_rng(5)
    for name in ("blk.0.attn_q.weight", "blk.1.ffn_up.weight"):
        w.add_tensor(name + ".in_sum2", (rng.random((1, 64)) * 100).astype(np.float32))
        w.add_tensor(name + ".counts", np.full((1, 1), 64, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return d


# ---------------------------------------------------------------------------------------------- (a) flags

FLAG_CASES = [
    # (id, extra flags ({d} is the fixture's folder), words the error must contain)
    ("samples-without-awq", ["--awq-samples", "8"], ["--awq-samples", "needs --awq"]),
    ("ctx-without-awq", ["--awq-ctx", "64"], ["--awq-ctx", "needs --awq"]),
    ("grid-without-awq", ["--awq-grid", "4"], ["--awq-grid", "needs --awq"]),
    ("no-clip-without-awq", ["--no-awq-clip"], ["--no-awq-clip", "needs --awq"]),
    ("seed-without-awq", ["--seed", "3"], ["--seed", "needs --awq"]),
    ("imatrix-out-without-awq", ["--imatrix-out", "{d}/x.imatrix"], ["--imatrix-out", "needs --awq"]),
    ("samples-zero", ["--awq", "{d}/calib.txt", "--awq-samples", "0"], ["--awq-samples", "at least 1"]),
    ("samples-not-int", ["--awq", "{d}/calib.txt", "--awq-samples", "many"], ["--awq-samples", "not an integer"]),
    ("ctx-too-small", ["--awq", "{d}/calib.txt", "--awq-ctx", "15"], ["--awq-ctx", "at least 16"]),
    ("grid-zero", ["--awq", "{d}/calib.txt", "--awq-grid", "0"], ["--awq-grid", "at least 1"]),
    ("grid-too-big", ["--awq", "{d}/calib.txt", "--awq-grid", "1001"], ["--awq-grid", "at most 1000"]),
    ("seed-negative", ["--awq", "{d}/calib.txt", "--seed", "-1"], ["--seed"]),
    ("method-unknown", ["--awq", "{d}/calib.txt", "--method", "awq_q5_0"], ["--method", "awq_q5_0", "awq_q4_0"]),
    ("method-without-awq", ["--method", "awq_q4_0"], ["--method", "--awq CALIB.txt"]),
    ("method-type-disagree", ["--awq", "{d}/calib.txt", "--method", "awq_q4_0", "--type", "q8_0"],
     ["--method", "q4_0", "q8_0"]),
    ("imatrix-out-exists", ["--awq", "{d}/calib.txt", "--imatrix-out", "{d}/calib.txt"],
     ["calib.txt", "already exists", "--force"]),
]


@pytest.mark.parametrize("case_id,flags,words", FLAG_CASES, ids=[c[0] for c in FLAG_CASES])
def test_flag_rules(files, tmp_path, case_id, flags, words):
    out = tmp_path / "out.gguf"
    args = [a.replace("{d}", str(files)) for a in flags]
    if "--type" not in args and "--method" not in args:
        args += ["--type", "q4_0"]
    p = qconvert(files / "tiny.gguf", "-o", out, *args, ok=False)
    one_line_error(p, *words)
    assert not out.exists()
    assert not (tmp_path / "x.imatrix").exists()


def test_awq_with_to_hf_is_refused(files, tmp_path):
    out = tmp_path / "hf"
    p = qconvert(files / "tiny.gguf", "--to-hf", out, "--awq", files / "calib.txt", ok=False)
    one_line_error(p, "--awq", "--to-hf")
    assert not out.exists()


def test_imatrix_out_naming_an_input_never_touches_it(files, tmp_path):
    # --force passes the front end's existence check; the library must still refuse to write over an input
    # (ConvertJob::extra_outputs), whatever else stops the conversion first.
    src = tmp_path / "in.gguf"
    src.write_bytes((files / "tiny.gguf").read_bytes())
    before = src.read_bytes()
    p = qconvert(src, "-o", tmp_path / "out.gguf", "--type", "q4_0", "--awq", files / "calib.txt",
                 "--imatrix-out", src, "--force", ok=False)
    assert p.returncode != 0 and p.stderr.count("\n") == 1, p.stderr
    assert src.read_bytes() == before
    assert not (tmp_path / "out.gguf").exists()


def test_help_documents_the_flags_and_precedence():
    p = qconvert("--help")
    for flag in ("--imatrix", "--awq", "--awq-samples", "--awq-ctx", "--awq-grid", "--no-awq-clip", "--seed",
                 "--imatrix-out", "--method", "--config"):
        assert flag in p.stdout, flag
    assert "command line overrides the file" in p.stdout
    assert "Precedence" in p.stdout


def test_report_has_weighted_and_no_awq(files, tmp_path):
    out, report = tmp_path / "out.gguf", tmp_path / "r.json"
    qconvert(files / "tiny.gguf", "-o", out, "--type", "q4_0", "--pure", "--imatrix", files / "im.gguf",
             "--report", report, "--card", "-t", 2)
    r = json.loads(report.read_text())
    assert r["awq"] is None and r["imatrix"] == str(files / "im.gguf") and r["imatrix_out"] is None
    assert {t["name"] for t in r["tensors"] if t["weighted"]} == {"blk.0.attn_q.weight", "blk.1.ffn_up.weight"}
    card = (tmp_path / "out.md").read_text()
    assert "Importance matrix" in card and "importance-weighted" in card
    assert "Activation-aware calibration" not in card


# ---------------------------------------------------------------------------------------------- (b) --config

def write_yaml(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text)
    return path


def test_config_equals_flags_gguf(files, tmp_path):
    a, b = tmp_path / "flags.gguf", tmp_path / "config.gguf"
    qconvert(files / "tiny.gguf", "-o", a, "--type", "q4_1", "--imatrix", files / "im.gguf",
             "--tensor-type", "attn_v=q8_0", "--tensor-type", "ffn_down=q4_0", "-t", 2)
    cfg = write_yaml(tmp_path / "c.yaml", f"""
# every conversion setting of the flags run above
input: {files / 'tiny.gguf'}
output: {b}
type: q4_1
imatrix: {files / 'im.gguf'}
tensor-type:
  - attn_v=q8_0
  - ffn_down=q4_0
threads: 2
""")
    qconvert("--config", cfg)
    assert a.read_bytes() == b.read_bytes()


def test_config_equals_flags_hf(tmp_path):
    hf = tmp_path / "hf"
    make_tiny_hf_model(hf, hidden=64, layers=1, heads=4, kv_heads=2, ff=96, dtype="f16", seed=9)
    a, b = tmp_path / "flags.gguf", tmp_path / "config.gguf"
    qconvert(hf, "-o", a, "--type", "q8_0", "--pure", "-t", 1)
    cfg = write_yaml(tmp_path / "c.yaml", f"input: {hf}\noutput: {b}\ntype: q8_0\npure: true\nthreads: 1\n")
    qconvert("--config", cfg)
    assert a.read_bytes() == b.read_bytes()


def test_command_line_overrides_config(files, tmp_path):
    want, got = tmp_path / "want.gguf", tmp_path / "got.gguf"
    qconvert(files / "tiny.gguf", "-o", want, "--type", "q4_0", "--tensor-type", "attn_q=q8_0", "-t", 2)
    cfg = write_yaml(tmp_path / "c.yaml", f"""
input: {files / 'tiny.gguf'}
output: {tmp_path / 'not-this.gguf'}
type: q8_0
tensor-type: [ffn_up=q4_1, attn_k=q4_1]
pure: false
threads: 2
""")
    # -o, --type and --tensor-type from the command line; the file's list is replaced, not extended.
    qconvert("--config", cfg, "-o", got, "--type", "q4_0", "--tensor-type", "attn_q=q8_0")
    assert want.read_bytes() == got.read_bytes()
    assert not (tmp_path / "not-this.gguf").exists()


def test_config_flags_follow_the_same_rules(files, tmp_path):
    # A knob from the file without --awq is refused as the flag is.
    out = tmp_path / "out.gguf"
    cfg = write_yaml(tmp_path / "c.yaml", f"input: {files / 'tiny.gguf'}\noutput: {out}\ntype: q4_0\nawq-samples: 64\n")
    one_line_error(qconvert("--config", cfg, ok=False), "--awq-samples", "needs --awq")
    assert not out.exists()


BAD_CONFIGS = [
    # (id, YAML text, words the error must contain besides the file name)
    ("unknown-key", "type: q4_0\nquantise: yes\n", ["quantise", "unknown key"]),
    ("short-name", "o: out.gguf\n", ["o", "unknown key"]),
    ("not-an-integer", "awq: calib.txt\nawq-samples: lots\n", ["awq-samples", "integer", "lots"]),
    ("float-for-integer", "threads: 2.5\n", ["threads", "integer"]),
    ("flag-not-bool", "pure: sometimes\n", ["pure", "true or false"]),
    ("list-for-scalar", "type: [q4_0, q8_0]\n", ["type", "one value", "a list"]),
    ("mapping-value", "tensor-type: {attn: q8_0}\n", ["tensor-type", "a mapping"]),
    ("no-value", "type:\n", ["type", "nothing"]),
    ("refused-value", "awq: calib.txt\nawq-grid: 0\n", ["awq-grid", "at least 1"]),
    ("negative-threads", "threads: -3\n", ["threads"]),
    ("twice", "type: q4_0\ntype: q8_0\n", ["type", "twice"]),
    ("nested-config", "config: other.yaml\n", ["config", "command line"]),
    ("info-in-file", "info: x.gguf\n", ["info", "command line"]),
    ("bad-yaml", "type: [q4_0\npure: true\n", ["not valid YAML", "line"]),
    ("tab-indent", "type: q4_0\n\tpure: true\n", ["not valid YAML"]),
    ("not-a-mapping", "- type\n- q4_0\n", ["mapping"]),
]


@pytest.mark.parametrize("case_id,text,words", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_one_line(files, tmp_path, case_id, text, words):
    out = tmp_path / "out.gguf"
    cfg = write_yaml(tmp_path / "bad.yaml", text)
    p = qconvert("--config", cfg, files / "tiny.gguf", "-o", out, ok=False, cwd=files)
    one_line_error(p, str(cfg), *words)
    assert not out.exists()


def test_missing_config_file(files, tmp_path):
    out = tmp_path / "out.gguf"
    p = qconvert("--config", tmp_path / "none.yaml", files / "tiny.gguf", "-o", out, "--type", "q4_0", ok=False)
    one_line_error(p, str(tmp_path / "none.yaml"))
    assert not out.exists()


def test_empty_config_sets_nothing(files, tmp_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    cfg = write_yaml(tmp_path / "empty.yaml", "# nothing yet\n")
    qconvert(files / "tiny.gguf", "-o", a, "--type", "q8_0", "-t", 1)
    qconvert("--config", cfg, files / "tiny.gguf", "-o", b, "--type", "q8_0", "-t", 1)
    assert a.read_bytes() == b.read_bytes()
