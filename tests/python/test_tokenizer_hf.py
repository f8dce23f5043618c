"""Our tokenizer against Hugging Face `tokenizers` (and `sentencepiece`), id for id, on the corpus of
tokenizer_corpus.py (2,400 lines: prose in many scripts, code, numbers, whitespace runs, emoji,
special tokens inside text).

- BPE: the real SmolLM2 vocabulary (models/SmolLM2-135M-Instruct.Q4_1.gguf). The HF reference is
  built from the GGUF's own tokens and merges the way SmolLM2's tokenizer.json is: BPE model,
  Sequence[Digits(individual_digits), ByteLevel(add_prefix_space=False)], control tokens as special
  added tokens (its ids were checked by hand to equal the hub tokenizer.json's on this corpus).
- SPM: a small SentencePiece BPE model with byte fallback trained here (fixed corpus, one thread),
  written to GGUF as llama.cpp's converter does; references: transformers' LlamaTokenizerFast built
  from the .model and sentencepiece itself.
- Detokenisation round trips, whole and streamed through Utf8Stream.
"""

import io
import json
import re
import sys
import pathlib

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import tokenizer_corpus  # noqa: E402
from conftest import run_tool  # noqa: E402

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    lines = tokenizer_corpus.make_lines()
    path = tmp_path_factory.mktemp("tok") / "corpus.jsonl"
    tokenizer_corpus.write_jsonl(path, lines)
    return lines, path


def json_lines(text):
    # Not str.splitlines(): that also splits at U+2028, U+0085..., which JSON strings hold verbatim.
    return [json.loads(s) for s in text.split("\n") if s]


def ours(model, corpus_path):
    return json_lines(run_tool("tokenize_tool", model, corpus_path))


def detok(model, ids, tmp_path, mode="--detok"):
    path = tmp_path / "ids.txt"
    path.write_text("".join(json.dumps(x) + "\n" for x in ids))
    return json_lines(run_tool("tokenize_tool", model, mode, path))


def assert_same(lines, got, want, what):
    assert len(got) == len(lines), f"{what}: {len(got)} results for {len(lines)} lines"
    bad = [i for i in range(len(lines)) if got[i] != want[i]]
    if bad:
        i = bad[0]
        pytest.fail(f"{what}: {len(bad)} of {len(lines)} lines differ; first is line {i} {lines[i]!r}:\n"
                    f"  ours: {got[i]}\n  want: {want[i]}")


# ---- BPE: SmolLM2

def gguf_strings(field):
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


@pytest.fixture(scope="module")
def smollm2_hf(default_model):
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    f = gguf.GGUFReader(str(default_model)).fields
    tokens = gguf_strings(f["tokenizer.ggml.tokens"])
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    merges = [tuple(m.split(" ", 1)) for m in gguf_strings(f["tokenizer.ggml.merges"])]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])  # CONTROL
    return tok


def test_bpe_matches_hf(default_model, smollm2_hf, corpus):
    lines, path = corpus
    want = [smollm2_hf.encode(s, add_special_tokens=False).ids for s in lines]
    assert_same(lines, ours(default_model, path), want, "SmolLM2 ids vs HF tokenizers")


def test_bpe_special_ids(default_model):
    info = json.loads(run_tool("tokenize_tool", default_model, "--info"))
    assert info["n_vocab"] == 49152
    assert (info["bos"], info["eos"], info["add_bos"], info["add_eos"]) == (1, 2, False, False)
    # <|endoftext|>, <|im_end|> and <reponame> (StarCoder's fill-in-the-middle repo marker, on which llama.cpp
    # ends generation too), as llama.cpp 0.3.16's llama_vocab_is_eog lists them
    assert set(info["eog"]) == {0, 2, 4}


def test_bpe_detokenize_round_trip(default_model, corpus, tmp_path):
    lines, path = corpus
    ids = ours(default_model, path)
    assert_same(lines, detok(default_model, ids, tmp_path), lines, "SmolLM2 detokenize(tokenize(x))")
    assert_same(lines, detok(default_model, ids, tmp_path, "--stream"), lines, "SmolLM2 streamed pieces")


