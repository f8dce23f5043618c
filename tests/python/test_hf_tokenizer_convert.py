"""Tokenizer conversion between Hugging Face files and GGUF (src/tokenizer/hf_tokenizer.h), checked against
HF `tokenizers`, `sentencepiece` and the `gguf` package, on tokenizer_corpus.py's 2,400 lines.

- export: the SmolLM2 GGUF's vocabulary -> tokenizer.json that HF loads to the same ids as our GGUF
  tokenizer, with and without special tokens;
- round trip: SmolLM2 GGUF -> export -> import gives back its tokenizer keys;
- import: a byte-level BPE (Llama 3 style Split regex, built with `tokenizers`) and a SentencePiece model
  (trained here) convert to GGUF keys equal to what llama.cpp's converter writes, and our tokenizer on
  that GGUF gives HF's / SentencePiece's ids.
"""

import io
import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import tokenizer_corpus  # noqa: E402
from conftest import run_tool  # noqa: E402

TOOL = "hf_tokenizer_tool"
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    lines = tokenizer_corpus.make_lines()
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    tokenizer_corpus.write_jsonl(path, lines)
    return lines, path


def json_lines(text):
    return [json.loads(s) for s in text.split("\n") if s]


def ours(model, corpus_path, add_special=False):
    if add_special:
        return json_lines(run_tool(TOOL, "tokenize", model, corpus_path))
    return json_lines(run_tool("tokenize_tool", model, corpus_path))


def assert_same(lines, got, want, what):
    assert len(got) == len(lines), f"{what}: {len(got)} results for {len(lines)} lines"
    bad = [i for i in range(len(lines)) if got[i] != want[i]]
    if bad:
        i = bad[0]
        pytest.fail(f"{what}: {len(bad)} of {len(lines)} lines differ; first is line {i} {lines[i]!r}:\n"
                    f"  ours: {got[i]}\n  want: {want[i]}")


def tokenizer_kvs(path):
    import gguf
    return {k: f.contents() for k, f in gguf.GGUFReader(str(path)).fields.items() if k.startswith("tokenizer.")}


def import_dir(d, out):
    import subprocess
    from conftest import tool
    proc = subprocess.run([str(tool(TOOL)), "import", str(d), str(out)], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return [s for s in proc.stderr.decode().splitlines() if s.startswith("warning:")]


# ---- SmolLM2: export, HF ids, round trip

@pytest.fixture(scope="module")
def smollm2_export(default_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("smollm2_hf")
    run_tool(TOOL, "export", default_model, d)
    return d


def test_export_matches_our_ids(default_model, smollm2_export, corpus):
    from tokenizers import Tokenizer
    lines, path = corpus
    hf = Tokenizer.from_file(str(smollm2_export / "tokenizer.json"))
    assert_same(lines, ours(default_model, path), [e.ids for e in hf.encode_batch(lines, add_special_tokens=False)],
                "exported SmolLM2 tokenizer.json vs our GGUF tokenizer")
    assert_same(lines, ours(default_model, path, add_special=True),
                [e.ids for e in hf.encode_batch(lines, add_special_tokens=True)],
                "exported SmolLM2 tokenizer.json vs our GGUF tokenizer, special tokens added")


def test_export_matches_hub_tokenizer(smollm2_export, corpus):
    """The exported file tokenizes like SmolLM2's own tokenizer.json (the pieces checked in as a fixture:
    its pre-tokenizer and added tokens; the vocabulary is the GGUF's)."""
    from tokenizers import Tokenizer
    lines, _ = corpus
    tj = json.loads((smollm2_export / "tokenizer.json").read_text())
    assert tj["pre_tokenizer"]["pretokenizers"][0] == {"type": "Digits", "individual_digits": True}
    assert [t["content"] for t in tj["added_tokens"]][:3] == SPECIALS[2:] + SPECIALS[:2]
    tc = json.loads((smollm2_export / "tokenizer_config.json").read_text())
    assert (tc["bos_token"], tc["eos_token"], tc["add_bos_token"]) == ("<|im_start|>", "<|im_end|>", False)
    assert tc["chat_template"].startswith("{% for message in messages %}")
    hf = Tokenizer.from_file(str(smollm2_export / "tokenizer.json"))
    assert hf.decode(hf.encode(lines[0]).ids) == lines[0]


def test_round_trip_keys(default_model, smollm2_export, tmp_path):
    out = tmp_path / "rt.gguf"
    assert import_dir(smollm2_export, out) == []  # the check-text hash names "smollm": no assumption made
    a, b = tokenizer_kvs(default_model), tokenizer_kvs(out)
    for k in ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
              "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
              "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token",
              "tokenizer.chat_template"]:
        assert a.get(k) == b.get(k), k


# ---- Import: a byte-level BPE in the Llama 3 style, built with `tokenizers`

@pytest.fixture(scope="module")
def llama3_style_dir(corpus, tmp_path_factory):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    lines, _ = corpus
    split = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
             "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=["<|begin_of_text|>", "<|end_of_text|>",
                                                                     "<|eot_id|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines[::2], trainer)
    tok.add_tokens(["<user_tag>"])  # an added token that is not special: USER_DEFINED
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", 0)])
    d = tmp_path_factory.mktemp("bpe_hf")
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": "{{ messages }}"}))
    (d / "config.json").write_text(json.dumps({"vocab_size": tok.get_vocab_size() + 5, "bos_token_id": 0}))
    return d, tok


def test_import_bpe_keys(llama3_style_dir, tmp_path):
    d, tok = llama3_style_dir
    out = tmp_path / "bpe.gguf"
    warnings = import_dir(d, out)
    kv = tokenizer_kvs(out)
    n = tok.get_vocab_size()
    vocab = {i: t for t, i in tok.get_vocab().items()}
    assert kv["tokenizer.ggml.model"] == "gpt2"
    # A freshly trained vocabulary has no hash llama.cpp knows: the Split regex decides, with a warning.
    assert kv["tokenizer.ggml.pre"] == "llama-bpe"
    assert any("assumed \"llama-bpe\"" in w for w in warnings), warnings
    assert kv["tokenizer.ggml.tokens"] == [vocab[i] for i in range(n)] + [f"[PAD{i}]" for i in range(n, n + 5)]
    types = kv["tokenizer.ggml.token_type"]
    assert types[:3] == [3, 3, 3] and types[vocab_id(tok, "<user_tag>")] == 4 and types[n:] == [5] * 5
    assert types.count(1) == n - 4
    tj = json.loads((d / "tokenizer.json").read_text())
    assert kv["tokenizer.ggml.merges"] == [" ".join(m) if isinstance(m, list) else m for m in tj["model"]["merges"]]
    assert (kv["tokenizer.ggml.bos_token_id"], kv["tokenizer.ggml.eos_token_id"]) == (0, 2)
    assert kv["tokenizer.ggml.add_bos_token"] is True
    assert kv["tokenizer.chat_template"] == "{{ messages }}"


def vocab_id(tok, text):
    return tok.token_to_id(text)


def test_import_bpe_ids(llama3_style_dir, corpus, tmp_path):
    d, tok = llama3_style_dir
    lines, path = corpus
    out = tmp_path / "bpe.gguf"
    import_dir(d, out)
    assert_same(lines, ours(out, path), [e.ids for e in tok.encode_batch(lines, add_special_tokens=False)],
                "imported BPE: our ids vs HF tokenizers")
    assert_same(lines, ours(out, path, add_special=True), [e.ids for e in tok.encode_batch(lines)],
                "imported BPE with BOS: our ids vs HF tokenizers")


# ---- Import: SentencePiece

@pytest.fixture(scope="module")
def spm_dir(corpus, tmp_path_factory):
    import sentencepiece as spm
    lines, _ = corpus
    train = [s for line in lines[::2] for s in line.split("\n") if s.strip()]
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(train), model_writer=proto, model_type="bpe", vocab_size=3000,
        byte_fallback=True, split_digits=True, character_coverage=0.9995, allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity", add_dummy_prefix=True,
        hard_vocab_limit=False, num_threads=1, control_symbols=SPECIALS[:2], user_defined_symbols=SPECIALS[2:],
        minloglevel=2)
    d = tmp_path_factory.mktemp("spm_hf")
    (d / "tokenizer.model").write_bytes(proto.getvalue())
    (d / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True, "add_eos_token": False,
                                                        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}))
    return d, spm.SentencePieceProcessor(model_proto=proto.getvalue())


