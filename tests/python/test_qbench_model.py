"""qbench -m: llama-bench's command line and output shape, on a tiny synthetic model (no timing checks).

Rows come in llama-bench's order (model, threads, depth, then pp, tg and pg tests), the Markdown table
has its columns and the JSON its keys; the model description, size and parameter count equal
llama-bench's own on the same file when llama-bench is built (scripts/build-llamacpp-tools.sh). Bad
flags exit 2 and a bad file 1, each with one line on stderr that starts with "qbench: ".
Kernel mode: --help lists qbench's own flags before Google Benchmark's, and output to a pipe has no
colour codes.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess

import pytest

import make_tiny_model as tiny

REPO = pathlib.Path(os.environ.get("QE_SOURCE", pathlib.Path(__file__).resolve().parents[2]))
BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))
LLAMA_BENCH = pathlib.Path(os.environ.get("QE_LLAMACPP_TOOLS", REPO / ".venv" / "llama.cpp-tools")) / "bin" / "llama-bench"
TIMEOUT_S = 120
MD_COLUMNS = ["model", "size", "params", "backend", "threads", "test", "t/s"]


def qbench(*args, check: bool = True) -> subprocess.CompletedProcess:
    exe = BIN / "qbench"
    if not exe.exists():
        pytest.skip(f"{exe} is not built (set QE_BIN)")
    proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT_S)
    if check and proc.returncode != 0:
        pytest.fail(f"qbench {' '.join(map(str, args))} exited {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("qbench") / "tiny-q8_0.gguf"
    tiny.write_model(str(path), tiny.TinySpec(wtype="q8_0", n_ctx=512))
    return path


def md_rows(out: str) -> tuple[list[str], list[list[str]]]:
    lines = [l for l in out.splitlines() if l.startswith("|")]
    cells = [[c.strip() for c in l.strip("|").split("|")] for l in lines]
    assert re.fullmatch(r"[-: |]+", lines[1]), lines[1]
    return cells[0], cells[2:]


def test_markdown_table(model):
    out = qbench("-m", model, "-p", 16, "-n", 4, "-r", 2, "-t", 1).stdout
    header, rows = md_rows(out)
    assert header == MD_COLUMNS
    assert [r[5] for r in rows] == ["pp16", "tg4"]
    for r in rows:
        assert r[0].startswith("llama ?B ")
        assert re.fullmatch(r"\d+\.\d\d MiB", r[1]) and re.fullmatch(r"\d+\.\d\d M", r[2])
        assert re.fullmatch(r"CPU \((ref|avx2|avx512|neon)\)", r[3])
        assert r[4] == "1"
        assert re.fullmatch(r"\d+\.\d\d ± \d+\.\d\d", r[6])


def test_json_keys_and_samples(model):
    out = qbench("--model", model, "-p", 8, "-n", 3, "-r", 3, "-t", 1, "-o", "json").stdout
    rows = json.loads(out)
    assert [(r["n_prompt"], r["n_gen"]) for r in rows] == [(8, 0), (0, 3)]
    for r in rows:
        for key in ("cpu_info", "model_filename", "model_type", "model_size", "model_n_params", "n_batch",
                    "n_ubatch", "n_threads", "n_depth", "test_time", "avg_ns", "stddev_ns", "avg_ts",
                    "stddev_ts", "samples_ns", "samples_ts"):
            assert key in r, key
        assert r["model_filename"] == str(model)
        assert (r["n_batch"], r["n_ubatch"], r["n_threads"], r["n_depth"]) == (2048, 512, 1, 0)
        assert len(r["samples_ns"]) == len(r["samples_ts"]) == 3
        n_tok = r["n_prompt"] + r["n_gen"]
        for ns, ts in zip(r["samples_ns"], r["samples_ts"]):
            assert ts == pytest.approx(1e9 * n_tok / ns, rel=1e-9)
        assert r["avg_ts"] == pytest.approx(sum(r["samples_ts"]) / 3, rel=1e-9)
        assert r["avg_ns"] == pytest.approx(sum(r["samples_ns"]) / 3, abs=1)


def test_size_and_params_sum_every_tensor(model):
    import gguf
    reader = gguf.GGUFReader(str(model))
    row = json.loads(qbench("-m", model, "-p", 0, "-n", 1, "-r", 1, "-t", 1, "-o", "json").stdout)[0]
    assert row["model_size"] == sum(int(t.n_bytes) for t in reader.tensors)
    assert row["model_n_params"] == sum(int(t.n_elements) for t in reader.tensors)
    assert row["model_type"] == "llama ?B Q8_0 (guessed)"  # no general.file_type: the commonest type


def test_vs_read_sets_each_decoded_token_against_a_read(model):
    # --vs-read (ours): a tg test's tokens are each followed by a read of the weight bytes one token
    # streams; "vs read" is the decode's speed against those reads. pp tests have none.
    import gguf
    header, rows = md_rows(qbench("-m", model, "-p", 8, "-n", 3, "-r", 2, "-t", 1, "--vs-read").stdout)
    assert header == MD_COLUMNS + ["vs read"]
    assert rows[0][5] == "pp8" and rows[0][7] == "-"
    assert rows[1][5] == "tg3" and re.fullmatch(r"\d+% ± \d+", rows[1][7]), rows[1]
    pp, tg = json.loads(qbench("-m", model, "-p", 8, "-n", 3, "-r", 2, "-t", 1, "--vs-read", "-o", "json").stdout)
    assert "samples_vs_read" not in pp and "token_bytes" not in pp
    assert len(tg["samples_read_ts"]) == len(tg["samples_vs_read"]) == len(tg["samples_ns"]) == 2
    assert all(x > 0 for x in tg["samples_read_ts"] + tg["samples_vs_read"])
    for ns, ts, vs in zip(tg["samples_ns"], tg["samples_read_ts"], tg["samples_vs_read"]):
        assert vs == pytest.approx(3 / ts / (ns * 1e-9), rel=1e-9)  # read seconds / decode seconds
    # Every tensor once, token_embd one row (or whole when it is the output projection too).
    tensors = {t.name: t for t in gguf.GGUFReader(str(model)).tensors}
    embd = tensors.pop("token_embd.weight")
    tied = "output.weight" not in tensors
    expect = sum(int(t.n_bytes) for t in tensors.values()) + int(embd.n_bytes) // (1 if tied else int(embd.shape[1]))
    assert tg["token_bytes"] == expect


def test_lists_ranges_and_order(model):
    # Models outermost, then threads, then depth; pp before tg before pg; 0 skips a test.
    out = qbench("-m", f"{model},{model}", "-t", "1,2", "-p", "0", "-n", "2-4+2", "-pg", "4,2", "-d", "0,3",
                 "-r", 1, "-o", "jsonl").stdout
    rows = [json.loads(l) for l in out.splitlines()]
    got = [(r["n_threads"], r["n_depth"], r["n_prompt"], r["n_gen"]) for r in rows]
    one_model = [(t, d, p, g) for t in (1, 2) for d in (0, 3) for (p, g) in ((0, 2), (0, 4), (4, 2))]
    assert got == one_model * 2


def test_test_names(model):
    _, rows = md_rows(qbench("-m", model, "-p", 0, "-n", 2, "-pg", "4,1", "-d", 3, "-r", 1, "-t", 1).stdout)
    assert [r[5] for r in rows] == ["tg2 @ d3", "pp4+tg1 @ d3"]
    _, rows = md_rows(qbench("-m", model, "-p", 0, "-n", 0, "-r", 1).stdout)
    assert rows == []


def test_non_default_batch_adds_columns(model):
    header, rows = md_rows(qbench("-m", model, "-p", 8, "-n", 0, "-b", 4, "-ub", 2, "-r", 1, "-t", 1).stdout)
    assert header == MD_COLUMNS[:5] + ["n_batch", "n_ubatch"] + MD_COLUMNS[5:]
    assert rows[0][5:7] == ["4", "2"]


@pytest.mark.parametrize("args", [
    ["-r", "0"], ["-t", "0"], ["-p", "x"], ["-n", "4-2"], ["-o", "csv"], ["-pg", "4"], ["--frobnicate"],
    ["-b"], ["--isa", "nonsense"], ["--numerics", "slow"],
])
def test_bad_flags_exit_2(model, args):
    proc = qbench("-m", model, *args, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qbench: "), proc.stderr
    assert proc.stdout == ""


def test_bad_file_exits_1(tmp_path):
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"not a gguf at all")
    proc = qbench("-m", bad, "-p", 4, "-n", 0, "-r", 1, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("qbench: ") and str(bad) in proc.stderr


def test_roofline_json():
    j = json.loads(qbench("--roofline", "--threads=1").stdout)
    assert j["threads"] == 1 and len(j["dram_read_gbs"]) == 2 and j["dram_read_gbs"][0] > 0


def test_description_size_params_match_llama_bench(model):
    if not LLAMA_BENCH.exists():
        pytest.skip(f"{LLAMA_BENCH} is not built (scripts/build-llamacpp-tools.sh)")
    args = ["-m", str(model), "-p", "0", "-n", "1", "-r", "1", "-t", "1", "-o", "json"]
    theirs = json.loads(subprocess.run([str(LLAMA_BENCH), *args], capture_output=True, text=True, check=True,
                                       timeout=TIMEOUT_S).stdout)[0]
    ours = json.loads(qbench(*args).stdout)[0]
    for key in ("model_type", "model_size", "model_n_params", "n_prompt", "n_gen", "n_batch", "n_ubatch",
                "n_threads", "cpu_info"):
        assert ours[key] == theirs[key], key


def test_kernel_mode_help_lists_ours_first_then_google_benchmarks():
    out = qbench("--help").stdout
    assert out.startswith("usage:")
    for flag in ["--full", "--isa=", "--threads=", "--json", "--roofline", "qbench -m FILE"]:
        assert flag in out, flag
    assert out.index("--roofline") < out.index("--benchmark_filter")


def test_no_colour_when_stdout_is_not_a_terminal():
    out = qbench("--benchmark_filter=^op/rms_norm", "--benchmark_min_time=0.01", "--benchmark_repetitions=1").stdout
    assert "op/rms_norm" in out
    assert "\x1b[" not in out


def test_one_token_gemv_is_set_against_a_read_at_the_same_moments():
    # A DRAM-bound run (one token) carries "vs read": its speed against a plain read of the same bytes run
    # between its iterations; a compute-bound one (64 tokens) has none.
    j = json.loads(qbench("--benchmark_filter=^matmul/q4_0/[a-z0-9]+/1.1B_ffn_up/(1|64)tok/1thr",
                          "--benchmark_min_time=0.01", "--benchmark_repetitions=1", "--threads=1",
                          "--json").stdout)
    rows = {r["name"].split("/")[4]: r for r in j["results"]}
    assert rows["1tok"]["bound"] == "memory" and rows["1tok"]["vs_read_pct"] > 0
    assert rows["64tok"]["bound"] == "compute" and "vs_read_pct" not in rows["64tok"]


def test_llama_bench_gpu_flags_are_accepted_with_a_note(model):
    proc = qbench("-m", model, "-p", "0", "-n", "1", "-r", "1", "-ngl", "99", "-fa", "1", "-sm", "none")
    for flag in ("-ngl", "-fa", "-sm"):
        assert proc.stderr.count(f"qbench: note: {flag} does nothing on this CPU engine; ignored") == 1, proc.stderr
    assert "tg1" in proc.stdout


def test_unknown_flag_is_named(model):
    proc = qbench("-m", model, "-xyz", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("qbench: unknown option -xyz"), proc.stderr


def test_batched_table(model):
    """--batched: llama-batched-bench's columns, one row per B, every sequence generating its -ntg tokens
    (S_TG > 0 needs the decode steps to have run); bad values exit 2 naming the flag."""
    out = qbench("--batched", "-m", model, "-npp", 8, "-ntg", 4, "-npl", "1,3", "-t", 1).stdout
    header, rows = md_rows(out)
    assert header == ["PP", "TG", "B", "N_KV", "T_PP s", "S_PP t/s", "T_TG s", "S_TG t/s", "T s", "S t/s"]
    assert [r[:4] for r in rows] == [["8", "4", "1", "12"], ["8", "4", "3", "36"]]
    for r in rows:  # the t/s columns (the times print with llama-batched-bench's 3 decimals)
        assert all(float(r[i]) > 0 for i in (5, 7, 9)), r
    bad = qbench("--batched", "-m", model, "-npl", "1,x", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("qbench: -npl:"), bad.stderr
    assert len(bad.stderr.splitlines()) == 1
    missing = qbench("--batched", "-m", model.with_name("absent.gguf"), check=False)
    assert missing.returncode == 1 and missing.stderr.startswith("qbench: "), missing.stderr
