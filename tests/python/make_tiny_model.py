"""Small synthetic llama GGUFs for the forward-pass tests, written with gguf.GGUFWriter.

Random weights from a fixed seed (the same seed gives the same bytes), a 256-token GPT-2 byte-level
vocabulary with no merges (so qrun's tokenizer loads a complete file), and every matrix in one weight
type. Options cover GQA, tied/untied embeddings, a q6_K output matrix (gguf-py cannot quantize q6_K,
so it gets random blocks with small fp16 scales: every byte pattern is a valid q6_K block) and RoPE
scaling (linear factor and llama3 rope_freqs factors).

    python make_tiny_model.py out.gguf --type q4_0 [--kv-heads 2] [--untied] [--q6k-output]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T

TYPES = {"f32": T.F32, "f16": T.F16, "bf16": T.BF16, "q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_1": T.Q4_1}


@dataclass
class TinySpec:
    wtype: str = "f32"
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    n_ff: int = 96
    n_vocab: int = 256
    n_ctx: int = 128
    tied: bool = True
    q6k_output: bool = False  # needs dim % 256 == 0
    rope_scale: float = 0.0   # > 0: llama.rope.scaling.type = linear with this factor
    rope_freqs: bool = False  # llama3-style rope_freqs.weight
    seed: int = 0
    omit: tuple[str, ...] = ()  # layer tensors left out (a broken model for the error tests)


def gpt2_byte_tokens() -> list[str]:
    """GPT-2's bytes_to_unicode alphabet in byte order: token i is byte i."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cps, extra = {}, 0
    for b in range(256):
        if b in printable:
            cps[b] = b
        else:
            cps[b] = 256 + extra
            extra += 1
    return [chr(cps[b]) for b in range(256)]


def q6k_random(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Random q6_K rows: random 6-bit quants, int8 scales in [-8, 8], fp16 d = 1e-3, so |w| <= 0.26."""
    assert cols % 256 == 0
    nb = rows * cols // 256
    blocks = np.empty((nb, 210), dtype=np.uint8)
    blocks[:, :192] = rng.integers(0, 256, size=(nb, 192), dtype=np.uint8)          # ql, qh
    blocks[:, 192:208] = rng.integers(-8, 9, size=(nb, 16)).astype(np.int8).view(np.uint8)  # scales
    blocks[:, 208:210] = np.full((nb, 1), 1e-3, dtype=np.float16).view(np.uint8)    # d
    return blocks.reshape(rows, cols // 256 * 210)


def write_model(path: str, spec: TinySpec) -> None:
    s = spec
    rng = np.random.default_rng(s.seed)
    head_dim = s.dim // s.n_heads
    wtype = TYPES[s.wtype]
    w = gguf.GGUFWriter(path, "llama")
    w.add_name(f"tiny-{s.wtype}")
    w.add_context_length(s.n_ctx)
    w.add_embedding_length(s.dim)
    w.add_block_count(s.n_layers)
    w.add_feed_forward_length(s.n_ff)
    w.add_head_count(s.n_heads)
    w.add_head_count_kv(s.n_kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(head_dim)
    w.add_vocab_size(s.n_vocab)
    if s.rope_scale > 0:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(s.rope_scale)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    assert s.n_vocab == 256
    w.add_token_list(gpt2_byte_tokens())
    w.add_token_types([gguf.TokenType.NORMAL] * s.n_vocab)
    w.add_token_merges(["a b"])  # one merge: gguf-py drops an empty array and the key is required
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)

    def matrix(name: str, rows: int, cols: int, qtype: T = wtype, std: float | None = None) -> None:
        if name in s.omit:
            return
        # Weights ~ N(0, 1/cols) keep every activation O(1), so logits spread over a few units.
        x = rng.standard_normal((rows, cols)).astype(np.float32) * np.float32(std or cols ** -0.5)
        if qtype == T.F32:
            w.add_tensor(name, x)
        else:
            w.add_tensor(name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)

    def norm(name: str, n: int) -> None:
        if name in s.omit:
            return
        w.add_tensor(name, (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32))

    matrix("token_embd.weight", s.n_vocab, s.dim, std=1.0)
    norm("output_norm.weight", s.dim)
    if s.q6k_output:
        w.add_tensor("output.weight", q6k_random(rng, s.n_vocab, s.dim), raw_dtype=T.Q6_K)
    elif not s.tied:
        matrix("output.weight", s.n_vocab, s.dim)
    if s.rope_freqs:
        # llama3's factors: 1 for high frequencies, up to 8 for the lowest.
        w.add_tensor("rope_freqs.weight", np.linspace(1.0, 8.0, head_dim // 2).astype(np.float32))
    for i in range(s.n_layers):
        p = f"blk.{i}."
        norm(p + "attn_norm.weight", s.dim)
        matrix(p + "attn_q.weight", s.n_heads * head_dim, s.dim)
        matrix(p + "attn_k.weight", s.n_kv_heads * head_dim, s.dim)
        matrix(p + "attn_v.weight", s.n_kv_heads * head_dim, s.dim)
        matrix(p + "attn_output.weight", s.dim, s.n_heads * head_dim)
        norm(p + "ffn_norm.weight", s.dim)
        matrix(p + "ffn_gate.weight", s.n_ff, s.dim)
        matrix(p + "ffn_up.weight", s.n_ff, s.dim)
        matrix(p + "ffn_down.weight", s.dim, s.n_ff)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--type", default="f32", choices=sorted(TYPES))
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--untied", action="store_true")
    ap.add_argument("--q6k-output", action="store_true", help="q6_K output.weight (sets dim 256)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    spec = TinySpec(wtype=a.type, n_kv_heads=a.kv_heads, tied=not a.untied, q6k_output=a.q6k_output, seed=a.seed)
    if a.q6k_output:
        spec.dim, spec.n_ff = 256, 256
    write_model(a.out, spec)


if __name__ == "__main__":
    main()
