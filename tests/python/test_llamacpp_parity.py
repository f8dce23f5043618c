"""qrun matches llama.cpp (llama-cpp-python, built for the AVX2 level) on the default model
(SmolLM2-135M-Instruct Q4_1), with qrun --numerics llama.cpp: the same prompt tokens and the same greedy
128-token continuations of 16 varied prompts (ids and text), and logits with llama.cpp's float32 bits (Δ = 0,
compared bit for bit) at every compared position: each prompt position (the prompt in one batch) and each
decode step of the continuation (one token at a time). Perplexity, KL divergence and the long batch are
test_llamacpp_perplexity.py's.

Also, for q5_0, q5_1, iq4_nl, q2_K, q3_K, q4_K, q5_K, q6_K and iq4_xs: llama-quantize's file of the type
(a synthetic model), every prompt position's logits identical to llama.cpp's, in a batch and one token at
a time.

Also the sampler's logit bias and penalties (repeat, frequency, presence, in their window): greedy
continuations with them, qrun's flags (llama-cli's names) against llama.cpp's own samplers
(llama_sampler_init_logit_bias and llama_sampler_init_penalties, chained as common_sampler chains them),
token for token.

Also grammar-constrained sampling: greedy continuations under GBNF grammars (JSON, a yes/no answer, a
numbered list, multibyte characters, the syntax's comments and escapes), qrun --grammar-file against
llama.cpp's grammar sampler (llama_sampler_init_grammar), token for token.

Skips only when llama_cpp is not importable (scripts/compare-llamacpp.sh installs it, built from source);
the type checks also when llama-quantize is not built.
The comparison of the 16 prompts runs once (llamacpp_compare.compare); each check is one test. The
Markdown table is written to $QE_PARITY_TABLES/llamacpp-parity.md (scripts/compare-llamacpp.sh prints it),
else to build/llamacpp-parity.md.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import pathlib
import re
import subprocess

import numpy as np
import pytest

from conftest import optional_reference, synthetic_llama

optional_reference("llama_cpp")

import llamacpp_compare as cmp  # noqa: E402

BIN = pathlib.Path(os.environ.get("QE_BIN", cmp.REPO / "build" / "bin"))


@pytest.fixture(scope="module")
def report(default_model):
    return cmp.compare_and_keep_table(default_model, BIN, "llamacpp-parity.md", ppl=False)


@pytest.mark.parametrize("name", cmp.check_names(ppl=False))
def test_parity(report, name):
    check = report.check(name)
    assert check.ok, f"{name}: {check.detail}"


@pytest.mark.parametrize("prompt", [1, 3])
def test_llamacpp_numerics_do_not_depend_on_threads(default_model, tmp_path, prompt):
    """qrun --numerics llama.cpp gives the same text and logit bits with 1 thread and with 2, prompt (one
    batch) and decode: ctest runs the comparison above with one (QE_PARITY_THREADS=1), so this carries
    its bits over to two."""
    runs = []
    for threads in (1, 2):
        dump = tmp_path / f"logits-{threads}.f32"
        q = cmp.run_qrun(BIN / "qrun", "-m", default_model, "-p", cmp.PROMPTS[prompt], "-n", 32, "--temp", "0",
                         "-t", threads, "-c", cmp.N_CTX, "--numerics", "llama.cpp", "--dump-logits", dump)
        assert q.returncode == 0, q.stderr.decode(errors="replace")[-2000:]
        runs.append((q.stdout, np.fromfile(dump, dtype=np.uint32)))
    assert runs[0][0] == runs[1][0], "the text differs between 1 and 2 threads"
    assert runs[0][1].size > 0 and np.array_equal(runs[0][1], runs[1][1]), \
        f"logits differ between 1 and 2 threads: {np.count_nonzero(runs[0][1] != runs[1][1])} values"


# ---- q5_0, q5_1, iq4_nl and the k-quants: llama.cpp-quantized files, logits equal to llama.cpp's bits.
# The synthetic `tiny` llama (scripts/make-synthetic-llama.py: dim 256, ff 512, 2 layers, vocab 512,
# untied) has every row a multiple of 256 (k-quants keep their type) and of 8 (q4_K and iq4_nl are
# repacked, as llama.cpp does for such matrices); llama-quantize --pure makes every matrix, embedding and
# output the one type. 11 prompt tokens in one batch give q4_K's repacked GEMM (tokens 0-7) and GEMV
# (8-10); with batches of one token every matrix takes llama.cpp's single-token path.

LLAMA_QUANTIZE = pathlib.Path(os.environ.get("QE_LLAMACPP_TOOLS", cmp.REPO / ".venv" / "llama.cpp-tools")) / "bin" \
    / "llama-quantize"
KQUANT_TYPES = ["Q6_K", "Q4_K", "Q5_0", "Q5_K", "Q5_1", "IQ4_NL", "Q3_K", "Q2_K", "IQ4_XS"]
KQUANT_IDS = [3, 97, 300, 45, 12, 511, 256, 7, 400, 199, 64]
KQUANT_CTX = 64


@pytest.fixture(scope="module")
def tiny_f32(tmp_path_factory):
    mod = synthetic_llama()
    path = tmp_path_factory.mktemp("kquant_parity") / "tiny-f32.gguf"
    mod.write_model(str(path), mod.SHAPES["tiny"], "tiny", "f32", 20240701)
    return path


def _llama_logits(model: pathlib.Path, n_batch: int) -> np.ndarray:
    from llama_cpp import Llama
    llm = Llama(str(model), n_ctx=KQUANT_CTX, n_batch=n_batch, n_ubatch=n_batch, n_threads=cmp.N_THREADS,
                n_threads_batch=cmp.N_THREADS, logits_all=True, seed=0, verbose=False)
    llm.eval(KQUANT_IDS)
    out = np.array(llm.scores[:len(KQUANT_IDS)], dtype=np.float32)
    llm.close()
    return out


@pytest.mark.parametrize("n_batch", [64, 1], ids=["batch", "single"])
@pytest.mark.parametrize("qtype", KQUANT_TYPES)
def test_llamacpp_quantized_logits_equal(tiny_f32, tmp_path, qtype, n_batch):
    """qrun --numerics llama.cpp on llama-quantize's --pure file of the type: every position's logits
    identical to llama.cpp's (Δ = 0)."""
    if not LLAMA_QUANTIZE.exists():
        pytest.skip(f"{LLAMA_QUANTIZE} is not built (scripts/build-llamacpp-tools.sh)")
    if not (BIN / "qrun").exists():
        pytest.fail(f"{BIN / 'qrun'} is not built (set QE_BIN)")
    model = tmp_path / f"tiny-{qtype}.gguf"
    p = subprocess.run([str(LLAMA_QUANTIZE), "--pure", str(tiny_f32), str(model), qtype, "2"], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    want = _llama_logits(model, n_batch)
    dump = tmp_path / "logits.f32"
    q = cmp.run_qrun(BIN / "qrun", "-m", model, "--token-ids", ",".join(map(str, KQUANT_IDS)), "-n", 0,
                     "-t", cmp.N_THREADS, "-c", KQUANT_CTX, "-b", n_batch, "--numerics", "llama.cpp",
                     "--dump-logits", dump)
    assert q.returncode == 0, q.stderr.decode(errors="replace")[-2000:]
    got = cmp.read_logits(dump, want.shape[1])
    assert got.shape == want.shape
    diff = np.abs(got.astype(np.float64) - want)
    print(f"{qtype} n_batch={n_batch}: max |Δ| {diff.max():.3g} over {got.size} logits")
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), \
        f"{qtype} n_batch={n_batch}: max |Δ| {diff.max():.3g}, {np.count_nonzero(diff)} of {got.size} logits differ"


