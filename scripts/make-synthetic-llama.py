#!/usr/bin/env python3
"""Synthetic llama GGUFs with random weights (fixed seed) in the shapes of real models, and synthetic
importance matrices for them in llama-imatrix's GGUF layout: quantizer test inputs that need no download
and no slow calibration pass.

    scripts/make-synthetic-llama.py --shape 1.1b -o model.gguf [--type f32|f16] [--seed N]
    scripts/make-synthetic-llama.py --shape 1.1b --imatrix imatrix.gguf [--seed N]
    (both -o and --imatrix may be given at once; --list shows the shapes)

Shapes: 1.1b = TinyLlama-1.1B (dim 2048, 22 layers, 32/4 heads, ff 5632, vocab 32000, untied output);
163m = SmolLM2-like with every row a multiple of 256 (dim 768, 12 layers, 12/4 heads, ff 2048, vocab
32000, tied); tiny (dim 256, 2 layers, 4/2 heads, ff 512, vocab 512, untied) for fast tests; tiny576
(dim 576, 4 layers, 9/1 heads, ff 1536, vocab 512, tied): 576-wide rows, so llama-quantize's fallbacks
for rows that are not a multiple of 256 are exercised.

Weights: row r of a matrix with `cols` columns is N(0, 1/cols) times a log-normal row scale
(exp(0.5 N(0,1))), so quantizers see a realistic spread of block scales; a handful of outlier input
channels (x8, shared by the matrices that read the same input, as real activations' hot channels are);
and in every matrix one 256-wide segment of exact zeros and one of a constant, the quantizers' corner
cases. Norms ~ 1 + 0.1 N(0,1). Each tensor has its own seed (from --seed and its name), so tensors are
generated and written one at a time: a 4.4 GB f32 1.1b needs RAM for one tensor, not the model.

Tokenizer: GPT-2 byte-level BPE (tokenizer.ggml.model gpt2, pre "default"): the 256 byte tokens at ids
0..255 (token i is byte i), "ab" (the one merge "a b"), unique filler tokens up to the vocabulary size,
and "<s>" / "</s>" as control tokens (bos, eos) at the end. It loads in llama.cpp and in qrun.

Imatrix: llama-imatrix's GGUF (general.type imatrix, imatrix.datasets / chunk_count / chunk_size as
u32, per weight "<name>.in_sum2" f32 {cols} and "<name>.counts" f32 {1}) for every 2-D blk weight and
the output projection (token_embd.weight when tied), as llama-imatrix --process-output collects them.
Per-channel mean x^2 is log-normal (exp(1.5 N(0,1))) with a few hot channels (x50), shared by the
weights that read the same input (q/k/v, gate/up), times the count (chunk_count * chunk_size).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T


@dataclass(frozen=True)
class Shape:
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    n_ff: int
    n_vocab: int
    n_ctx: int
    tied: bool


SHAPES = {
    "1.1b": Shape(2048, 22, 32, 4, 5632, 32000, 2048, tied=False),
    "163m": Shape(768, 12, 12, 4, 2048, 32000, 2048, tied=True),
    "tiny": Shape(256, 2, 4, 2, 512, 512, 256, tied=False),
    "tiny576": Shape(576, 4, 9, 1, 1536, 512, 256, tied=True),
}

N_OUTLIERS = 6          # hot input channels per input (x8 in weights, x50 in the imatrix)
IMATRIX_CHUNKS = 20     # the synthetic imatrix claims 20 chunks of 512 tokens
IMATRIX_CHUNK_SIZE = 512


def byte_tokens() -> list[str]:
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


def vocab(n_vocab: int) -> tuple[list[str], list[int]]:
    """Byte tokens, the merge result "ab", fillers, then <s> and </s> (control)."""
    assert n_vocab >= 260
    toks = byte_tokens() + ["ab"]
    # "Ġ" is the space byte: fillers read as " w257" etc., unique and never made by a merge.
    toks += [f"\u0120w{i}" for i in range(len(toks), n_vocab - 2)]
    toks += ["<s>", "</s>"]
    types = [gguf.TokenType.NORMAL] * (n_vocab - 2) + [gguf.TokenType.CONTROL] * 2
    assert len(set(toks)) == n_vocab
    return toks, types


def tensor_rng(seed: int, name: str) -> np.random.Generator:
    h = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def input_of(name: str) -> str:
    """Which activation a weight reads: weights reading the same one share hot channels."""
    layer, _, w = name.rpartition(".weight")[0].rpartition(".")
    if w in ("attn_q", "attn_k", "attn_v"):
        return f"{layer}.attn_in"
    if w in ("ffn_gate", "ffn_up"):
        return f"{layer}.ffn_in"
    if w in ("output", "token_embd"):
        return "output_in"
    return name


def matrices(s: Shape) -> list[tuple[str, int, int]]:
    """(name, rows, cols) of every 2-D weight, in file order (ggml's ne = {cols, rows})."""
    hd = s.dim // s.n_heads
    out = [("token_embd.weight", s.n_vocab, s.dim)]
    if not s.tied:
        out.append(("output.weight", s.n_vocab, s.dim))
    for i in range(s.n_layers):
        p = f"blk.{i}."
        out += [(p + "attn_q.weight", s.n_heads * hd, s.dim), (p + "attn_k.weight", s.n_kv_heads * hd, s.dim),
                (p + "attn_v.weight", s.n_kv_heads * hd, s.dim), (p + "attn_output.weight", s.dim, s.n_heads * hd),
                (p + "ffn_gate.weight", s.n_ff, s.dim), (p + "ffn_up.weight", s.n_ff, s.dim),
                (p + "ffn_down.weight", s.dim, s.n_ff)]
    return out


def tensors(s: Shape) -> list[tuple[str, tuple[int, ...]]]:
    """(name, numpy shape) of every tensor in file order."""
    shapes = {n: (r, c) for n, r, c in matrices(s)}
    out = [("token_embd.weight", shapes["token_embd.weight"]), ("output_norm.weight", (s.dim,))]
    if not s.tied:
        out.append(("output.weight", shapes["output.weight"]))
    for i in range(s.n_layers):
        p = f"blk.{i}."
        out.append((p + "attn_norm.weight", (s.dim,)))
        out += [(p + w, shapes[p + w]) for w in ("attn_q.weight", "attn_k.weight", "attn_v.weight",
                                                  "attn_output.weight")]
        out.append((p + "ffn_norm.weight", (s.dim,)))
        out += [(p + w, shapes[p + w]) for w in ("ffn_gate.weight", "ffn_up.weight", "ffn_down.weight")]
    return out


def outlier_channels(seed: int, name: str, cols: int) -> np.ndarray:
    return tensor_rng(seed, "outliers:" + input_of(name)).choice(cols, size=min(N_OUTLIERS, cols), replace=False)


def make_tensor(seed: int, name: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = tensor_rng(seed, name)
    if len(shape) == 1:
        return (1.0 + 0.1 * rng.standard_normal(shape[0], dtype=np.float32)).astype(np.float32)
    rows, cols = shape
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    x *= np.exp(0.5 * rng.standard_normal((rows, 1), dtype=np.float32)) * np.float32(cols ** -0.5)
    x[:, outlier_channels(seed, name, cols)] *= np.float32(8.0)
    # Corner cases for the quantizers: an all-zero block and a constant block (max == min).
    seg = min(256, cols)
    for value in (0.0, float(np.float32(0.02))):
        r, c = int(rng.integers(rows)), int(rng.integers(cols // seg)) * seg
        x[r, c:c + seg] = value
    return x


def write_model(path: str, s: Shape, shape_name: str, wtype: str, seed: int) -> None:
    hd = s.dim // s.n_heads
    w = gguf.GGUFWriter(path, "llama")
    w.add_name(f"synthetic-llama-{shape_name}")
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if wtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    w.add_context_length(s.n_ctx)
    w.add_embedding_length(s.dim)
    w.add_block_count(s.n_layers)
    w.add_feed_forward_length(s.n_ff)
    w.add_head_count(s.n_heads)
    w.add_head_count_kv(s.n_kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(hd)
    w.add_vocab_size(s.n_vocab)
    toks, types = vocab(s.n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(toks)
    w.add_token_types(types)
    w.add_token_merges(["a b"])
    w.add_bos_token_id(s.n_vocab - 2)
    w.add_eos_token_id(s.n_vocab - 1)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    plan = tensors(s)
    for name, shape in plan:
        dt = np.float16 if (wtype == "f16" and len(shape) == 2) else np.float32
        w.add_tensor_info(name, shape, np.dtype(dt), int(np.prod(shape)) * np.dtype(dt).itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for i, (name, shape) in enumerate(plan):
        x = make_tensor(seed, name, shape)
        if wtype == "f16" and len(shape) == 2:
            x = x.astype(np.float16)
        w.write_tensor_data(x)
        if sys.stderr.isatty():
            print(f"\r{i + 1}/{len(plan)} {name}".ljust(60), end="", file=sys.stderr, flush=True)
    w.close()
    print(f"\rmake-synthetic-llama.py: {path}: {shape_name}, {wtype}, {len(plan)} tensors, seed {seed}".ljust(60),
          file=sys.stderr)


def write_imatrix(path: str, s: Shape, seed: int) -> None:
    names = [(n, c) for n, _, c in matrices(s) if n.startswith("blk.")]
    names.append(("token_embd.weight" if s.tied else "output.weight", s.dim))
    count = IMATRIX_CHUNKS * IMATRIX_CHUNK_SIZE
    w = gguf.GGUFWriter(path, arch="imatrix")  # gguf-py always adds general.architecture: ignored by readers
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", [f"synthetic-llama seed {seed}"])
    w.add_uint32("imatrix.chunk_count", IMATRIX_CHUNKS)
    w.add_uint32("imatrix.chunk_size", IMATRIX_CHUNK_SIZE)
    for name, cols in sorted(names):  # llama-imatrix writes entries sorted by name
        rng = tensor_rng(seed, "imatrix:" + input_of(name))
        mean_sq = np.exp(1.5 * rng.standard_normal(cols)).astype(np.float32)
        mean_sq[outlier_channels(seed, name, cols)] *= np.float32(50.0)
        # One matrix per weight: ne {cols} and {1}, llama-imatrix's trimmed dims.
        w.add_tensor(name + ".in_sum2", mean_sq * np.float32(count))
        w.add_tensor(name + ".counts", np.full(1, count, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES))
    ap.add_argument("-o", "--out", help="the model GGUF to write")
    ap.add_argument("--imatrix", help="the synthetic imatrix GGUF to write")
    ap.add_argument("--type", default="f32", choices=["f32", "f16"], help="2-D weights' type (norms stay f32)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--list", action="store_true", help="print the shapes and their parameter counts")
    a = ap.parse_args()
    if a.list:
        for k, s in SHAPES.items():
            n = sum(int(np.prod(sh)) for _, sh in tensors(s))
            print(f"{k}: {s} params {n / 1e6:.1f}M")
        return
    if not a.shape or not (a.out or a.imatrix):
        ap.error("--shape and at least one of -o / --imatrix are required")
    s = SHAPES[a.shape]
    if a.out:
        write_model(a.out, s, a.shape, a.type, a.seed)
    if a.imatrix:
        write_imatrix(a.imatrix, s, a.seed)


if __name__ == "__main__":
    main()