def test_bpe_speed(default_model, corpus, tmp_path):
    lines, _ = corpus
    prose = [s for s in lines if s.isascii() and "<|" not in s]
    text = "\n".join(prose * (1 + 120_000 // sum(len(s) + 1 for s in prose)))
    path = tmp_path / "prose.txt"
    path.write_text(text)
    r = json.loads(run_tool("tokenize_tool", default_model, "--bench", path))
    print(f"tokenized {r['tokens']} tokens ({r['bytes']} bytes) in {r['seconds']:.3f} s")
    assert r["tokens"] >= 20_000
    assert r["seconds"] < 1.0


# ---- SPM: a SentencePiece model trained here

@pytest.fixture(scope="module")
def spm_model(corpus, tmp_path_factory):
    import gguf
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    lines, _ = corpus
    train = [s for line in lines[::2] for s in line.split("\n") if s.strip()]
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(train), model_writer=proto, model_type="bpe", vocab_size=3000,
        byte_fallback=True, split_digits=True, character_coverage=0.9995, allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity", add_dummy_prefix=True,
        hard_vocab_limit=False, num_threads=1, control_symbols=SPECIALS[:2], user_defined_symbols=SPECIALS[2:],
        minloglevel=2)
    d = tmp_path_factory.mktemp("spm")
    (d / "tokenizer.model").write_bytes(proto.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    m = pb.ModelProto()
    m.ParseFromString(proto.getvalue())

    # As llama.cpp's convert_hf_to_gguf.py (_create_vocab_sentencepiece) writes it.
    piece_type = {pb.ModelProto.SentencePiece.NORMAL: 1, pb.ModelProto.SentencePiece.UNKNOWN: 2,
                  pb.ModelProto.SentencePiece.CONTROL: 3, pb.ModelProto.SentencePiece.USER_DEFINED: 4,
                  pb.ModelProto.SentencePiece.UNUSED: 5, pb.ModelProto.SentencePiece.BYTE: 6}
    path = d / "spm.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list([p.piece.encode() for p in m.pieces])
    w.add_token_scores([p.score for p in m.pieces])
    w.add_token_types([piece_type[p.type] for p in m.pieces])
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.add_tensor("dummy.weight", np.zeros(32, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, d, sp


def test_spm_matches_hf(spm_model, corpus):
    from tokenizers import normalizers
    from transformers import LlamaTokenizerFast

    path, d, _ = spm_model
    lines, corpus_path = corpus
    hf = LlamaTokenizerFast.from_pretrained(str(d), legacy=True, add_bos_token=False, add_eos_token=False)
    # transformers 5 ignores legacy=True for the tokenizers backend (Metaspace, prepend_scheme="always",
    # which skips the ▁ when a segment already starts with a space). Llama 2's own tokenizer.json and
    # transformers 4's legacy conversion use this normalizer, and that is what llama.cpp matches.
    bt = hf.backend_tokenizer
    bt.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    bt.pre_tokenizer = None
    want = [hf.encode(s, add_special_tokens=False) for s in lines]
    assert_same(lines, ours(path, corpus_path), want, "SPM ids vs transformers LlamaTokenizerFast")


def test_spm_matches_sentencepiece(spm_model, corpus):
    path, _, sp = spm_model
    lines, corpus_path = corpus
    got = ours(path, corpus_path)
    # SentencePiece adds its space once per text, llama.cpp also after each special token: compare the
    # lines without one.
    keep = [i for i, s in enumerate(lines) if not any(t in s for t in SPECIALS)]
    assert len(keep) >= 2000
    assert_same([lines[i] for i in keep], [got[i] for i in keep], [sp.encode(lines[i]) for i in keep],
                "SPM ids vs sentencepiece")


def test_spm_detokenize_round_trip(spm_model, corpus, tmp_path):
    path, _, _ = spm_model
    lines, corpus_path = corpus
    ids = ours(path, corpus_path)
    # llama.cpp puts a space before the text after each special token and removes only the first.
    split = re.compile("(" + "|".join(map(re.escape, SPECIALS)) + ")")
    want = []
    for s in lines:
        parts = split.split(s)
        want.append("".join(" " + p if i > 0 and i % 2 == 0 and p else p for i, p in enumerate(parts)))
    assert_same(lines, detok(path, ids, tmp_path), want, "SPM detokenize(tokenize(x))")
    streamed = detok(path, ids, tmp_path, "--stream")
    # The streamed pieces keep the first space (the printer sees a BOS before them in practice).
    assert_same(lines, streamed, [(" " + w if not w.startswith(tuple(SPECIALS)) and s else w)
                                  for s, w in zip(lines, want)], "SPM streamed pieces")