# ---- The sampler's logit bias and penalties against llama.cpp's. Greedy, so that only the bias and the
# penalties decide between tokens; with --numerics llama.cpp the logits are llama.cpp's bits, so any
# difference in the penalties' arithmetic, window or order shows as a different token. -1 for the window
# is the whole context (llama-cli passes n_ctx for it).

PENALTY_PROMPTS = ["The three most important inventions of the nineteenth century were",
                   "List every planet of the solar system, one per line:\n"]
PENALTY_SETTINGS = [
    dict(repeat=1.25, last_n=48, freq=0.6, present=0.4, bias=[(260, -math.inf), (33615, 3.0), (13, -1.5)]),
    dict(repeat=1.0, last_n=-1, freq=-0.3, present=1.1, bias=[(28, 2.5), (198, -0.75)]),
]
PENALTY_N = 64


def _llama_greedy_sampled(llm, prompt: list[int], setting: dict) -> list[int]:
    import llama_cpp
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    bias = setting["bias"]
    arr = (llama_cpp.llama_logit_bias * len(bias))(*[llama_cpp.llama_logit_bias(t, b) for t, b in bias])
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_logit_bias(llm.n_vocab(), len(bias), arr))
    last_n = setting["last_n"] if setting["last_n"] >= 0 else cmp.N_CTX
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_penalties(
        last_n, setting["repeat"], setting["freq"], setting["present"]))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
    for t in prompt:  # llama-cli accepts the prompt's tokens too
        llama_cpp.llama_sampler_accept(chain, t)
    llm.reset()
    llm.eval(prompt)
    out: list[int] = []
    while len(out) < PENALTY_N:
        tok = int(llama_cpp.llama_sampler_sample(chain, llm.ctx, -1))  # also accepts it
        if cmp.llama_is_eog(llm, tok):
            break
        out.append(tok)
        llm.eval([tok])
    llama_cpp.llama_sampler_free(chain)
    return out


