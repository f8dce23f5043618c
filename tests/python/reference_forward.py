"""A llama forward pass in numpy, written from the maths (not from our C++), for checking qrun's logits.

Reads a GGUF with gguf.GGUFReader and dequantizes every tensor with gguf.quants.dequantize, so the
weights are exactly the values the file encodes. Arithmetic is float64, except where the engine rounds
on purpose and we round the same way (act_quant / cache_f16), so that what remains between the two is
float32 accumulation order alone:

  * act_quant: each matmul input is rounded as llama.cpp (and we) quantize activations: q8_0 for q4_0 and
    q8_0 weights, q8_K for q6_K, f32 for float weights, and q8_1 for q4_1: the same d and qs as q8_0 plus
    s = fp16(d * sum(qs)) with the unrounded d, which the q4_1 dot uses for its minimum term:
    sum_b [d_w d_a (q_w . q_a) + m_b s_b]. That s differs from fp16(d) * sum(qs) by an fp16 rounding, and
    with large minima (a q4_1 token_embd reused as the output) this alone moves logits by ~0.5% of their
    range, so it is modelled exactly: y += (s - fp16(d) sum(qs)) . m per block.
  * cache_f16: K and V rounded to fp16 as the default KV cache stores them.

    logits = forward(load_model("tiny.gguf"), [1, 2, 3])   # (3, n_vocab)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T


@dataclass
class Model:
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    n_rot: int
    n_ff: int
    eps: float
    freq_base: float
    freq_scale: float
    rope_freqs: np.ndarray | None
    tensors: dict[str, np.ndarray] = field(default_factory=dict)   # (rows, cols) float64
    types: dict[str, T] = field(default_factory=dict)
    q4_1_min: dict[str, np.ndarray] = field(default_factory=dict)  # (rows, cols / 32) block minima m


def _field(r: gguf.GGUFReader, key: str, default=None):
    f = r.get_field(key)
    if f is None:
        return default
    v = f.contents()
    return v


def load_model(path: str) -> Model:
    r = gguf.GGUFReader(path)
    dim = int(_field(r, "llama.embedding_length"))
    n_heads = int(_field(r, "llama.attention.head_count"))
    head_dim = int(_field(r, "llama.attention.key_length", dim // n_heads))
    scale = 1.0
    if _field(r, "llama.rope.scaling.type") == "linear":
        scale = 1.0 / float(_field(r, "llama.rope.scaling.factor", 1.0))
    m = Model(dim=dim, n_layers=int(_field(r, "llama.block_count")), n_heads=n_heads,
              n_kv_heads=int(_field(r, "llama.attention.head_count_kv", n_heads)), head_dim=head_dim,
              n_rot=int(_field(r, "llama.rope.dimension_count", head_dim)),
              n_ff=int(_field(r, "llama.feed_forward_length")),
              eps=float(_field(r, "llama.attention.layer_norm_rms_epsilon")),
              freq_base=float(_field(r, "llama.rope.freq_base", 10000.0)), freq_scale=scale, rope_freqs=None)
    for t in r.tensors:
        cols = int(t.shape[0])
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
        m.tensors[t.name] = values.reshape(-1, cols) if len(t.shape) > 1 else values.reshape(cols)
        m.types[t.name] = t.tensor_type
        if t.tensor_type == T.Q4_1:  # block = fp16 d, fp16 m, 16 bytes of nibbles
            blocks = np.ascontiguousarray(t.data).reshape(-1, cols // 32, 20)
            m.q4_1_min[t.name] = blocks[:, :, 2:4].copy().view(np.float16)[:, :, 0].astype(np.float64)
    if "output.weight" not in m.tensors:
        for d in (m.tensors, m.types, m.q4_1_min):
            if "token_embd.weight" in d:
                d["output.weight"] = d["token_embd.weight"]
    m.rope_freqs = m.tensors.get("rope_freqs.weight")
    return m


# ---------------------------------------------------------------- activation rounding (llama.cpp's)

def _q8_0(x: np.ndarray) -> np.ndarray:
    """Rows rounded through q8_0 blocks (gguf's reference quantizer): fp16(amax / 127) * round(x / d)."""
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    return gguf.quants.dequantize(gguf.quants.quantize(x32, T.Q8_0), T.Q8_0).reshape(x.shape).astype(np.float64)


def _q8_K(x: np.ndarray) -> np.ndarray:
    """ggml's quantize_row_q8_K_ref: per 256, iscale = -127 / (signed value of largest magnitude),
    q = min(127, nearest_int(iscale * x)), d = 1 / iscale kept in f32."""
    b = np.asarray(x, dtype=np.float32).reshape(-1, 256)
    idx = np.argmax(np.abs(b), axis=1)
    mx = b[np.arange(b.shape[0]), idx]
    out = np.zeros_like(b)
    nz = mx != 0
    iscale = (np.float32(-127.0) / mx[nz]).astype(np.float32)
    q = np.minimum(np.float32(127), np.rint(b[nz] * iscale[:, None]))
    out[nz] = (np.float32(1.0) / iscale)[:, None] * q
    return out.reshape(x.shape).astype(np.float64)


def _q8_1_sum_correction(x: np.ndarray, mins: np.ndarray) -> np.ndarray:
    """What q8_1's s adds beyond fp16(d) * sum(qs) in a q4_1 dot: sum over blocks of (s_b - fp16(d_b) sum_b) m_b."""
    x32 = np.ascontiguousarray(x, dtype=np.float32).reshape(x.shape[0], -1, 32)
    blocks = gguf.quants.quantize(x32.reshape(x.shape[0], -1), T.Q8_0).reshape(x.shape[0], -1, 34)
    d16 = blocks[:, :, :2].copy().view(np.float16)[:, :, 0].astype(np.float64)
    qsum = blocks[:, :, 2:].view(np.int8).astype(np.int64).sum(axis=2)
    d32 = (np.abs(x32).max(axis=2) / np.float32(127)).astype(np.float32)      # ggml: amax / 127 in f32
    s = (qsum.astype(np.float32) * d32).astype(np.float16).astype(np.float64)
    return (s - d16 * qsum) @ mins.T


def _bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 (round to nearest even, as ggml's fp32_to_bf16 for finite values) -> float64."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32).astype(np.float64)


def round_activations(x: np.ndarray, weight_type: T, bf16_act: bool = False) -> np.ndarray:
    if weight_type in (T.Q4_0, T.Q8_0, T.Q4_1):
        return _q8_0(x)
    if weight_type == T.Q6_K:
        return _q8_K(x)
    if weight_type == T.BF16 and bf16_act:  # vdpbf16ps (AVX512_BF16) reads bf16 activations
        return _bf16(x)
    return x.astype(np.float32).astype(np.float64)  # f32 / f16 / bf16 kernels read f32 activations


# ---------------------------------------------------------------- the forward pass

def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x: np.ndarray, positions: np.ndarray, m: Model) -> np.ndarray:
    """llama.cpp's "norm" RoPE: adjacent pairs (2i, 2i+1) of each head rotate by
    theta_i = pos * freq_scale * base^(-2i / n_rot) / factor_i. x: (n, heads, head_dim)."""
    half = m.n_rot // 2
    inv = m.freq_base ** (-2.0 * np.arange(half) / m.n_rot)
    if m.rope_freqs is not None:
        inv = inv / m.rope_freqs
    theta = positions[:, None] * m.freq_scale * inv[None, :]           # (n, half)
    cos, sin = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    out = x.copy()
    x0, x1 = x[..., 0:2 * half:2], x[..., 1:2 * half:2]
    out[..., 0:2 * half:2] = x0 * cos - x1 * sin
    out[..., 1:2 * half:2] = x0 * sin + x1 * cos
    return out


def forward(m: Model, tokens: list[int], act_quant: bool = True, cache_f16: bool = False,
            bf16_act: bool = False) -> np.ndarray:
    """Logits (n_tokens, n_vocab) of the tokens at positions 0..n-1, causal attention. bf16_act: bf16
    weights' inputs rounded to bf16 (round to nearest even), as the engine's vdpbf16ps path does."""
    n = len(tokens)
    pos = np.arange(n, dtype=np.float64)
    W, Ty = m.tensors, m.types

    def linear(x: np.ndarray, name: str) -> np.ndarray:  # y = x W^T, W (out, in)
        if not act_quant:
            return x @ W[name].T
        y = round_activations(x, Ty[name], bf16_act) @ W[name].T
        if Ty[name] == T.Q4_1:
            y += _q8_1_sum_correction(x, m.q4_1_min[name])
        return y

    x = W["token_embd.weight"][tokens]                                  # (n, dim)
    mask = np.triu(np.full((n, n), -np.inf), k=1)                       # causal
    group = m.n_heads // m.n_kv_heads
    for layer in range(m.n_layers):
        p = f"blk.{layer}."
        xb = rms_norm(x, W[p + "attn_norm.weight"], m.eps)
        q = linear(xb, p + "attn_q.weight").reshape(n, m.n_heads, m.head_dim)
        k = linear(xb, p + "attn_k.weight").reshape(n, m.n_kv_heads, m.head_dim)
        v = linear(xb, p + "attn_v.weight").reshape(n, m.n_kv_heads, m.head_dim)
        q, k = rope(q, pos, m), rope(k, pos, m)
        if cache_f16:
            k = k.astype(np.float32).astype(np.float16).astype(np.float64)  # f32 first, as the engine
            v = v.astype(np.float32).astype(np.float16).astype(np.float64)
        att = np.empty((n, m.n_heads, m.head_dim))
        for h in range(m.n_heads):
            g = h // group                                               # GQA: query head h reads KV head g
            s = q[:, h, :] @ k[:, g, :].T / np.sqrt(m.head_dim) + mask   # (n, n)
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
            att[:, h, :] = s @ v[:, g, :]
        x = x + linear(att.reshape(n, -1), p + "attn_output.weight")
        xb = rms_norm(x, W[p + "ffn_norm.weight"], m.eps)
        gate = linear(xb, p + "ffn_gate.weight")
        up = linear(xb, p + "ffn_up.weight")
        x = x + linear(gate / (1.0 + np.exp(-gate)) * up, p + "ffn_down.weight")   # SwiGLU
    return linear(rms_norm(x, W["output_norm.weight"], m.eps), "output.weight")
