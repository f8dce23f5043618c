"""qrun against hostile and wrong input: every corrupt-file class of the GGUF reader's unit tests (built
here in Python, from a valid tiny llama GGUF broken in exactly one place), files that are not GGUFs at
all, GGUFs of another architecture, llama GGUFs whose hyperparameters and tensors disagree, and a prompt
longer than the context.

The contract for each: a non-zero exit (not a signal), within a timeout, and stderr is exactly one line
that starts with "qrun: " and names the offending file.
"""

from __future__ import annotations

import os
import pathlib
import struct
import subprocess

import pytest

import hostile_gguf as h
import make_tiny_model as tiny

REPO = pathlib.Path(os.environ.get("QE_SOURCE", pathlib.Path(__file__).resolve().parents[2]))
BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))
TIMEOUT_S = 60

# ggml type ids
F32, Q4_0, Q4_K = 0, 2, 12
# Byte offsets in a GGUF v3 header: magic, version, tensor count, metadata count.
OFF_VERSION, OFF_N_TENSORS, OFF_N_KV = 4, 8, 16


def qrun() -> pathlib.Path:
    path = BIN / "qrun"
    if not path.exists():
        pytest.skip(f"{path} is not built (set QE_BIN)")
    return path


@pytest.fixture(scope="module")
def good() -> h.Gguf:
    """The valid tiny llama model (f32 weights, GQA 4/2 heads, dim 64) as an editable Gguf."""
    d = pathlib.Path(os.environ.get("TMPDIR", "/tmp"))
    import tempfile
    with tempfile.TemporaryDirectory(dir=d) as tmp:
        path = os.path.join(tmp, "tiny.gguf")
        tiny.write_model(path, tiny.TinySpec())
        return h.from_file(path)


def first_matrix(g: h.Gguf) -> int:
    return next(i for i, t in enumerate(g.tensors) if len(t.dims) == 2)


# ---------------------------------------------------------------------------------------------
# Each case: name -> function(good Gguf) -> file bytes. All are GGUF-reader failures first, then
# model-level ones. Names are pytest ids.

def _patch(b: bytes, off: int, fmt: str, value) -> bytes:
    return b[:off] + struct.pack(fmt, value) + b[off + struct.calcsize(fmt):]


def case_bad_magic(g):
    return b"XGUF" + g.to_bytes()[4:]


def case_big_endian_version(g):
    return _patch(g.to_bytes(), OFF_VERSION, ">I", 3)


def case_version_1(g):
    return g.to_bytes(version=1)


def case_version_4(g):
    return g.to_bytes(version=4)


def case_truncated_header(g):
    return g.to_bytes()[:10]


def case_kv_count_larger_than_file(g):
    return g.to_bytes(n_kv=1 << 60)


def case_kv_count_one_too_many(g):
    return g.to_bytes(n_kv=len(g.kvs) + 1)


def case_tensor_count_larger_than_file(g):
    return g.to_bytes(n_tensors=(1 << 64) - 1)


def case_duplicate_key(g):
    return g.to_bytes(raw_kvs=[h.enc_kv("llama.block_count", h.U32, 2)])


def case_empty_key(g):
    return g.to_bytes(raw_kvs=[h.enc_kv("", h.U32, 1)])


def case_duplicate_tensor_name(g):
    g = g.copy()
    g.tensors[1].name = g.tensors[0].name
    return g.to_bytes()


def case_empty_tensor_name(g):
    g = g.copy()
    g.tensors[1].name = ""
    return g.to_bytes()


def case_tensor_type_out_of_range(g):
    g = g.copy()
    g.tensors[first_matrix(g)].ttype = 42
    return g.to_bytes()


def case_tensor_type_u32_max(g):
    g = g.copy()
    g.tensors[first_matrix(g)].ttype = 0xFFFFFFFF
    return g.to_bytes()


def case_tensor_type_removed(g):
    g = g.copy()
    g.tensors[first_matrix(g)].ttype = 4  # Q4_2, removed from ggml
    return g.to_bytes()