@pytest.fixture(scope="module")
def parity_llm(default_model):
    llm = cmp.load_llama(default_model)
    yield llm
    llm.close()


@pytest.mark.parametrize("setting", range(len(PENALTY_SETTINGS)))
@pytest.mark.parametrize("prompt", range(len(PENALTY_PROMPTS)))
def test_llamacpp_penalties_and_logit_bias(parity_llm, default_model, prompt, setting):
    if not (BIN / "qrun").exists():
        pytest.fail(f"{BIN / 'qrun'} is not built (set QE_BIN)")
    st = PENALTY_SETTINGS[setting]
    text = PENALTY_PROMPTS[prompt]
    want = _llama_greedy_sampled(parity_llm, cmp.llama_tokenize(parity_llm, text), st)
    bias_flags = [a for t, b in st["bias"] for a in ("-l", f"{t}{'-inf' if b == -math.inf else f'{b:+g}'}")]
    got = _qrun_greedy_ids(default_model, text, PENALTY_N, "--repeat-penalty", st["repeat"], "--repeat-last-n",
                           st["last_n"], "--frequency-penalty", st["freq"], "--presence-penalty", st["present"],
                           *bias_flags)
    plain = _qrun_greedy_ids(default_model, text, PENALTY_N)
    assert got != plain, "the setting changes nothing: a test that could not fail"
    _assert_same_ids(got, want)


def _qrun_greedy_ids(model, text: str, n: int, *flags) -> list[int]:
    """qrun's greedy generated ids with llama.cpp's numerics and these flags."""
    q = cmp.run_qrun(BIN / "qrun", "-m", model, "-p", text, "-n", n, "--temp", "0", "-t", cmp.N_THREADS,
                     "-c", cmp.N_CTX, "--numerics", "llama.cpp", "--verbose", *flags)
    assert q.returncode == 0, q.stderr.decode(errors="replace")[-2000:]
    return _generated_ids(q)


def _assert_same_ids(got: list[int], want: list[int]) -> None:
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    assert got == want, f"qrun and llama.cpp part at generated token {first}: qrun {got}, llama.cpp {want}"


def _generated_ids(q: subprocess.CompletedProcess) -> list[int]:
    g = re.search(r"^qrun: generated: (\d+) tokens:([ \d]*)$", q.stderr.decode(errors="replace"), re.M)
    assert g, q.stderr.decode(errors="replace")[-2000:]
    return [int(t) for t in g.group(2).split()]


# ---- Grammar-constrained sampling (--grammar-file, llama-cli's name) against llama.cpp's grammar sampler
# (llama_sampler_init_grammar), greedy. common_sampler samples from the chain, checks the token against the
# grammar and, when it is rejected, applies the grammar to all the candidates and samples again; for greedy
# that is the grammar applied first (both take the first maximum of the tokens the grammar allows). Only
# the generated tokens are accepted into the grammar (llama-cli does not accept the prompt's), an
# end-of-generation token ends the generation (allowed only where the grammar can end; neither side lists
# it). With --numerics llama.cpp the logits are llama.cpp's bits, so any difference in what the grammar
# allows (a token's piece, a partial UTF-8 sequence, a repetition's bounds) shows as a different token.

