"""Writes the committed inputs of the fuzz targets other than gguf/safetensors (make_gguf_corpus.py):

  data/smollm2_vocab.txt      SmolLM2's byte-level BPE vocabulary (fuzz_tokenizer_bpe), from the GGUF
  data/spm_bpe.model          a SentencePiece BPE model trained here (fuzz_tokenizer_spm)
  corpus/model_load/          tiny llama GGUFs in several weight types and both tokenizer families
  corpus/tokenizer_bpe/       flag byte + text (tokenizer_corpus.py lines)
  corpus/tokenizer_spm/       the same
  corpus/hf_tokenizer/        Hugging Face tokenizer directories packed into one input (see fuzz_common.h)
  corpus/spm_model/           SentencePiece models (BPE, Unigram, with and without byte fallback)
  corpus/hf_config/           config.json variants (SmolLM2's, GQA, llama3 and linear rope scaling)
  corpus/chat_template/       a real template of each family plus a conversation

Deterministic: the same inputs give the same bytes. Needs the .venv (gguf, sentencepiece, numpy), the
default model (scripts/get-model.sh) and SmolLM2-135M-Instruct's tokenizer.json (HuggingFaceTB, Apache-2.0):

    .venv/bin/python tests/fuzz/make_fuzz_corpus.py --tokenizer-json PATH/tokenizer.json
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np

import gguf

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
import make_tiny_model  # noqa: E402
import tokenizer_corpus  # noqa: E402

SEP = b"\x1e\x1e\x1e"  # fuzz_common.h's kSectionSeparator
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_strings(field) -> list[str]:
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


# ---- data/smollm2_vocab.txt: every merge's result is the next token, so the merges list plus the 17
# special tokens and the 235-character alphabet give all 49152 tokens (the target checks the count).
def write_smollm2_vocab(out: Path) -> None:
    r = gguf.GGUFReader(str(MODEL))
    tokens = gguf_strings(r.fields["tokenizer.ggml.tokens"])
    merges = gguf_strings(r.fields["tokenizer.ggml.merges"])
    types = [int(r.fields["tokenizer.ggml.token_type"].parts[i][0]) for i in r.fields["tokenizer.ggml.token_type"].data]
    n_special = types.index(1)
    assert all(t == 3 for t in types[:n_special]) and all(t == 1 for t in types[n_special:])
    n_alpha = len(tokens) - n_special - len(merges)
    for rank, m in enumerate(merges):
        assert tokens[n_special + n_alpha + rank] == m.replace(" ", "", 1), rank
    lines = [
        "# SmolLM2-135M-Instruct's vocabulary (HuggingFaceTB/SmolLM2-135M-Instruct, Apache-2.0) as its GGUF",
        "# stores it, written by tests/fuzz/make_fuzz_corpus.py. Token ids in order: the special tokens",
        "# (control), the byte alphabet, then one token per merge (its two parts joined), in merge rank order.",
        f"special {n_special}", *tokens[:n_special],
        f"alphabet {n_alpha}", *tokens[n_special:n_special + n_alpha],
        f"merges {len(merges)}", *merges,
    ]
    assert not any("\n" in s for s in lines)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---- SentencePiece models, trained on the tokenizer corpus (identity normalizer: no 240 KB charsmap).
def train_spm(model_type: str, vocab_size: int, byte_fallback: bool, lines: list[str]) -> bytes:
    import sentencepiece as spm

    proto = io.BytesIO()
    train = [s for line in lines for s in line.split("\n") if s.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(train), model_writer=proto, model_type=model_type, vocab_size=vocab_size,
        byte_fallback=byte_fallback, character_coverage=0.98, remove_extra_whitespaces=False,
        normalization_rule_name="identity", hard_vocab_limit=False, num_threads=1, minloglevel=2,
        control_symbols=["<|im_start|>", "<|im_end|>"], user_defined_symbols=["<|user|>"], seed_sentencepiece_size=20000)
    return proto.getvalue()


def pack(files: dict[str, bytes]) -> bytes:
    parts = []
    for name, body in files.items():
        assert SEP not in body, name
        parts.append(name.encode() + b"\n" + body)
    return SEP.join(parts)


def trimmed_tokenizer_json(tj: dict, n_merges: int, merges_as_lists: bool = False) -> dict:
    """The real tokenizer.json with only its first merges and the tokens they need (ids stay real)."""
    t = json.loads(json.dumps(tj))
    n_keep = 252 + n_merges  # 17 specials + 235 alphabet characters, then one token per merge
    t["model"]["vocab"] = {k: v for k, v in tj["model"]["vocab"].items() if v < n_keep}
    merges = tj["model"]["merges"][:n_merges]
    t["model"]["merges"] = [m.split(" ") for m in merges] if merges_as_lists else merges
    return t


def hf_tokenizer_seeds(out: Path, tj_path: Path, spm_models: dict[str, bytes]) -> None:
    tj = json.loads(tj_path.read_text(encoding="utf-8"))
    template = gguf.GGUFReader(str(MODEL)).fields["tokenizer.chat_template"]
    chat = bytes(template.parts[template.data[0]]).decode()
    tc = {"add_prefix_space": False, "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
          "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>", "chat_template": chat,
          "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in tj["added_tokens"][:3]}}
    cfg = {"architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "vocab_size": 49152}
    gen = {"bos_token_id": 1, "eos_token_id": [2, 0], "pad_token_id": 2}
    j = lambda o: json.dumps(o, ensure_ascii=False, indent=1).encode()  # noqa: E731
    seeds = {
        "smollm2_bpe": {"tokenizer.json": j(trimmed_tokenizer_json(tj, 400)), "tokenizer_config.json": j(tc),
                        "generation_config.json": j(gen)},
        "smollm2_list_merges": {"tokenizer.json": j(trimmed_tokenizer_json(tj, 200, merges_as_lists=True)),
                                "config.json": j({"vocab_size": 512}),
                                "chat_template.jinja": chat.encode()},
        "chat_template_list": {"tokenizer.json": j(trimmed_tokenizer_json(tj, 50)),
                               "tokenizer_config.json": j({"chat_template": [{"name": "default", "template": chat},
                                                                             {"name": "tool use", "template": "{{x}}"}],
                                                           "add_bos_token": True, "bos_token": {"content": "<|im_start|>"}})},
    }
    # A SentencePiece-style tokenizer.json (byte_fallback, Metaspace), as Llama 2's.
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + \
        ["\u2581", "\u2581t", "he", "\u2581the", "in", "\u2581a", "er", "\u2581o", "on", "\u2581of"]
    spm_json = {
        "version": "1.0", "added_tokens": [{"id": i, "content": p, "special": True} for i, p in enumerate(pieces[:3])],
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                           {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                                   {"Sequence": {"id": "A", "type_id": 0}}]},
        "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "byte_fallback": True, "unk_token": "<unk>", "fuse_unk": True,
                  "vocab": {p: i for i, p in enumerate(pieces)},
                  "merges": ["\u2581 t", "h e", "\u2581t he", "i n", "\u2581 a", "e r", "\u2581 o", "o n", "\u2581o f"]},
    }
    seeds["spm_json"] = {"tokenizer.json": j(spm_json),
                         "tokenizer_config.json": j({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True})}
    seeds["spm_model"] = {"tokenizer.model": spm_models["bpe_bytes"], "added_tokens.json": j({"<extra>": 5}),
                          "tokenizer_config.json": j({"bos_token": "<s>", "add_eos_token": False,
                                                      "added_tokens_decoder": {"3": {"content": "<|im_start|>", "special": True}}}),
                          "config.json": j({"vocab_size": 1000})}
    for name, files in seeds.items():
        (out / name).write_bytes(pack(files))


# ---- GGUF models for fuzz_model_load: small dims, so each seed is a few KB.
def tiny_models(out: Path) -> None:
    base = dict(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, n_ff=32, n_ctx=64)
    variants = {
        "f32_tied": dict(wtype="f32"),
        "q8_0_untied": dict(wtype="q8_0", tied=False),
        "q4_0_gqa": dict(wtype="q4_0", n_heads=4, n_kv_heads=2),
        "q4_1_rope_linear": dict(wtype="q4_1", rope_scale=2.0),
        "f16_rope_freqs": dict(wtype="f16", rope_freqs=True, n_layers=2),
        "bf16": dict(wtype="bf16", n_kv_heads=2),
    }
    for name, v in variants.items():
        make_tiny_model.write_model(str(out / f"{name}.gguf"), make_tiny_model.TinySpec(**{**base, **v}))
    spm_vocab(out / "q8_0_untied.gguf", out / "q8_0_spm.gguf")


def spm_vocab(src: Path, dst: Path) -> None:
    """A copy of `src` whose tokenizer is SentencePiece-style (scores, byte tokens, control <s> </s>)."""
    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), "llama")
    skip = {"general.architecture", "GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"}
    for key, f in r.fields.items():
        if key in skip or key.startswith("tokenizer."):
            continue
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.STRING:
            w.add_string(key, bytes(f.parts[f.data[0]]).decode())
        else:
            w.add_key_value(key, f.parts[f.data[0]][0].item(), vtype)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(253)]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 3 + [-float(i) for i in range(253)])
    w.add_token_types([2, 3, 3] + [6] * 253)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    for t in r.tensors:
        w.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)  # the reader shapes rows as the writer wants
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def hf_config_seeds(out: Path) -> None:
    smol = {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "bos_token_id": 1, "eos_token_id": 2,
            "hidden_act": "silu", "hidden_size": 576, "intermediate_size": 1536, "max_position_embeddings": 8192,
            "mlp_bias": False, "model_type": "llama", "num_attention_heads": 9, "num_hidden_layers": 30,
            "num_key_value_heads": 3, "pad_token_id": 2, "rms_norm_eps": 1e-05, "rope_scaling": None,
            "rope_theta": 100000, "tie_word_embeddings": True, "torch_dtype": "bfloat16", "use_cache": True,
            "vocab_size": 49152}
    llama3 = {**smol, "hidden_size": 2048, "intermediate_size": 8192, "num_attention_heads": 32, "num_key_value_heads": 8,
              "head_dim": 64, "rope_theta": 500000.0, "eos_token_id": [128001, 128008, 128009], "vocab_size": 128256,
              "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                               "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
    mistral = {"architectures": ["MistralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
               "max_position_embeddings": 32768, "num_attention_heads": 32, "num_hidden_layers": 32,
               "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": None,
               "tie_word_embeddings": False, "vocab_size": 32768}
    linear = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 4,
              "num_hidden_layers": 2, "max_position_embeddings": 256, "vocab_size": 256, "rms_norm_eps": 1e-6,
              "rope_scaling": {"type": "linear", "factor": 4.0}}
    for name, cfg in {"smollm2": smol, "llama3": llama3, "mistral": mistral, "linear": linear}.items():
        (out / f"{name}.json").write_text(json.dumps(cfg, indent=2) + "\n")


def chat_seeds(out: Path) -> None:
    r = gguf.GGUFReader(str(MODEL))
    f = r.fields["tokenizer.chat_template"]
    templates = {
        "chatml_smollm2": bytes(f.parts[f.data[0]]).decode(),
        "llama2_sys": "{% if messages[0]['role'] == 'system' %}<<SYS>>\\n{{ messages[0]['content'] }}\\n<</SYS>>"
                      "{% endif %}{{ bos_token + '[INST] ' + message['content'] | trim + ' [/INST]' }}",
        "mistral_v7": "{{ '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}{{ '[INST]' + m + '[/INST]' }}",
        "phi3": "{{'<|' + message['role'] + '|>' + '\\n' + message['content'] + '<|end|>\\n'}}{{'<|assistant|>\\n'}}",
        "gemma": "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}",
        "llama3": "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
                  " + '<|eot_id|>' }}",
        "zephyr": "{{ '<|user|>\\n' + message['content'] + eos_token }}<|endoftext|>",
        "name": "mistral-v3-tekken",
    }
    messages = [("system", "Be brief."), ("user", "Hi there!"), ("assistant", " Hello. "), ("user", "2+2?")]
    for name, t in templates.items():
        parts = [t.encode()] + [f"{role}\n{content}".encode() for role, content in messages]
        (out / name).write_bytes(SEP.join(parts))


def text_seeds(out: Path, lines: list[str]) -> None:
    # The flag byte (fuzz_tokenizer.h: add_special, parse_special, remove_special, ...) then four lines.
    for i in range(0, len(lines), 4):
        text = "\n".join(lines[i:i + 4])
        (out / f"lines{i:03d}").write_bytes(bytes([i * 37 % 256]) + text.encode())


# ---- Dictionaries (libFuzzer -dict=): the words each parser branches on, which random mutation
# would take long to spell. GGUF keys come with their u64 length prefix, as the file has them.
GGUF_KEYS = [
    "general.architecture", "general.name", "general.alignment", "llama.context_length",
    "llama.embedding_length", "llama.block_count", "llama.feed_forward_length", "llama.attention.head_count",
    "llama.attention.head_count_kv", "llama.attention.layer_norm_rms_epsilon", "llama.attention.key_length",
    "llama.attention.value_length", "llama.rope.freq_base", "llama.rope.dimension_count", "llama.rope.scaling.type",
    "llama.rope.scaling.factor", "llama.rope.freq_scale", "llama.vocab_size", "tokenizer.ggml.model",
    "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id", "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
    "tokenizer.ggml.add_space_prefix", "tokenizer.chat_template", "token_embd.weight", "output_norm.weight",
    "output.weight", "rope_freqs.weight", "blk.0.attn_norm.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight",
    "blk.0.attn_v.weight", "blk.0.attn_output.weight", "blk.0.ffn_norm.weight", "blk.0.ffn_gate.weight",
    "blk.0.ffn_up.weight", "blk.0.ffn_down.weight", "llama", "gpt2", "smollm", "default", "linear", "llama3", "none",
]
SPECIAL_TEXT = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|user|>", "<s>", "</s>", "<unk>", "\u2581",
                "<0x0A>", "'s", " 've", "\r\n", "  ", "\t", "1234", "\u00e9", "e\u0301", "\u65e5\u672c", "\U0001F468\u200d"]
HF_JSON = ["added_tokens", "model", "vocab", "merges", "type", "BPE", "ByteLevel", "byte_fallback", "ignore_merges",
           "pre_tokenizer", "normalizer", "post_processor", "TemplateProcessing", "RobertaProcessing", "single",
           "SpecialToken", "processors", "decoder", "Metaspace", "Prepend", "never", "add_bos_token", "add_eos_token",
           "bos_token", "eos_token", "unk_token", "pad_token", "cls_token", "sep_token", "content", "special", "id",
           "chat_template", "name", "template", "added_tokens_decoder", "vocab_size", "text_config", "bos_token_id",
           "eos_token_id", "pad_token_id", "Split", "Digits", "individual_digits", "Sequence", "pretokenizers",
           "Regex", "String", "pattern", "behavior", "Isolated", "add_prefix_space", "use_regex", "Unigram"]
HF_CONFIG = ["architectures", "model_type", "LlamaForCausalLM", "MistralForCausalLM", "llama", "mistral", "hidden_size",
             "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size",
             "max_position_embeddings", "vocab_size", "rms_norm_eps", "rope_theta", "tie_word_embeddings",
             "attention_bias", "mlp_bias", "rope_scaling", "rope_type", "type", "factor", "low_freq_factor",
             "high_freq_factor", "original_max_position_embeddings", "linear", "llama3", "default", "bos_token_id",
             "eos_token_id", "1e-05", "-1", "18446744073709551615", "9223372036854775808", "1e309", "1e39", "0.5"]
CHAT = ["<|im_start|>", "<|im_sep|>", "<end_of_utterance>", "mistral", "[INST]", "[SYSTEM_PROMPT]",
        "' [INST] ' + system_message", "[AVAILABLE_TOOLS]", " [INST]", '"[INST]"', "content.strip()",
        "bos_token + '[INST]", "<<SYS>>", "<|assistant|>", "<|end|>", "[gMASK]<sop>", "<|user|>", "</s>",
        "<|endoftext|>", "<start_of_turn>", "<|start_header_id|>", "<|end_header_id|>", "system", "user",
        "assistant", "chatml", "llama2-sys-bos", "mistral-v7-tekken", "phi3", "gemma", " \t\n"]
# Overlong, surrogate, past U+10FFFF, a lone continuation byte, a truncated 3-byte lead.
INVALID_UTF8 = [b"\xC0\x80", b"\xED\xA0\x80", b"\xF4\x90\x80\x80", b"\x80", b"\xE2\x96"]
JSON_PUNCT = ["{", "}", "[", "]", '":', "true", "false", "null", '\\u0000', '\\ud800']


def dict_entry(b: bytes) -> str:
    return '"' + "".join(chr(c) if 0x20 <= c < 0x7F and chr(c) not in '"\\' else f"\\x{c:02X}" for c in b) + '"'


def write_dicts(out: Path) -> None:
    out.mkdir(exist_ok=True)
    gguf_words = [len(k).to_bytes(8, "little") + k.encode() for k in GGUF_KEYS] + [b"GGUF"]
    sep = [SEP] + [SEP + n.encode() + b"\n" for n in ("tokenizer.json", "tokenizer_config.json", "config.json",
                                                      "generation_config.json", "added_tokens.json", "tokenizer.model",
                                                      "chat_template.jinja", "chat_template.json")]
    quoted = lambda words: [json.dumps(w, ensure_ascii=False).encode() for w in words]  # noqa: E731
    text = lambda words: [w.encode() for w in words]  # noqa: E731
    dicts = {
        "gguf": gguf_words, "model_load": gguf_words + text(SPECIAL_TEXT[:4]),
        "tokenizer_bpe": text(SPECIAL_TEXT) + INVALID_UTF8, "tokenizer_spm": text(SPECIAL_TEXT) + INVALID_UTF8,
        "hf_tokenizer": sep + quoted(HF_JSON) + text(JSON_PUNCT) + text(SPECIAL_TEXT[:7]),
        "hf_config": quoted(HF_CONFIG) + text(JSON_PUNCT),
        "chat_template": [SEP] + [w.encode() for w in CHAT],
        "safetensors": quoted(["__metadata__", "dtype", "shape", "data_offsets", "F32", "F16", "BF16", "F64", "I8",
                               "U8", "I16", "I32", "I64", "BOOL", "F8_E4M3", "format", "pt"]) + text(JSON_PUNCT),
    }
    for name, words in dicts.items():
        lines = [f"# {name}: written by make_fuzz_corpus.py"] + [dict_entry(w) for w in dict.fromkeys(words)]
        (out / f"{name}.dict").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer-json", type=Path, help="SmolLM2-135M-Instruct's tokenizer.json")
    ap.add_argument("--dicts-only", action="store_true", help="write only dict/ (needs neither file)")
    a = ap.parse_args()
    write_dicts(HERE / "dict")
    if a.dicts_only:
        return 0
    if a.tokenizer_json is None:
        ap.error("--tokenizer-json is required")
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    write_smollm2_vocab(data / "smollm2_vocab.txt")
    lines = tokenizer_corpus.make_lines()
    spm_models = {
        "bpe_bytes": train_spm("bpe", 1000, True, lines[::2]),
        "unigram": train_spm("unigram", 800, False, lines[1::2]),
        "bpe_small": train_spm("bpe", 700, True, lines[::5]),
    }
    (data / "spm_bpe.model").write_bytes(spm_models["bpe_bytes"])

    corpus = HERE / "corpus"
    makers = {
        "model_load": tiny_models,
        "tokenizer_bpe": lambda d: text_seeds(d, lines[:24] + lines[24:: len(lines) // 40]),
        "tokenizer_spm": lambda d: text_seeds(d, lines[:24] + lines[29:: len(lines) // 40]),
        "hf_tokenizer": lambda d: hf_tokenizer_seeds(d, a.tokenizer_json, spm_models),
        "spm_model": lambda d: [(d / f"{k}.model").write_bytes(v) for k, v in spm_models.items()],
        "hf_config": hf_config_seeds,
        "chat_template": chat_seeds,
    }
    for name, make in makers.items():
        d = corpus / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        make(d)
        size = sum(p.stat().st_size for p in d.iterdir())
        print(f"{name}: {len(list(d.iterdir()))} files, {size} bytes")
        assert size < 512 * 1024, name
    return 0


if __name__ == "__main__":
    sys.exit(main())