def case_misaligned_offset(g):
    i = first_matrix(g)
    return g.to_bytes(offsets={i: g.data_layout()[i] + 8})


def case_overlapping_tensors(g):
    i = first_matrix(g)
    lay = g.data_layout()
    return g.to_bytes(offsets={i + 1: lay[i] + 32})


def case_shared_offset(g):
    lay = g.data_layout()
    return g.to_bytes(offsets={1: lay[0]})


def case_offset_near_2_64(g):
    return g.to_bytes(offsets={0: (1 << 64) - 32})


def case_n_dims_0(g):
    return g.to_bytes(n_dims={first_matrix(g): 0})


def case_n_dims_5(g):
    g = g.copy()
    t = g.tensors[first_matrix(g)]
    t.dims = t.dims + [1, 1, 1]
    return g.to_bytes()


def case_n_dims_huge(g):
    return g.to_bytes(n_dims={first_matrix(g): 0xFFFFFFF0})


def case_dim_zero(g):
    g = g.copy()
    g.tensors[first_matrix(g)].dims[1] = 0
    return g.to_bytes()


def case_element_count_overflow(g):
    g = g.copy()
    g.tensors[first_matrix(g)].dims = [1 << 32, 1 << 32]
    return g.to_bytes()


def case_byte_count_overflow(g):
    g = g.copy()
    g.tensors[first_matrix(g)].dims = [1 << 31, 1 << 31]
    return g.to_bytes()


def case_string_length_past_end(g):
    return g.to_bytes(raw_kvs=[h.enc_str("general.description") + struct.pack("<I", h.STR)
                               + h.enc_str(b"short", length=1 << 20)])


def case_string_length_huge(g):
    return g.to_bytes(raw_kvs=[h.enc_str("general.description") + struct.pack("<I", h.STR)
                               + h.enc_str(b"x", length=1 << 62)])


def case_key_length_huge(g):
    return g.to_bytes(raw_kvs=[struct.pack("<Q", (1 << 64) - 4) + bytes(32)])


def case_array_count_huge(g):
    return g.to_bytes(raw_kvs=[h.enc_str("x.arr") + struct.pack("<IIQ", h.ARR, h.U32, 1 << 61)])


def case_nested_arrays_too_deep(g):
    return g.to_bytes(raw_kvs=[h.enc_kv("x.deep", h.ARR, h.nested_array(9))])  # reader limit: 8


def case_nested_arrays_very_deep(g):
    return g.to_bytes(raw_kvs=[h.enc_kv("x.deep", h.ARR, h.nested_array(100000))])


def case_unknown_value_type(g):
    return g.to_bytes(raw_kvs=[h.enc_str("x.y") + struct.pack("<II", 13, 0)])


def case_unknown_array_element_type(g):
    return g.to_bytes(raw_kvs=[h.enc_str("x.y") + struct.pack("<IIQ", h.ARR, 0xFFFFFFFF, 0)])


def case_bool_not_0_or_1(g):
    return g.to_bytes(raw_kvs=[h.enc_str("x.flag") + struct.pack("<IB", h.BOOL, 2)])


def case_alignment_not_power_of_two(g):
    g = g.copy().set("general.alignment", h.U32, 48)
    return g.to_bytes()


def case_alignment_zero(g):
    return g.copy().set("general.alignment", h.U32, 0).to_bytes()


def case_alignment_wrong_type(g):
    return g.copy().set("general.alignment", h.U64, 32).to_bytes()


def case_tensor_data_past_end(g):
    return g.to_bytes()[:-100]


def case_tensor_offset_past_end(g):
    n = len(g.to_bytes()) - g.header_end()
    return g.to_bytes(offsets={len(g.tensors) - 1: h._align(n, 32) + 4096})


def case_row_not_multiple_of_block(g):
    g = g.copy()
    g.tensors[first_matrix(g)].ttype = Q4_K  # rows of 64 < the q4_K block of 256
    return g.to_bytes()