GRAMMAR_N = 64

# A JSON value, llama.cpp's json.gbnf in substance: the whitespace after a value is bounded (one newline and
# at most 20 blanks), so the model cannot run on in whitespace.
GRAMMAR_JSON = r'''
root    ::= object
value   ::= object | array | string | number | ("true" | "false" | "null") ws
object  ::= "{" ws ( member ("," ws member)* )? "}" ws
member  ::= string ":" ws value
array   ::= "[" ws ( value ("," ws value)* )? "]" ws
string  ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )* "\"" ws
number  ::= "-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]{1,3} )? ws
ws      ::= | " " | "\n" [ \t]{0,20}
'''

# Once "yes." or "no." is out the grammar is complete: only an end-of-generation token remains.
GRAMMAR_YES_NO = r'''
root ::= ("yes" | "no") "."
'''

# Three numbered items: ranges, a negated class and every repetition operator.
GRAMMAR_LIST = r'''
root ::= "Items:\n" item{3}
item ::= [1-9] "." " "+ [A-Z] [^\n.]{2,40} "."? [ ]* "\n"
'''

# Multibyte characters in literals and classes: "é" and an emoji the vocabulary splits into tokens that end
# inside a UTF-8 sequence, a class of accented letters and a range of emoji.
GRAMMAR_UTF8 = r'''
root  ::= "Café " word (" " word){1,4} "! 🙂" [😀-🙏]{1,3} "\n"
word  ::= [a-zà-ÿ]{1,10}
'''

# The syntax: comments, an alternative in parentheses across lines, \x, \u, \n and \" escapes, and "."
# (any character, a newline too).
GRAMMAR_SYNTAX = r'''
# A quoted answer and an optional remark.
root   ::= (
    "\x41nswer: \""     # "A" by its code
    (
        [^"\\\n]        # anything but a quote, a backslash, a newline
      | "\\" .          # or an escaped character
    ){1,30}
    "\""
  ) "\n" remark?        # the remark may follow
remark ::= "Caf\u00e9" . [a-z ]{0,20} "\n"
'''


def _json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _fullmatch(pattern: str):
    return lambda text: re.fullmatch(pattern, text, re.S) is not None


# name: (grammar, prompts, whether an output is in the grammar's language: Python's json, or a regex of it).
# Every prompt's output ends where the grammar lets it (an end-of-generation token) within GRAMMAR_N tokens.
GRAMMAR_CASES = {
    "json": (GRAMMAR_JSON, ["A JSON object describing a person, with name, age and city: ",
                            "A JSON description of a person (name, age, a list of hobbies, and an address object):\n"],
             _json_object),
    "yes_no": (GRAMMAR_YES_NO, ["Q: Is the sky blue?\nA (yes or no): ",
                                "Question: Can fish climb trees? Answer with yes or no.\nAnswer: "],
               _fullmatch(r"(yes|no)\.")),
    "list": (GRAMMAR_LIST, ["Three fruits that are red:\n"],
             _fullmatch(r"Items:\n([1-9]\. +[A-Z][^\n.]{2,40}\.? *\n){3}")),
    "utf8": (GRAMMAR_UTF8, ["Write a short French sentence about coffee:\n"],
             _fullmatch(r"Café [a-zà-ÿ]{1,10}( [a-zà-ÿ]{1,10}){1,4}! 🙂[\U0001F600-\U0001F64F]{1,3}\n")),
    "syntax": (GRAMMAR_SYNTAX, ["Give a one-word answer. What color is the sky?\n",
                                "Quote a famous line from Shakespeare.\n"],
               _fullmatch(r'Answer: "([^"\\\n]|\\.){1,30}"\n(Café.[a-z ]{0,20}\n)?')),
}