def test_import_spm_keys(spm_dir, tmp_path):
    from sentencepiece import sentencepiece_model_pb2 as pb
    d, sp = spm_dir
    out = tmp_path / "spm.gguf"
    assert import_dir(d, out) == []
    kv = tokenizer_kvs(out)
    m = pb.ModelProto()
    m.ParseFromString((d / "tokenizer.model").read_bytes())
    assert kv["tokenizer.ggml.model"] == "llama"
    assert kv["tokenizer.ggml.tokens"] == [p.piece for p in m.pieces]
    assert kv["tokenizer.ggml.scores"] == pytest.approx([p.score for p in m.pieces])
    assert kv["tokenizer.ggml.token_type"] == [int(p.type) for p in m.pieces]  # NORMAL..BYTE are GGUF's numbers
    assert (kv["tokenizer.ggml.bos_token_id"], kv["tokenizer.ggml.eos_token_id"],
            kv["tokenizer.ggml.unknown_token_id"]) == (sp.bos_id(), sp.eos_id(), sp.unk_id())
    assert kv["tokenizer.ggml.add_bos_token"] is True and kv["tokenizer.ggml.add_space_prefix"] is True


def test_import_spm_ids(spm_dir, corpus, tmp_path):
    d, sp = spm_dir
    lines, path = corpus
    out = tmp_path / "spm.gguf"
    import_dir(d, out)
    got = ours(out, path)
    keep = [i for i, s in enumerate(lines) if not any(t in s for t in SPECIALS)]
    assert len(keep) >= 2000
    assert_same([lines[i] for i in keep], [got[i] for i in keep], [sp.encode(lines[i]) for i in keep],
                "imported SPM: our ids vs sentencepiece")


def test_spm_export_matches_our_ids(spm_dir, corpus, tmp_path):
    """SPM GGUF -> tokenizer.json (Llama 2 flavour): HF tokenizers gives our ids, special tokens included."""
    from tokenizers import Tokenizer
    d, _ = spm_dir
    lines, path = corpus
    g = tmp_path / "spm.gguf"
    import_dir(d, g)
    run_tool(TOOL, "export", g, tmp_path / "hf")
    hf = Tokenizer.from_file(str(tmp_path / "hf" / "tokenizer.json"))
    assert_same(lines, ours(g, path), [e.ids for e in hf.encode_batch(lines, add_special_tokens=False)],
                "exported SPM tokenizer.json vs our GGUF tokenizer")
    assert_same(lines, ours(g, path, add_special=True), [e.ids for e in hf.encode_batch(lines)],
                "exported SPM tokenizer.json (BOS) vs our GGUF tokenizer")
    # ... and back: the tokenizer.json-only directory imports to a GGUF that tokenizes the same.
    g2 = tmp_path / "spm2.gguf"
    import_dir(tmp_path / "hf", g2)
    assert_same(lines, ours(g2, path), ours(g, path), "SPM GGUF -> HF -> GGUF ids")