def case_truncated_in_metadata(g):
    b = g.to_bytes()
    return b[:len(b) // 2 if g.header_end() > len(b) // 2 else g.header_end() // 2]


def case_truncated_in_tensor_infos(g):
    return g.to_bytes()[:g.header_end() - 20]


READER_CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


# ---- Model-level: a well-formed GGUF that is not a model qrun can run.

def rename_arch(g: h.Gguf, arch: str) -> h.Gguf:
    g = g.copy()
    g.kvs = [(k.replace("llama.", arch + ".", 1) if isinstance(k, str) and k.startswith("llama.") else k, t, v)
             for k, t, v in g.kvs]
    return g.set("general.architecture", h.STR, arch)


def model_arch_gpt2(g):
    return rename_arch(g, "gpt2").to_bytes()


def model_arch_qwen2(g):
    return rename_arch(g, "qwen2").to_bytes()


def model_arch_missing(g):
    return g.copy().drop("general.architecture").to_bytes()


def model_arch_not_a_string(g):
    return g.copy().set("general.architecture", h.U32, 7).to_bytes()


def model_heads_do_not_divide_dim(g):
    return g.copy().set("llama.attention.head_count", h.U32, 6).to_bytes()  # dim 64, 2 kv heads


def model_heads_not_multiple_of_kv_heads(g):
    return g.copy().set("llama.attention.head_count", h.U32, 5).to_bytes()  # 2 kv heads


def model_kv_heads_do_not_divide_heads(g):
    return g.copy().set("llama.attention.head_count_kv", h.U32, 3).to_bytes()  # 4 heads


def model_kv_heads_zero(g):
    return g.copy().set("llama.attention.head_count_kv", h.U32, 0).to_bytes()


def model_heads_zero(g):
    return g.copy().set("llama.attention.head_count", h.U32, 0).to_bytes()


def model_dim_zero(g):
    return g.copy().set("llama.embedding_length", h.U32, 0).to_bytes()


def model_block_count_huge(g):
    return g.copy().set("llama.block_count", h.U32, 0xFFFFFFFF).to_bytes()


def model_block_count_one_more(g):
    return g.copy().set("llama.block_count", h.U32, 3).to_bytes()  # blk.2.* missing


def model_missing_key(g):
    return g.copy().drop("llama.feed_forward_length").to_bytes()


def model_key_wrong_type(g):
    return g.copy().set("llama.block_count", h.STR, "two").to_bytes()


def model_missing_tensor(g):
    return g.copy().drop_tensor("blk.1.ffn_up.weight").to_bytes()


def model_missing_embedding(g):
    return g.copy().drop_tensor("token_embd.weight").to_bytes()


def model_wrong_tensor_shape(g):
    g = g.copy()
    t = g.tensor("blk.0.attn_q.weight")
    t.dims = [t.dims[0], t.dims[1] // 2]  # half the rows: still a valid tensor, wrong for the model
    t.data = t.data[:len(t.data) // 2]
    return g.to_bytes()


def model_transposed_ffn(g):
    g = g.copy()
    t = g.tensor("blk.0.ffn_up.weight")
    t.dims = t.dims[::-1]
    return g.to_bytes()


def model_vocab_size_mismatch(g):
    return g.copy().set("llama.vocab_size", h.U32, 300).to_bytes()


def model_token_list_short(g):
    g = g.copy()
    et, items = g.get("tokenizer.ggml.tokens")
    return g.set("tokenizer.ggml.tokens", h.ARR, (et, items[:200])).to_bytes()


def model_tokenizer_missing(g):
    return g.copy().drop("tokenizer.ggml.tokens").to_bytes()


def model_tokenizer_unknown(g):
    return g.copy().set("tokenizer.ggml.model", h.STR, "nonsense").to_bytes()


def model_rms_eps_zero(g):
    return g.copy().set("llama.attention.layer_norm_rms_epsilon", h.F32, 0.0).to_bytes()


def model_rope_dim_odd(g):
    return g.copy().set("llama.rope.dimension_count", h.U32, 15).to_bytes()


def model_norm_is_quantized(g):
    g = g.copy()
    t = g.tensor("blk.0.attn_norm.weight")
    t.ttype, t.dims = Q4_0, [64]
    t.data = t.data[:36]
    return g.to_bytes()


def model_no_tensors(g):
    g = g.copy()
    g.tensors = []
    return g.to_bytes()


MODEL_CASES = {name[6:]: fn for name, fn in globals().items() if name.startswith("model_")}


# ---------------------------------------------------------------------------------------------

def check_one_error_line(proc: subprocess.CompletedProcess, must_name: str, what: str) -> str:
    err = proc.stderr.decode("utf-8", errors="replace")
    detail = f"{what}: exit {proc.returncode}\nstderr:\n{err}\nstdout:\n{proc.stdout[:500]!r}"
    assert proc.returncode > 0, "not a clean non-zero exit (negative = killed by a signal): " + detail
    lines = err.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr: {detail}"
    assert lines[0].startswith("qrun: "), detail
    assert must_name in lines[0], f"the message does not name {must_name}: {detail}"
    return lines[0]


def run_qrun(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(qrun()), *args], capture_output=True, timeout=TIMEOUT_S)


@pytest.mark.parametrize("case", sorted(READER_CASES))
def test_corrupt_gguf(case, good, tmp_path):
    path = tmp_path / f"{case}.gguf"
    path.write_bytes(READER_CASES[case](good))
    proc = run_qrun("-m", str(path), "-p", "hello", "-n", "4", "--temp", "0", "-t", "1")
    check_one_error_line(proc, str(path), case)


def test_truncated_everywhere(good, tmp_path):
    """Every cut of the header, metadata and tensor infos (every 7th byte) and a few in the data."""
    b = good.to_bytes()
    cuts = list(range(0, good.header_end(), 7)) + [good.header_end() + 1, len(b) // 2, len(b) - 1]
    failures = []
    path = tmp_path / "cut.gguf"
    for n in cuts:
        path.write_bytes(b[:n])
        proc = run_qrun("-m", str(path), "-p", "hello", "-n", "1", "-t", "1")
        try:
            check_one_error_line(proc, str(path), f"cut at {n} of {len(b)} bytes")
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, f"{len(failures)} of {len(cuts)} cuts failed; first: {failures[0]}"


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_wrong_model(case, good, tmp_path):
    path = tmp_path / f"{case}.gguf"
    path.write_bytes(MODEL_CASES[case](good))
    proc = run_qrun("-m", str(path), "-p", "hello", "-n", "4", "--temp", "0", "-t", "1")
    check_one_error_line(proc, str(path), case)


def test_good_tiny_model_runs(good, tmp_path):
    """The base every case above breaks is itself a model qrun runs (so each case fails for its one
    defect, not for something the tiny model lacks)."""
    path = tmp_path / "good.gguf"
    path.write_bytes(good.to_bytes())
    proc = run_qrun("-m", str(path), "-p", "hello", "-n", "4", "--temp", "0", "-t", "1")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


def test_missing_file(tmp_path):
    path = tmp_path / "does-not-exist.gguf"
    check_one_error_line(run_qrun("-m", str(path), "-p", "hi"), str(path), "missing file")


def test_directory(tmp_path):
    check_one_error_line(run_qrun("-m", str(tmp_path), "-p", "hi"), str(tmp_path), "directory")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    check_one_error_line(run_qrun("-m", str(path), "-p", "hi"), str(path), "zero-byte file")


def test_not_a_gguf(tmp_path):
    path = tmp_path / "text.gguf"
    path.write_text("this is a text file, not a model\n" * 10)
    check_one_error_line(run_qrun("-m", str(path), "-p", "hi"), str(path), "text file")


def test_unreadable_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "locked.gguf"
    path.write_bytes(b"GGUF")
    path.chmod(0)
    check_one_error_line(run_qrun("-m", str(path), "-p", "hi"), str(path), "unreadable file")


def test_missing_prompt_file(good, tmp_path):
    model = tmp_path / "good.gguf"
    model.write_bytes(good.to_bytes())
    prompt = tmp_path / "no-such-prompt.txt"
    check_one_error_line(run_qrun("-m", str(model), "-f", str(prompt), "-n", "1"), str(prompt),
                         "missing prompt file")


def test_prompt_longer_than_context(good, tmp_path):
    """-c 16 and a 100-token prompt (the tiny vocabulary is one token per byte)."""
    model = tmp_path / "good.gguf"
    model.write_bytes(good.to_bytes())
    proc = run_qrun("-m", str(model), "-p", "x" * 100, "-c", "16", "-n", "4", "-t", "1")
    line = check_one_error_line(proc, str(model), "prompt longer than -c 16")
    assert "context" in line


def test_prompt_longer_than_context_from_file(good, tmp_path):
    model = tmp_path / "good.gguf"
    model.write_bytes(good.to_bytes())
    prompt = tmp_path / "long-prompt.txt"
    prompt.write_text("y" * 100)
    proc = run_qrun("-m", str(model), "-f", str(prompt), "-c", "16", "-n", "4", "-t", "1")
    line = check_one_error_line(proc, str(prompt), "prompt file longer than -c 16")
    assert "context" in line


def test_llamacpp_numerics_uncovered_type(good, tmp_path):
    """--numerics llama.cpp on f32 matrices (a path it does not reproduce) names the first such tensor
    and the way out, before any work."""
    model = tmp_path / "good.gguf"
    model.write_bytes(good.to_bytes())
    proc = run_qrun("-m", str(model), "-p", "hi", "-n", "1", "-t", "1", "--numerics", "llama.cpp")
    line = check_one_error_line(proc, str(model), "f32 matrices under --numerics llama.cpp")
    assert "blk.0.attn_q.weight" in line and "--numerics fast" in line


def test_llamacpp_numerics_needs_f16_cache(good, tmp_path):
    model = tmp_path / "good.gguf"
    model.write_bytes(good.to_bytes())
    proc = run_qrun("-m", str(model), "-p", "hi", "-n", "1", "-t", "1", "--numerics", "llama.cpp",
                    "--cache-type", "f32")
    assert "--cache-type" in check_one_error_line(proc, str(model), "f32 cache under --numerics llama.cpp")


@pytest.mark.parametrize("value", [0x7E00, 0x7C00], ids=["nan", "inf"])
def test_kquant_scale_not_finite(value, tmp_path):
    """A q6_K output matrix whose super-block scale d decodes to NaN / Inf: the reader cannot decode every
    block, so the logits carry it; qrun stops with one line naming the position (no sort over NaN, no
    crash), in generation and in perplexity."""
    path = tmp_path / "q6k.gguf"
    tiny.write_model(str(path), tiny.TinySpec(q6k_output=True, tied=False, dim=256, n_ff=256))
    g = h.from_file(str(path))
    t = g.tensor("output.weight")
    data = bytearray(t.data)
    struct.pack_into("<H", data, 3 * 210 + 208, value)  # d of row 3 (one super-block per row of 256)
    t.data = bytes(data)
    path.write_bytes(g.to_bytes())
    for args in (["-p", "hello", "-n", "4", "--temp", "0"], ["--perplexity", "-f", str(path), "-c", "16"]):
        if args[0] == "--perplexity":
            text = tmp_path / "t.txt"
            text.write_text("hello world " * 20)
            args[2] = str(text)
        proc = run_qrun("-m", str(path), "-t", "1", *args)
        err = proc.stderr.decode("utf-8", errors="replace")
        assert proc.returncode == 1, f"{args}: exit {proc.returncode}\n{err}"
        last = err.strip().splitlines()[-1]
        assert last.startswith("qrun: ") and "non-finite" in last and "position" in last, err
