"""qconvert HF directory -> GGUF on a synthetic tiny Llama: every tensor we write must equal what
llama.cpp's convert_hf_to_gguf.py + gguf.quants produce from the same source (q/k rows permuted in
numpy as that script does), the metadata must be llama.cpp's, and the type policy llama-quantize's."""

import json
import math
import os
import pathlib
import subprocess

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf import quants

from conftest import REPO
from make_tiny_hf_model import make_tiny_hf_model

BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))


def qconvert(*args, ok=True):
    exe = BIN / "qconvert"
    if not exe.exists():
        pytest.skip(f"{exe} is not built (set QE_BIN)")
    p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=120)
    if ok and p.returncode != 0:
        pytest.fail(f"qconvert {' '.join(map(str, args))} exited {p.returncode}: {p.stderr}")
    return p


def permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


HF_NAMES = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
            "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
            "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    _, _, i, rest = hf.split(".", 3)
    return f"blk.{i}.{HF_NAMES[rest[:-len('.weight')]]}.weight"


def expected_tensors(values, cfg):
    out = {}
    for hf, v in values.items():
        if hf.endswith("q_proj.weight"):
            v = permute(v, cfg["num_attention_heads"], cfg["num_attention_heads"])
        elif hf.endswith("k_proj.weight"):
            v = permute(v, cfg["num_attention_heads"], cfg["num_key_value_heads"])
        out[gguf_name(hf)] = np.ascontiguousarray(v)
    return out


def expected_type(name, shape, target, tied, pure=False):
    """llama-quantize's choice (llama_tensor_get_type): q6_K for the output projection, q8_0 when its rows
    are not a multiple of 256; f16 for rows that are not a multiple of 32."""
    if len(shape) == 1:
        return T.F32
    t = target
    is_out = name == "output.weight" or (tied and name == "token_embd.weight")
    if not pure and is_out and target in (T.Q4_0, T.Q4_1):
        t = T.Q6_K if shape[-1] % 256 == 0 else T.Q8_0
    if shape[-1] % 32 != 0 and t in (T.Q4_0, T.Q4_1, T.Q8_0):
        t = T.F16
    return t


def tensor_bytes(t):
    return np.asarray(t.data).tobytes()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf") / "tiny"
    values = make_tiny_hf_model(d, dtype="bf16", shards=2)
    return d, values, json.loads((d / "config.json").read_text())


@pytest.mark.parametrize("type_name", ["q4_0", "q4_1", "q8_0", "f16", "bf16", "f32"])
def test_tensors_equal_gguf_quants(tiny, tmp_path, type_name):
    d, values, cfg = tiny
    out = tmp_path / f"tiny-{type_name}.gguf"
    qconvert(d, "-o", out, "--type", type_name, "-t", 2)
    target = T[type_name.upper()]
    want = expected_tensors(values, cfg)
    r = GGUFReader(out)
    assert sorted(t.name for t in r.tensors) == sorted(want)
    for t in r.tensors:
        src = want[t.name]
        qt = expected_type(t.name, src.shape, target, tied=False)
        assert t.tensor_type == qt, f"{t.name}: {t.tensor_type.name}, expected {qt.name}"
        assert list(t.shape) == list(reversed(src.shape)), t.name
        ref = quants.quantize(src, qt) if qt not in (T.F32, T.F16) else src.astype(np.float32 if qt == T.F32 else np.float16)
        assert tensor_bytes(t) == ref.tobytes(), f"{t.name} ({qt.name}) differs from gguf.quants"


def test_metadata_is_llama_cpps(tiny, tmp_path):
    d, _, cfg = tiny
    out = tmp_path / "m.gguf"
    qconvert(d, "-o", out, "--type", "q4_1")
    r = GGUFReader(out)
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("GGUF.")}
    hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    assert f["general.architecture"] == "llama"
    assert f["general.name"] == "tiny"
    assert f["general.license"] == "apache-2.0"
    assert f["general.file_type"] == 3  # LLAMA_FTYPE_MOSTLY_Q4_1
    assert f["general.quantization_version"] == 2
    assert f["llama.block_count"] == cfg["num_hidden_layers"]
    assert f["llama.embedding_length"] == cfg["hidden_size"]
    assert f["llama.feed_forward_length"] == cfg["intermediate_size"]
    assert f["llama.attention.head_count"] == cfg["num_attention_heads"]
    assert f["llama.attention.head_count_kv"] == cfg["num_key_value_heads"]
    assert f["llama.context_length"] == cfg["max_position_embeddings"]
    assert f["llama.rope.dimension_count"] == hd
    assert f["llama.vocab_size"] == cfg["vocab_size"]
    assert math.isclose(f["llama.rope.freq_base"], cfg["rope_theta"])
    assert math.isclose(f["llama.attention.layer_norm_rms_epsilon"], cfg["rms_norm_eps"], rel_tol=1e-6)
    assert f["tokenizer.ggml.model"] == "gpt2"
    assert len(f["tokenizer.ggml.tokens"]) == cfg["vocab_size"]
    types = {k: r.fields[k].types[0] for k in ("llama.block_count", "general.file_type", "llama.rope.freq_base")}
    assert [t.name for t in types.values()] == ["UINT32", "UINT32", "FLOAT32"]


