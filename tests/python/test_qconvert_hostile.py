"""Bad inputs to qconvert end with one line `qconvert: <file>: <field>: <reason>`, exit 1 and no output
file; the input is never written. No run may print a sanitizer report (scripts/sanitize.sh runs this file
against the ASan+UBSan build)."""

import json
import os
import pathlib
import shutil
import subprocess

import pytest

from conftest import program, sanitizer_report
from make_tiny_hf_model import make_tiny_hf_model


def qconvert(*args):
    p = subprocess.run([str(program("qconvert")), *map(str, args)], capture_output=True, text=True, timeout=120)
    assert sanitizer_report(p.stderr) is None, p.stderr
    return p


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    d = tmp_path_factory.mktemp("good") / "model"
    make_tiny_hf_model(d, dtype="f16", shards=2)
    return d


def variant(good, tmp_path, edit):
    d = tmp_path / "model"
    shutil.copytree(good, d)
    edit(d)
    return d


def edit_config(**changes):
    def f(d):
        cfg = json.loads((d / "config.json").read_text())
        for k, v in changes.items():
            if v is None:
                cfg.pop(k, None)
            else:
                cfg[k] = v
        (d / "config.json").write_text(json.dumps(cfg))
    return f


def edit_index(fn):
    def f(d):
        idx = json.loads((d / "model.safetensors.index.json").read_text())
        name = next(iter(idx["weight_map"]))
        idx["weight_map"][name] = fn(idx["weight_map"][name])
        (d / "model.safetensors.index.json").write_text(json.dumps(idx))
    return f


CASES = {
    "bad_json": (lambda d: (d / "config.json").write_text("{\"hidden_size\": 64,"), "config.json"),
    "no_config": (lambda d: (d / "config.json").unlink(), "config.json"),
    "unsupported_arch": (edit_config(architectures=["Qwen2ForCausalLM"]), "architectures: 'Qwen2ForCausalLM' is not supported"),
    "heads_not_dividing": (edit_config(num_attention_heads=5, num_key_value_heads=5), "num_attention_heads: 5 does not divide hidden_size 64"),
    "kv_heads_not_dividing": (edit_config(num_key_value_heads=3), "num_key_value_heads: 3 does not divide"),
    "missing_field": (edit_config(intermediate_size=None), "intermediate_size: missing"),
    "wrong_type": (edit_config(hidden_size="64"), "hidden_size: \"64\" is not an integer"),
    "shape_mismatch": (edit_config(intermediate_size=96), "does not match config.json"),
    "index_outside": (edit_index(lambda s: "../../etc/passwd"), "model.safetensors.index.json"),
    "index_missing_file": (edit_index(lambda s: "model-00009-of-00009.safetensors"), "model-00009-of-00009.safetensors"),
    "bias": (edit_config(attention_bias=True), "attention_bias: biases are not part of the llama architecture"),
    "rope_yarn": (edit_config(rope_scaling={"rope_type": "yarn", "factor": 4.0}), "rope_scaling: type 'yarn' is not supported"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_hf_dir(good, tmp_path, case):
    edit, expect = CASES[case]
    d = variant(good, tmp_path, edit)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    out = tmp_path / "out.gguf"
    p = qconvert(d, "-o", out, "--type", "q4_0", "--report", tmp_path / "r.json", "--card")
    assert p.returncode == 1
    lines = p.stderr.strip().split("\n")
    assert len(lines) == 1 and lines[0].startswith("qconvert: "), p.stderr
    assert expect in lines[0], lines[0]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["model"], "an output (or a temporary) was left behind"
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


def test_output_must_not_be_an_input(good, tmp_path):
    d = tmp_path / "model"
    shutil.copytree(good, d)
    shard = next(d.glob("model-*.safetensors"))
    before = shard.read_bytes()
    for target in (shard, d / "." / ".." / "model" / shard.name):
        p = qconvert(d, "-o", target, "--type", "q8_0", "--force")
        assert p.returncode == 1 and "is an input file" in p.stderr, p.stderr
    link = tmp_path / "link.safetensors"
    link.symlink_to(shard)
    p = qconvert(d, "-o", link, "--type", "q8_0", "--force")
    assert p.returncode == 1 and "is an input file" in p.stderr
    assert shard.read_bytes() == before


def test_existing_output_needs_force(good, tmp_path):
    out = tmp_path / "o.gguf"
    out.write_bytes(b"keep me")
    p = qconvert(good, "-o", out, "--type", "q8_0")
    assert p.returncode == 1 and "exists (use --force" in p.stderr
    assert out.read_bytes() == b"keep me"
    p = qconvert(good, "-o", out, "--type", "q8_0", "--force")
    assert p.returncode == 0, p.stderr
    assert out.read_bytes()[:4] == b"GGUF"


def test_bad_flags(good, tmp_path):
    out = tmp_path / "o.gguf"
    for args, expect in [(["--type", "q5_k_x"], "--type: 'q5_k_x' is not one of"),
                         (["--type", "q4_0", "--tensor-type", "attn(=q8_0"], "--tensor-type: 'attn(': bad regular expression"),
                         (["--type", "q4_0", "--tensor-type", "attn=q3"], "type 'q3' is not one of")]:
        p = qconvert(good, "-o", out, *args)
        assert p.returncode == 1 and expect in p.stderr and len(p.stderr.strip().split("\n")) == 1, p.stderr
    assert not out.exists()


def test_full_disk_leaves_nothing(good, tmp_path):
    if not pathlib.Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    # Writes through a temp file beside the output; a directory we cannot write stands in for a full disk.
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        p = qconvert(good, "-o", ro / "o.gguf", "--type", "q8_0")
        assert p.returncode == 1 and len(p.stderr.strip().split("\n")) == 1
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def test_export_dir_must_be_empty(tmp_path, default_model):
    d = tmp_path / "hf"
    d.mkdir()
    (d / "x").write_text("x")
    p = qconvert(default_model, "--to-hf", d)
    assert p.returncode == 1 and "exists and is not empty" in p.stderr
    assert [x.name for x in d.iterdir()] == ["x"]
    p = qconvert(default_model, "--to-hf", tmp_path / "q", "--type", "q4_0")
    assert p.returncode == 1 and "--to-hf writes f32, f16 or bf16" in p.stderr
    p = qconvert(default_model, "-o", tmp_path / "x.gguf")
    assert p.returncode == 1 and "--type: required" in p.stderr
    p = qconvert(default_model, "-o", tmp_path / "x.gguf", "--type", "q8_0")
    assert p.returncode == 1 and "--allow-requantize" in p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["hf"]
