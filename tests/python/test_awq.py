"""The AWQ calibrator (qconvert --awq) on the default model, SmolLM2-135M, end to end:

  - on every block, every linear group's calibrated output error is at most the plain quantizer's
    (the --report JSON's loss_awq <= loss_rtn), and it is lower in total;
  - the output is ordinary GGUF: the gguf package reads it, the tensors are q4_0 blocks, and the
    quantize.awq.* keys record the calibration (file, XXH3 of its bytes, samples, tokens, grid, clip);
  - llama.cpp (llama-cpp-python) loads it, and its perplexity equals qrun's within 0.5%;
  - --imatrix-out is llama-imatrix's layout with the calibration's sums (read back with the gguf package);
  - a sub-8-bit source without --allow-requantize, and a calibration text too short, are one-line errors.

The calibration is small here (8 windows of 256 tokens, a grid of 5) to keep the test short; quality
at full size is measured by scripts/quality-table.sh.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import numpy as np
import pytest
import xxhash

import gguf

from conftest import REPO, optional_reference
import llamacpp_compare as cmp
from make_tiny_model import TinySpec, write_model

BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))
SAMPLES, CTX, GRID = 8, 256, 5


def run(tool: str, *args, ok: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    exe = BIN / tool
    if not exe.exists():
        pytest.skip(f"{exe} is not built (set QE_BIN)")
    p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if ok and p.returncode != 0:
        pytest.fail(f"{tool} {' '.join(map(str, args))} exited {p.returncode}: {p.stderr[-2000:]}")
    return p


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path]:
    """(calibration, evaluation): two parts of the pydoc topics that do not overlap."""
    text = cmp.perplexity_text(400_000)
    d = tmp_path_factory.mktemp("awq_texts")
    calib, held_out = d / "calib.txt", d / "eval.txt"
    calib.write_text(text[:80_000], encoding="utf-8")
    held_out.write_text(text[200_000:260_000], encoding="utf-8")
    return calib, held_out


@pytest.fixture(scope="module")
def awq(default_model, texts, tmp_path_factory) -> dict:
    calib, _ = texts
    d = tmp_path_factory.mktemp("awq")
    out, report, imatrix = d / "awq-q4_0.gguf", d / "report.json", d / "imatrix.gguf"
    p = run("qconvert", default_model, "-o", out, "--type", "q4_0", "--allow-requantize", "--awq", calib,
            "--awq-samples", SAMPLES, "--awq-ctx", CTX, "--awq-grid", GRID, "--report", report,
            "--imatrix-out", imatrix)
    return {"out": out, "report": json.loads(report.read_text()), "imatrix": imatrix, "stderr": p.stderr,
            "calib": calib}


def test_every_group_of_every_block_beats_plain(awq):
    a = awq["report"]["awq"]
    assert len(a["layers"]) == 30
    total_rtn = total_awq = 0.0
    for layer in a["layers"]:
        assert [g["name"] for g in layer["groups"]] == ["qkv", "o", "gate_up", "down"]
        for g in layer["groups"]:
            assert g["loss_awq"] <= g["loss_rtn"] * (1 + 1e-9), (layer["layer"], g)
            assert g["alpha"] in [i / GRID for i in range(GRID)], g
            total_rtn += g["loss_rtn"]
            total_awq += g["loss_awq"]
    assert total_awq < 0.8 * total_rtn, (total_awq, total_rtn)


def test_output_is_standard_gguf_with_provenance(awq):
    r = gguf.GGUFReader(awq["out"])
    types = {t.name: t.tensor_type for t in r.tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.Q4_0
    assert types["blk.29.ffn_down.weight"] == gguf.GGMLQuantizationType.Q4_0
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32

    def value(key):
        f = r.fields[key]
        v = f.parts[f.data[0]]
        return bytes(v).decode() if f.types[0] == gguf.GGUFValueType.STRING else v[0]

    calib = awq["calib"]
    assert value("quantize.awq.file") == str(calib)
    assert value("quantize.awq.file_xxh3") == xxhash.xxh3_64(calib.read_bytes()).hexdigest()
    assert value("quantize.awq.samples") == SAMPLES
    assert value("quantize.awq.ctx") == CTX
    assert value("quantize.awq.tokens") == SAMPLES * CTX
    assert value("quantize.awq.grid") == GRID
    assert bool(value("quantize.awq.clip"))
    assert value("quantize.awq.importance") == "calibration"


def test_imatrix_out_holds_the_calibration_sums(awq):
    r = gguf.GGUFReader(awq["imatrix"])
    assert bytes(r.fields["general.type"].parts[-1]).decode() == "imatrix"
    names = {t.name: t for t in r.tensors}
    for layer in (0, 29):
        for w in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
            counts = names[f"blk.{layer}.{w}.weight.counts"].data.reshape(-1)
            sums = names[f"blk.{layer}.{w}.weight.in_sum2"].data.reshape(-1)
            assert counts.tolist() == [SAMPLES * CTX]
            assert np.all(np.isfinite(sums)) and np.all(sums >= 0) and sums.sum() > 0
    # q, k and v read the same input
    q = names["blk.3.attn_q.weight.in_sum2"].data
    v = names["blk.3.attn_v.weight.in_sum2"].data
    assert np.array_equal(q, v)


def test_llama_cpp_loads_it_and_agrees_on_perplexity(awq, texts):
    optional_reference("llama_cpp")
    _, held_out = texts
    text = held_out.read_text(encoding="utf-8")
    n_ctx = 512
    llm = cmp.load_llama(awq["out"], n_ctx=n_ctx, n_threads=2)
    tokens = cmp.llama_tokenize(llm, text)
    bos = cmp.llama_bos_if_added(llm)
    n_chunks = min(6, len(tokens) // n_ctx)
    tokens = tokens[:n_chunks * n_ctx]
    ppl_llama, _, _ = cmp.perplexity_from_chunks(lambda c: cmp.llama_chunk_logits(llm, c), tokens, n_ctx, bos)
    p = run("qrun", "-m", awq["out"], "--perplexity", "-f", held_out, "-c", n_ctx, "--chunks", n_chunks, "-t", 2)
    ppl_qrun = float(p.stdout.strip().splitlines()[-1].split("PPL = ")[1].split()[0])
    assert abs(ppl_qrun / ppl_llama - 1) < 0.005, (ppl_qrun, ppl_llama)


def test_bad_sources_and_texts_are_one_line_errors(default_model, texts, tmp_path):
    calib, _ = texts
    out = tmp_path / "x.gguf"
    p = run("qconvert", default_model, "-o", out, "--type", "q4_0", "--awq", calib, ok=False)
    assert p.returncode != 0 and p.stderr.count("\n") == 1 and "--allow-requantize" in p.stderr, p.stderr
    short = tmp_path / "short.txt"
    short.write_text("def f(): pass\n", encoding="utf-8")
    p = run("qconvert", default_model, "-o", out, "--type", "q4_0", "--allow-requantize", "--awq", short, ok=False)
    assert p.returncode != 0 and p.stderr.count("\n") == 1 and "one window needs 512" in p.stderr, p.stderr
    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 64)
    p = run("qconvert", default_model, "-o", out, "--type", "q4_0", "--allow-requantize", "--awq", binary, ok=False)
    assert p.returncode != 0 and p.stderr.count("\n") == 1 and "not UTF-8 text" in p.stderr, p.stderr
    assert not out.exists()
    assert not [f for f in tmp_path.iterdir() if "awq-f32" in f.name]


def test_a_source_without_the_tensors_the_folding_needs_is_one_error(texts, tmp_path):
    calib, _ = texts
    for missing in ("blk.1.ffn_norm.weight", "blk.0.attn_v.weight"):
        src = tmp_path / "broken.gguf"
        write_model(str(src), TinySpec(omit=(missing,)))
        out = tmp_path / "x.gguf"
        p = run("qconvert", src, "-o", out, "--type", "q4_0", "--awq", calib, "--awq-ctx", 64, ok=False)
        assert p.returncode != 0 and p.stderr.count("\n") == 1 and missing in p.stderr, p.stderr
        assert not out.exists()
        assert not [f for f in tmp_path.iterdir() if "awq-f32" in f.name]
