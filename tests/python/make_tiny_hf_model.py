"""Synthesises a small Llama Hugging Face model directory for the qconvert tests and benchmark:
config.json, model.safetensors (or shards + model.safetensors.index.json), tokenizer.json (a byte-level
BPE trained with `tokenizers`), tokenizer_config.json and generation_config.json. Weights are random
(fixed seed) in f32, f16 or bf16; the safetensors files are written here (numpy has no bfloat16).

    python make_tiny_hf_model.py DIR [--hidden 64 --layers 2 --heads 4 --kv-heads 2 --ff 80 --dtype f16]
"""

import argparse
import json
import pathlib
import struct

import numpy as np

CORPUS = [
    "The capital of France is Paris.", "Hello world! How are you today?",
    "Numbers like 12345 and 3.14 appear in text.", "def main():\n    return 0\n",
    "Llamas live in the Andes; they are calm animals.", "Quantization maps floats to small integers.",
]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """f32 -> bf16 bits, round to nearest even (as torch and ggml do for finite values)."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def encode(x: np.ndarray, dtype: str):
    """(safetensors dtype, bytes, the f32 values the file holds)."""
    if dtype == "f32":
        v = x.astype(np.float32)
        return "F32", v.tobytes(), v
    if dtype == "f16":
        v = x.astype(np.float16)
        return "F16", v.tobytes(), v.astype(np.float32)
    bits = bf16_bits(x)
    return "BF16", bits.tobytes(), bf16_to_f32(bits)


def write_safetensors(path: pathlib.Path, tensors: dict):
    """tensors: name -> (dtype, shape, bytes). Data in insertion order, header padded to 8 bytes."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (dt, shape, data) in tensors.items():
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, data in tensors.values():
            f.write(data)


def make_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    return tok


def hf_tensor_shapes(cfg: dict) -> dict:
    d, hd = cfg["hidden_size"], cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    q, kv, ff, v = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd, cfg["intermediate_size"], cfg["vocab_size"]
    shapes = {"model.embed_tokens.weight": (v, d)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (d,), p + "self_attn.q_proj.weight": (q, d),
                       p + "self_attn.k_proj.weight": (kv, d), p + "self_attn.v_proj.weight": (kv, d),
                       p + "self_attn.o_proj.weight": (d, q), p + "post_attention_layernorm.weight": (d,),
                       p + "mlp.gate_proj.weight": (ff, d), p + "mlp.up_proj.weight": (ff, d),
                       p + "mlp.down_proj.weight": (d, ff)})
    shapes["model.norm.weight"] = (d,)
    if not cfg.get("tie_word_embeddings"):
        shapes["lm_head.weight"] = (v, d)
    return shapes


def make_tiny_hf_model(out, hidden=64, layers=2, heads=4, kv_heads=2, ff=80, dtype="f16", tied=False,
                       shards=1, rope_scaling=None, seed=0, vocab=300, head_dim=None, scale=0.05):
    """Writes the directory; returns {hf tensor name: f32 values as stored} (small models only)."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(vocab)
    n_vocab = tok.get_vocab_size()
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
        "add_bos_token": False, "model_max_length": 2048, "tokenizer_class": "GPT2Tokenizer"}))
    bos, eos = tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|im_end|>")
    (out / "generation_config.json").write_text(json.dumps({"bos_token_id": bos, "eos_token_id": eos}))
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
           "intermediate_size": ff, "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": kv_heads, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "tie_word_embeddings": tied, "vocab_size": n_vocab, "hidden_act": "silu",
           "bos_token_id": bos, "eos_token_id": eos, "torch_dtype": "float32"}
    if head_dim:
        cfg["head_dim"] = head_dim
    if rope_scaling:
        cfg["rope_scaling"] = rope_scaling
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    (out / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny test model\n")

    rng = np.random.default_rng(seed)
    shapes = hf_tensor_shapes(cfg)
    names = list(shapes)
    keep = sum(int(np.prod(s)) for s in shapes.values()) < 50_000_000
    values, files = {}, [dict() for _ in range(shards)]
    for i, name in enumerate(names):
        shape = shapes[name]
        if len(shape) == 1:
            x = 1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)
        else:
            x = scale * rng.standard_normal(shape, dtype=np.float32)
        dt, data, v = encode(x, dtype)
        files[i * shards // len(names)][name] = (dt, shape, data)
        if keep:
            values[name] = v
    if shards == 1:
        write_safetensors(out / "model.safetensors", files[0])
    else:
        weight_map = {}
        for k, f in enumerate(files):
            fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
            write_safetensors(out / fname, f)
            weight_map.update({n: fname for n in f})
        (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return values


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ff", type=int, default=80)
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f16")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--tied", action="store_true")
    a = ap.parse_args()
    make_tiny_hf_model(a.dir, a.hidden, a.layers, a.heads, a.kv_heads, a.ff, a.dtype, a.tied, a.shards)


if __name__ == "__main__":
    main()
