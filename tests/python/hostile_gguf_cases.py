"""The hostile GGUF files of the qrun and qconvert suites: every corrupt-file class of the GGUF reader's
unit tests (READER_CASES) and well-formed GGUFs that are not a llama model qrun can run (MODEL_CASES),
each built from the valid tiny llama model (`tiny_llama()`) broken in exactly one place. A case is a
function from the good model (an editable hostile_gguf.Gguf) to the file's bytes; its name is a pytest id.
"""

from __future__ import annotations

import os
import struct
import tempfile

import hostile_gguf as h
import make_tiny_model as tiny


def tiny_llama() -> h.Gguf:
    """The valid tiny llama model (f32 weights, GQA 4/2 heads, dim 64) as an editable Gguf."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as tmp:
        path = os.path.join(tmp, "tiny.gguf")
        tiny.write_model(path, tiny.TinySpec())
        return h.from_file(path)


# ggml type ids
F32, Q4_0, Q4_K = 0, 2, 12
# Byte offsets in a GGUF v3 header: magic, version, tensor count, metadata count.
OFF_VERSION, OFF_N_TENSORS, OFF_N_KV = 4, 8, 16


def first_matrix(g: h.Gguf) -> int:
    return next(i for i, t in enumerate(g.tensors) if len(t.dims) == 2)


# ---------------------------------------------------------------------------------------------
# Each case: name -> function(good Gguf) -> file bytes. GGUF-reader failures first, then model-level ones.

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