def test_tied_embeddings_pure_and_overrides(tmp_path):
    d = tmp_path / "tied"
    values = make_tiny_hf_model(d, dtype="f32", tied=True, ff=96, seed=3)
    cfg = json.loads((d / "config.json").read_text())
    want = expected_tensors(values, cfg)
    out = tmp_path / "t.gguf"
    qconvert(d, "-o", out, "--type", "q4_0")
    types = {t.name: t.tensor_type for t in GGUFReader(out).tensors}
    assert "output.weight" not in types
    assert types["token_embd.weight"] == T.Q8_0  # tied: the embeddings are the output projection
    assert types["blk.0.ffn_down.weight"] == T.Q4_0
    out = tmp_path / "p.gguf"
    qconvert(d, "-o", out, "--type", "q4_0", "--pure")
    assert {t.name: t.tensor_type for t in GGUFReader(out).tensors}["token_embd.weight"] == T.Q4_0
    out = tmp_path / "o.gguf"
    # The last match wins, as in llama-quantize.
    qconvert(d, "-o", out, "--type", "q4_0", "--tensor-type", "attn=q4_1", "--tensor-type", r"attn_(q|k)=q8_0",
             "--tensor-type", "ffn_down=bf16")
    r = GGUFReader(out)
    types = {t.name: t.tensor_type for t in r.tensors}
    assert types["blk.1.attn_q.weight"] == T.Q8_0 and types["blk.1.attn_k.weight"] == T.Q8_0
    assert types["blk.1.attn_v.weight"] == T.Q4_1 and types["blk.0.attn_output.weight"] == T.Q4_1
    assert types["blk.0.ffn_down.weight"] == T.BF16 and types["blk.0.attn_norm.weight"] == T.F32
    for t in r.tensors:
        if t.tensor_type in (T.Q8_0, T.Q4_1, T.BF16):
            assert tensor_bytes(t) == quants.quantize(want[t.name], t.tensor_type).tobytes(), t.name


def test_llama3_rope_freqs(tmp_path):
    d = tmp_path / "l3"
    rs = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8192}
    make_tiny_hf_model(d, dtype="f16", rope_scaling=rs, hidden=128, heads=2, kv_heads=1, ff=96)
    out = tmp_path / "l3.gguf"
    qconvert(d, "-o", out, "--type", "q8_0")
    t = {t.name: t for t in GGUFReader(out).tensors}["rope_freqs.weight"]
    assert t.tensor_type == T.F32
    # convert_hf_to_gguf.py LlamaModel.generate_extra_tensors, in float32 as torch computes it.
    dim, base = 64, np.float32(10000.0)
    freqs = np.float32(1.0) / base ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim))
    factors = []
    for freq in freqs:
        wavelen = np.float32(2 * math.pi) / freq
        if wavelen < 8192 / 4.0:
            factors.append(1.0)
        elif wavelen > 8192 / 1.0:
            factors.append(8.0)
        else:
            smooth = (np.float32(8192) / wavelen - 1.0) / (4.0 - 1.0)
            factors.append(1 / ((1 - smooth) / 8.0 + smooth))
    np.testing.assert_allclose(np.asarray(t.data), np.asarray(factors, dtype=np.float32), rtol=1e-6)
    # ...and the export gives the scaling back.
    hf = tmp_path / "l3-hf"
    qconvert(out, "--to-hf", hf, "--type", "f32")
    cfg = json.loads((hf / "config.json").read_text())
    assert cfg["rope_scaling"]["rope_type"] == "llama3" and cfg["rope_scaling"]["factor"] == 8.0


def test_report_and_card(tiny, tmp_path):
    d, _, _ = tiny
    out, rep = tmp_path / "r.gguf", tmp_path / "r.json"
    p = qconvert(d, "-o", out, "--type", "q4_0", "--report", rep, "--card")
    assert "x smaller" in p.stderr and "bits/weight" in p.stderr
    assert "row length 80 is not a multiple of q4_0's block of 32: f16" in p.stderr
    assert "q6_K" in p.stderr
    j = json.loads(rep.read_text())
    by = {t["name"]: t for t in j["tensors"]}
    down = by["blk.0.ffn_down.weight"]
    assert down["type"] == "f16" and down["fallback"] and "row length 80" in down["reason"]
    q = by["blk.0.attn_q.weight"]
    assert q["type"] == "q4_0" and q["source_type"] == "bf16" and q["shape"] == [64, 64]
    assert 0 < q["rmse"] <= q["max_abs_error"] < 0.05
    assert by["blk.0.attn_norm.weight"]["rmse"] == 0
    assert j["n_weights"] == sum(math.prod(t["shape"]) for t in j["tensors"])
    card = (tmp_path / "r.md").read_text()
    assert "apache-2.0" in card and "q4_0" in card and "blk.0.attn_q.weight" in card