def _llama_grammar_greedy(llm, prompt: list[int], grammar: str, n_predict: int) -> list[int]:
    import llama_cpp
    grmr = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar.encode("utf-8"), b"root")
    assert grmr, "llama.cpp rejects the grammar"
    greedy = llama_cpp.llama_sampler_init_greedy()
    n_vocab = llm.n_vocab()
    data = np.zeros(n_vocab, dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
    assert data.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)
    llm.reset()
    llm.eval(prompt)
    out: list[int] = []
    try:
        while len(out) < n_predict:
            # common_sampler's candidates: every token in id order, the last position's logits
            data["id"] = np.arange(n_vocab, dtype=np.int32)
            data["logit"] = llm.scores[llm.n_tokens - 1]
            data["p"] = 0.0
            cur = llama_cpp.llama_token_data_array(data.ctypes.data_as(llama_cpp.llama_token_data_p), n_vocab, -1,
                                                   False)
            llama_cpp.llama_sampler_apply(grmr, ctypes.byref(cur))
            llama_cpp.llama_sampler_apply(greedy, ctypes.byref(cur))
            assert cur.selected >= 0
            tok = int(cur.data[cur.selected].id)
            if cmp.llama_is_eog(llm, tok):
                break
            llama_cpp.llama_sampler_accept(grmr, tok)
            out.append(tok)
            if len(out) < n_predict:
                llm.eval([tok])
    finally:
        llama_cpp.llama_sampler_free(greedy)
        llama_cpp.llama_sampler_free(grmr)
    return out


@pytest.mark.parametrize("case,prompt", [(c, i) for c, v in GRAMMAR_CASES.items() for i in range(len(v[1]))],
                         ids=[f"{c}-{i}" for c, v in GRAMMAR_CASES.items() for i in range(len(v[1]))])
def test_llamacpp_grammar(parity_llm, default_model, tmp_path, case, prompt):
    """qrun --grammar-file, greedy: the tokens of llama.cpp's grammar sampler, and a grammar that changes
    the output."""
    if not (BIN / "qrun").exists():
        pytest.fail(f"{BIN / 'qrun'} is not built (set QE_BIN)")
    grammar, prompts, in_language = GRAMMAR_CASES[case]
    text = prompts[prompt]
    want = _llama_grammar_greedy(parity_llm, cmp.llama_tokenize(parity_llm, text), grammar, GRAMMAR_N)
    out = cmp.llama_pieces(parity_llm, want).decode("utf-8", errors="replace")
    print(f"{case}-{prompt}: {len(want)} tokens: {out!r}")
    # The reference itself: it ended where the grammar lets it, and its text is in the grammar's language.
    assert len(want) < GRAMMAR_N, f"llama.cpp's output did not end in {GRAMMAR_N} tokens: {out!r}"
    assert in_language(out), f"llama.cpp's output is not in the grammar's language: {out!r}"
    gfile = tmp_path / f"{case}.gbnf"
    gfile.write_bytes(grammar.encode("utf-8"))
    got = _qrun_greedy_ids(default_model, text, GRAMMAR_N, "--grammar-file", gfile)
    plain = _qrun_greedy_ids(default_model, text, GRAMMAR_N)
    assert got != plain, "the grammar changes nothing: a test that could not fail"
    _assert_same_ids(got, want)


# ---- JSON schemas (qrun -j, llama-cli's flag): llama.cpp's grammar sampler runs the grammar that
# tests/tools/json_schema_tool writes for the schema (the text of llama.cpp's own converter:
# test_json_schema_grammar.py), so the tokens must be qrun's. Arrays and objects put several parses on
# the stacks at once (another item or the end, another property or the end).
SCHEMA_CASES = {
    "array": ({"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 3},
              "Three colors as a JSON list:"),
    "object": ({"type": "object", "properties": {"name": {"type": "string"},
                                                 "age": {"type": "integer", "minimum": 0, "maximum": 30},
                                                 "color": {"enum": ["black", "white", "orange"]},
                                                 "indoor": {"type": "boolean"}},
                "required": ["name", "age", "color"]},
               "A JSON object describing a cat:"),
}


@pytest.mark.parametrize("case", SCHEMA_CASES)
def test_llamacpp_json_schema(parity_llm, default_model, case):
    """qrun -j SCHEMA, greedy: the tokens of llama.cpp's grammar sampler on the schema's grammar."""
    if not (BIN / "qrun").exists():
        pytest.fail(f"{BIN / 'qrun'} is not built (set QE_BIN)")
    schema, text = SCHEMA_CASES[case]
    tool = pathlib.Path(os.environ.get("QE_TEST_BIN", cmp.REPO / "build" / "tests")) / "json_schema_tool"
    g = subprocess.run([str(tool)], input=json.dumps(schema), capture_output=True, text=True, timeout=60)
    assert g.returncode == 0, g.stderr
    want = _llama_grammar_greedy(parity_llm, cmp.llama_tokenize(parity_llm, text), g.stdout, GRAMMAR_N)
    out = cmp.llama_pieces(parity_llm, want).decode("utf-8", errors="replace")
    value = json.loads(out)  # the whole value came (then, at most, the whitespace the grammar allows)
    assert isinstance(value, dict if case == "object" else list), out
    _assert_same_ids(_qrun_greedy_ids(default_model, text, GRAMMAR_N, "-j", json.dumps(schema)), want)


# ---- The whole set: at several points of llama.cpp's constrained generation (its own tokens accepted
# so far), the tokens llama.cpp's grammar sampler sets to -inf over the whole vocabulary are the ones
# qrun's matcher refuses (tests/tools/grammar_mask_tool). The greedy runs above see one token a step;
# this sees every token's verdict: pieces cut inside a character, control tokens as their text, and
# the end-of-generation tokens (allowed only on a whole sentence).

def _llama_rejected(llm, grammar: str, accepted: list[int]) -> list[int]:
    import llama_cpp
    grmr = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar.encode("utf-8"), b"root")
    assert grmr, "llama.cpp rejects the grammar"
    try:
        for t in accepted:
            llama_cpp.llama_sampler_accept(grmr, t)
        n_vocab = llm.n_vocab()
        data = np.zeros(n_vocab, dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
        data["id"] = np.arange(n_vocab, dtype=np.int32)
        cur = llama_cpp.llama_token_data_array(data.ctypes.data_as(llama_cpp.llama_token_data_p), n_vocab, -1, False)
        llama_cpp.llama_sampler_apply(grmr, ctypes.byref(cur))
        return [int(i) for i in np.nonzero(np.isneginf(data["logit"]))[0]]
    finally:
        llama_cpp.llama_sampler_free(grmr)


@pytest.mark.parametrize("case", list(GRAMMAR_CASES) + [f"schema_{c}" for c in SCHEMA_CASES])
def test_llamacpp_grammar_masks(parity_llm, default_model, tmp_path, case):
    """Every token's verdict, at 6-8 points of each case's generation, equals llama.cpp's."""
    test_bin = pathlib.Path(os.environ.get("QE_TEST_BIN", cmp.REPO / "build" / "tests"))
    if case.startswith("schema_"):
        schema, text = SCHEMA_CASES[case[len("schema_"):]]
        g = subprocess.run([str(test_bin / "json_schema_tool")], input=json.dumps(schema), capture_output=True,
                           text=True, timeout=60)
        assert g.returncode == 0, g.stderr
        grammar = g.stdout
    else:
        grammar, prompts, _ = GRAMMAR_CASES[case]
        text = prompts[0]
    gen = _llama_grammar_greedy(parity_llm, cmp.llama_tokenize(parity_llm, text), grammar, GRAMMAR_N)
    gfile = tmp_path / "g.gbnf"
    gfile.write_bytes(grammar.encode("utf-8"))
    cuts = sorted({0, 1, 2, 3, len(gen) // 3, len(gen) // 2, len(gen) - 1, len(gen)})
    for k in cuts:
        want = _llama_rejected(parity_llm, grammar, gen[:k])
        q = subprocess.run([str(test_bin / "grammar_mask_tool"), str(default_model), str(gfile),
                            ",".join(map(str, gen[:k]))], capture_output=True, text=True, timeout=120)
        assert q.returncode == 0, q.stderr
        got = [int(t) for t in q.stdout.split()]
        assert len(want) not in (0, parity_llm.n_vocab()) or k == len(gen), "a point where nothing is decided"
        only_ours, only_llama = sorted(set(got) - set(want)), sorted(set(want) - set(got))
        assert got == want, (f"after {k} tokens: refused by qrun only {only_ours[:20]}, by llama.cpp only "
                             f"{only_llama[:20]}")
