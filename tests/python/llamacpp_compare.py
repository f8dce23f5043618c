"""qrun against llama.cpp (through the llama-cpp-python bindings) on one GGUF model: tokenization, greedy
continuations, last-position logits and perplexity. Used by test_llamacpp_parity.py and, standalone, by
scripts/compare-llamacpp.sh:

    python tests/python/llamacpp_compare.py [--model M] [--bin build/bin] [--out table.md]

prints a Markdown table and a final "N passed, N failed" line; the exit status is non-zero on a failure.

How each side is driven:
- llama.cpp: Llama(model, n_ctx, n_threads, logits_all=True); the prompt is tokenized with BOS as the
  vocabulary says (add_bos=True only adds it when tokenizer.ggml.add_bos_token is true) and
  special=False; greedy = eval() then argmax of the last row, token by token, until an end-of-generation
  token or n_predict tokens.
- qrun: `qrun -m M -p PROMPT -n N --temp 0 --numerics llama.cpp --verbose --dump-logits F`: stdout is the
  detokenized prompt and continuation (must equal llama.cpp's pieces byte for byte), --verbose logs the
  prompt's and the generated token ids (must equal llama.cpp's), F holds the logits of every prompt
  position. --numerics llama.cpp computes llama.cpp's bits (QE_PARITY_NUMERICS=fast measures this engine's
  own kernels instead). Where the ids part, a teacher-forced run (`--token-ids prompt+continuation`) points
  at the first position whose argmax differs.
- perplexity: llama.cpp's tools/perplexity method re-done in Python on llama.cpp's logits (chunks of
  n_ctx tokens, BOS as first token of each chunk when the vocabulary adds BOS, score the second half,
  -log softmax accumulated in double), against `qrun --perplexity -f TEXT -c N`'s last line
  "Final estimate: PPL = X +/- Y".
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(os.environ.get("QE_SOURCE", pathlib.Path(__file__).resolve().parents[2]))
DEFAULT_MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))

N_PREDICT = 128
N_CTX = 512          # generation context (prompt + 128 fits) and perplexity chunk size
N_THREADS = int(os.environ.get("QE_PARITY_THREADS", "2"))  # both sides; results do not depend on it
# qrun's --numerics for the token and logit checks: llama.cpp (its bits, the acceptance line) or fast (this
# engine's own kernels, to see how far they are). Perplexity always runs with the default, fast.
NUMERICS = os.environ.get("QE_PARITY_NUMERICS", "llama.cpp")
TOP_K = 10
LOGIT_TOL = 0.01     # max |Δ| as a fraction of llama.cpp's logit range (max - min)
PPL_TOL = 0.005      # relative
PPL_MIN_TOKENS = 20000

# Varied prompts: facts, code, lists, dialogue, numbers, punctuation, whitespace runs, non-ASCII
# (French accents, German, CJK, emoji: multi-byte UTF-8 through the byte-level BPE).
PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Here is a list of the planets in the solar system:\n1.",
    "Q: What is 17 multiplied by 23?\nA:",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
    "In 1969, Neil Armstrong",
    "Photosynthesis is the process by which plants",
    "Le petit prince a dit: « Dessine-moi un mouton »,",
    "SELECT name, age FROM users WHERE",
    "Dear Sir or Madam,\n\nI am writing to",
    "   Leading spaces, tabs\tand  double  spaces,   then: ",
    "東京は日本の首都です。 Tokyo is",
    "The recipe calls for 2 cups of flour, 1½ teaspoons of salt and",
    "<html>\n<head>\n<title>",
    "Über die Brücke ging der Mann 😀 and then he said",
]


class Unavailable(Exception):
    """qrun lacks a feature a check needs (reported as a failure, not a skip)."""


@dataclasses.dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclasses.dataclass
class PromptResult:
    prompt: str
    n_prompt: int = 0
    tokens_equal: bool = False       # prompt tokenization
    text_equal: bool = False         # qrun's stdout == llama.cpp's prompt + continuation
    ids_equal: bool = False          # qrun's generated ids (--verbose) == llama.cpp's
    n_gen: int = 0
    first_divergence: str = "-"
    top10_equal: bool = False
    top10_order_equal: bool = False
    rel_max_diff: float = float("nan")
    note: str = ""

    @property
    def gen_equal(self) -> bool:
        return self.text_equal and self.ids_equal


@dataclasses.dataclass
class PplResult:
    n_tokens: int = 0
    n_ctx: int = 0
    n_chunks: int = 0
    text_sha: str = ""
    llama: float = float("nan")
    llama_err: float = float("nan")
    ours: float = float("nan")
    ours_err: float = float("nan")
    ours_note: str = ""

    @property
    def rel(self) -> float:
        return abs(self.ours - self.llama) / self.llama


@dataclasses.dataclass
class Report:
    model: str
    llama_version: str
    prompts: list[PromptResult]
    ppl: PplResult | None
    checks: list[Check]
    seconds: float = 0.0

    @property
    def n_failed(self) -> int:
        return sum(not c.ok for c in self.checks)

    def table(self) -> str:
        yn = lambda b: "y" if b else "**n**"  # noqa: E731
        lines = [f"qrun vs llama.cpp (llama-cpp-python {self.llama_version}) on {self.model}: greedy "
                 f"{N_PREDICT}-token continuations, n_ctx {N_CTX}, {N_THREADS} threads, qrun --numerics {NUMERICS}", "",
                 "| # | prompt | prompt tokens equal | generated tokens equal | first divergence | "
                 "top-10 equal | max\\|Δ\\|/range |",
                 "|---|---|---|---|---|---|---|"]
        for i, r in enumerate(self.prompts):
            shown = r.prompt.replace("\n", "\\n").replace("\t", "\\t").replace("|", "\\|")
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            gen = f"{yn(r.gen_equal)} ({r.n_gen})"
            if not r.gen_equal:
                gen += f" text {yn(r.text_equal)}, ids {yn(r.ids_equal)}"
            top = yn(r.top10_equal) + ("" if r.top10_order_equal or not r.top10_equal else " (order differs)")
            lines.append(f"| {i} | `{shown}` | {yn(r.tokens_equal)} ({r.n_prompt}) | {gen} | {r.first_divergence} | "
                         f"{top} | {r.rel_max_diff:.5f} |")
        if self.ppl is not None:
            p = self.ppl
            ours = f"{p.ours:.4f} ± {p.ours_err:.5f}" if p.ours == p.ours else p.ours_note
            delta = f"{100 * p.rel:+.3f}%" if p.ours == p.ours else "-"
            lines += ["", f"Perplexity: {p.n_tokens} tokens (pydoc_data topics, sha256 {p.text_sha[:12]}), "
                          f"-c {p.n_ctx}, {p.n_chunks} chunks", "",
                      "| PPL ours | PPL llama.cpp | Δ% |", "|---|---|---|",
                      f"| {ours} | {p.llama:.4f} ± {p.llama_err:.5f} | {delta} |"]
        failed = [c for c in self.checks if not c.ok]
        if failed:
            lines += ["", "Failures:"] + [f"- {c.name}: {c.detail}" for c in failed]
        lines += ["", f"{len(self.checks) - self.n_failed} passed, {self.n_failed} failed "
                      f"({self.seconds:.0f} s)"]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# llama.cpp side

def load_llama(model: pathlib.Path, n_ctx: int = N_CTX, n_threads: int = N_THREADS):
    from llama_cpp import Llama
    return Llama(str(model), n_ctx=n_ctx, n_batch=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                 logits_all=True, seed=0, verbose=False)


def llama_tokenize(llm, text: str) -> list[int]:
    return llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)


def llama_is_eog(llm, tok: int) -> bool:
    import llama_cpp
    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok))


def llama_pieces(llm, ids: list[int]) -> bytes:
    """Token pieces concatenated, control tokens as nothing: what qrun streams to stdout."""
    return b"".join(llm.detokenize([t], special=False) for t in ids)


def llama_greedy(llm, prompt: list[int], n_predict: int) -> tuple[list[int], np.ndarray, int | None]:
    """(continuation ids, logits of the last prompt position, the end-of-generation id that stopped
    it or None)."""
    llm.reset()
    llm.eval(prompt)
    last = np.array(llm.scores[len(prompt) - 1], dtype=np.float32)
    out: list[int] = []
    while len(out) < n_predict:
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        if llama_is_eog(llm, tok):
            return out, last, tok
        out.append(tok)
        if len(out) < n_predict:
            llm.eval([tok])
    return out, last, None


def llama_chunk_logits(llm, tokens: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(tokens)
    return np.array(llm.scores[:len(tokens)], dtype=np.float32)


def nll_of_chunk(logits: np.ndarray, tokens: list[int] | np.ndarray, first: int) -> np.ndarray:
    """-log p(tokens[i+1]) for i in [first, n-2], as tools/perplexity/perplexity.cpp log_softmax does it:
    max in float, sum of expf(l - max) in double, logit - max - log(sum)."""
    x = logits[first:len(tokens) - 1].astype(np.float32)
    tgt = np.asarray(tokens[first + 1:], dtype=np.int64)
    m = x.max(axis=1)
    s = np.exp(x - m[:, None]).astype(np.float64).sum(axis=1)
    picked = x[np.arange(len(tgt)), tgt]
    return -((picked - m).astype(np.float64) - np.log(s))


def perplexity_from_chunks(chunk_logits, tokens: list[int], n_ctx: int, bos: int | None):
    """llama.cpp's perplexity: chunk_logits(chunk_tokens) -> logits of every position; returns
    (ppl, error, n_chunk). `bos` replaces the first token of each chunk (None: the vocab adds none)."""
    n_chunk = len(tokens) // n_ctx
    first = n_ctx // 2
    nll = nll2 = 0.0
    count = 0
    for i in range(n_chunk):
        chunk = list(tokens[i * n_ctx:(i + 1) * n_ctx])
        if bos is not None:
            chunk[0] = bos
        v = nll_of_chunk(chunk_logits(chunk), tokens[i * n_ctx:(i + 1) * n_ctx], first)
        nll += float(v.sum())
        nll2 += float((v * v).sum())
        count += len(v)
    nll /= count
    nll2 /= count
    ppl = float(np.exp(nll))
    var = nll2 - nll * nll
    err = float(np.sqrt(var / (count - 1)) * ppl) if var > 0 else float("nan")
    return ppl, err, n_chunk


def llama_bos_if_added(llm) -> int | None:
    import llama_cpp
    vocab = llm._model.vocab
    return int(llama_cpp.llama_vocab_bos(vocab)) if llama_cpp.llama_vocab_get_add_bos(vocab) else None


def perplexity_text(max_chars: int = 100_000) -> str:
    """Long natural English that every Python has: the pydoc topics of this interpreter's stdlib (the
    Language Reference's prose), in key order, cut at a paragraph end; no trailing newline, since
    llama.cpp's -f drops one."""
    from pydoc_data.topics import topics
    text = "\n\n".join(topics[k].strip("\n") for k in sorted(topics))
    cut = text.rfind("\n\n", 0, max_chars)
    return text[:cut if cut > 0 else max_chars].rstrip("\n")


# ---------------------------------------------------------------------------------------------
# qrun side

def run_qrun(qrun: pathlib.Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(qrun), *map(str, args)], capture_output=True, timeout=timeout)


def read_logits(path: pathlib.Path, n_vocab: int) -> np.ndarray:
    return np.fromfile(path, dtype=np.float32).reshape(-1, n_vocab)


def qrun_generate(qrun, model, prompt: str, n_predict: int, tmp: pathlib.Path, n_vocab: int):
    """(stdout bytes, prompt ids and generated ids from --verbose, logits of every prompt position)."""
    dump = tmp / "prompt_logits.f32"
    p = run_qrun(qrun, "-m", model, "-p", prompt, "-n", n_predict, "--temp", "0", "-t", N_THREADS,
                 "-c", N_CTX, "--numerics", NUMERICS, "--verbose", "--dump-logits", dump)
    if p.returncode != 0:
        raise RuntimeError(f"qrun exited {p.returncode}: {p.stderr.decode(errors='replace')[-800:]}")
    m = re.search(r"^qrun: prompt: (\d+) tokens:([ \d]*)$", p.stderr.decode(errors="replace"), re.M)
    ids = [int(t) for t in m.group(2).split()] if m else []
    g = re.search(r"^qrun: generated: (\d+) tokens:([ \d]*)$", p.stderr.decode(errors="replace"), re.M)
    gen = [int(t) for t in g.group(2).split()] if g else None
    logits = read_logits(dump, n_vocab)
    dump.unlink()
    return p.stdout, ids, gen, logits


def qrun_forced_logits(qrun, model, ids: list[int], tmp: pathlib.Path, n_vocab: int) -> np.ndarray:
    """qrun's logits at every position of a given token sequence (no tokenization, no BOS)."""
    dump = tmp / "forced_logits.f32"
    p = run_qrun(qrun, "-m", model, "--token-ids", ",".join(map(str, ids)), "-n", 0, "-t", N_THREADS,
                 "-c", max(N_CTX, len(ids)), "--numerics", NUMERICS, "--dump-logits", dump)
    if p.returncode != 0:
        raise RuntimeError(f"qrun --token-ids exited {p.returncode}: {p.stderr.decode(errors='replace')[-800:]}")
    logits = read_logits(dump, n_vocab)
    dump.unlink()
    return logits


FINAL_RE = re.compile(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)")


def qrun_perplexity(qrun, model, text_file: pathlib.Path, n_ctx: int) -> tuple[float, float]:
    p = run_qrun(qrun, "-m", model, "--perplexity", "-f", text_file, "-c", n_ctx, "-t", N_THREADS,
                 timeout=1800)
    out = (p.stdout + p.stderr).decode(errors="replace")
    m = FINAL_RE.search(out)
    if p.returncode != 0 or not m:
        tail = out.strip().splitlines()[-1:] or [""]
        raise Unavailable(f"qrun --perplexity unavailable (exit {p.returncode}: {tail[0][:200]})")
    return float(m.group(1)), float(m.group(2))


# ---------------------------------------------------------------------------------------------

def compare_prompt(llm, qrun, model, prompt: str, n_predict: int, tmp: pathlib.Path) -> PromptResult:
    n_vocab = llm.n_vocab()
    r = PromptResult(prompt)
    ids = llama_tokenize(llm, prompt)
    r.n_prompt = len(ids)
    gen, ref_last, eog = llama_greedy(llm, ids, n_predict)
    r.n_gen = len(gen)

    stdout, our_ids, our_gen, our_prompt_logits = qrun_generate(qrun, model, prompt, n_predict, tmp, n_vocab)
    r.tokens_equal = our_ids == ids
    if not r.tokens_equal:
        r.note = f"prompt ids: ours {our_ids} llama.cpp {ids}"

    # Text: qrun echoes the prompt's pieces, streams the continuation's, ends with a newline; invalid
    # UTF-8 becomes U+FFFD on both sides.
    want = (llama_pieces(llm, ids) + llama_pieces(llm, gen)).decode("utf-8", errors="replace") + "\n"
    got = stdout.decode("utf-8", errors="replace")
    r.text_equal = got == want

    # Ids: qrun's --verbose log of what it generated. Where they part, teacher-forcing qrun along llama.cpp's
    # sequence names the first position whose argmax differs (a batch, so only a pointer: llama.cpp
    # decoded those positions one at a time).
    r.ids_equal = our_gen == gen
    if our_gen is None:
        r.first_divergence = "qrun did not log its generated ids"
    elif not r.ids_equal:
        k = next((i for i, (a, b) in enumerate(zip(our_gen, gen)) if a != b), min(len(our_gen), len(gen)))
        r.first_divergence = f"token {k}: ours {our_gen[k:k + 1]}, llama.cpp {gen[k:k + 1]}"
        forced = qrun_forced_logits(qrun, model, ids + gen, tmp, n_vocab)
        ours_next = forced[len(ids) - 1:].argmax(axis=1)
        want_next = gen + ([eog] if eog is not None else [])
        d = next((i for i, (a, b) in enumerate(zip(ours_next, want_next)) if int(a) != b), None)
        if d is not None:
            r.first_divergence += f" (teacher-forced: first argmax difference at token {d})"
    elif not r.text_equal:
        k = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        r.first_divergence = f"text char {k}: ours {got[k:k + 20]!r}, llama.cpp {want[k:k + 20]!r}"

    # Last prompt position: top-10 and max |Δ| relative to llama.cpp's range.
    if our_prompt_logits.shape[0] != len(ids):
        raise RuntimeError(f"qrun dumped {our_prompt_logits.shape[0]} logit rows for {len(ids)} prompt tokens")
    ours = our_prompt_logits[-1]
    top_ref = np.argsort(-ref_last, kind="stable")[:TOP_K]
    top_ours = np.argsort(-ours, kind="stable")[:TOP_K]
    r.top10_equal = set(top_ref.tolist()) == set(top_ours.tolist())
    r.top10_order_equal = top_ref.tolist() == top_ours.tolist()
    r.rel_max_diff = float(np.abs(ours - ref_last).max() / (ref_last.max() - ref_last.min()))
    return r


def compare_perplexity(llm, qrun, model, tmp: pathlib.Path, n_ctx: int = N_CTX) -> PplResult:
    text = perplexity_text()
    text_file = tmp / "ppl.txt"
    text_file.write_bytes(text.encode("utf-8"))
    tokens = llama_tokenize(llm, text)  # perplexity.cpp: common_tokenize(ctx, prompt, add_special=true)
    res = PplResult(n_tokens=len(tokens), n_ctx=n_ctx, text_sha=hashlib.sha256(text.encode()).hexdigest())
    if len(tokens) < PPL_MIN_TOKENS:
        raise RuntimeError(f"the perplexity text has {len(tokens)} tokens, fewer than {PPL_MIN_TOKENS}")
    res.llama, res.llama_err, res.n_chunks = perplexity_from_chunks(
        lambda chunk: llama_chunk_logits(llm, chunk), tokens, n_ctx, llama_bos_if_added(llm))
    try:
        res.ours, res.ours_err = qrun_perplexity(qrun, model, text_file, n_ctx)
    except Unavailable as e:
        res.ours_note = str(e)
    return res


def compare(model: pathlib.Path = DEFAULT_MODEL, bin_dir: pathlib.Path = DEFAULT_BIN,
            n_predict: int = N_PREDICT, prompts: list[str] | None = None, ppl: bool = True,
            log=lambda s: print(s, file=sys.stderr, flush=True)) -> Report:
    import llama_cpp
    t0 = time.monotonic()
    qrun = bin_dir / "qrun"
    if not qrun.exists():
        raise FileNotFoundError(f"{qrun} is not built")
    llm = load_llama(model)
    checks: list[Check] = []
    results = []
    with tempfile.TemporaryDirectory(prefix="qe-parity-") as d:
        tmp = pathlib.Path(d)
        for i, prompt in enumerate(PROMPTS if prompts is None else prompts):
            r = compare_prompt(llm, qrun, model, prompt, n_predict, tmp)
            log(f"prompt {i}: tokens {r.tokens_equal}, generation text {r.text_equal} ids {r.ids_equal} "
                f"({r.n_gen} tokens) {r.first_divergence}, top-10 {r.top10_equal}, max|Δ|/range "
                f"{r.rel_max_diff:.5f} {r.note}")
            results.append(r)
            checks += [Check(f"tokenize[{i}]", r.tokens_equal, r.note),
                       Check(f"greedy[{i}]", r.gen_equal,
                             f"{r.first_divergence}; text equal {r.text_equal}, ids equal {r.ids_equal}"),
                       Check(f"logits[{i}]", r.top10_equal and r.rel_max_diff <= LOGIT_TOL,
                             f"top-10 equal {r.top10_equal}, max|Δ|/range {r.rel_max_diff:.5f} (limit {LOGIT_TOL})")]
        p = None
        if ppl:
            log("perplexity ...")
            p = compare_perplexity(llm, qrun, model, tmp)
            log(f"perplexity: llama.cpp {p.llama:.4f} +/- {p.llama_err:.5f}, ours "
                f"{p.ours:.4f} +/- {p.ours_err:.5f} {p.ours_note}")
            if p.ours != p.ours:
                checks.append(Check("perplexity", False, p.ours_note))
            else:
                checks.append(Check("perplexity", p.rel <= PPL_TOL,
                                    f"ours {p.ours:.4f}, llama.cpp {p.llama:.4f}, Δ {100 * p.rel:.3f}% "
                                    f"(limit {100 * PPL_TOL}%)"))
    return Report(model.name, llama_cpp.__version__, results, p, checks, time.monotonic() - t0)


def check_names(n_prompts: int = len(PROMPTS), ppl: bool = True) -> list[str]:
    names = [f"{k}[{i}]" for i in range(n_prompts) for k in ("tokenize", "greedy", "logits")]
    return names + (["perplexity"] if ppl else [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=pathlib.Path, default=DEFAULT_MODEL)
    ap.add_argument("--bin", type=pathlib.Path, default=DEFAULT_BIN, help="where qrun is")
    ap.add_argument("--out", type=pathlib.Path, help="also write the table to this file")
    ap.add_argument("-n", "--n-predict", type=int, default=N_PREDICT)
    ap.add_argument("--no-ppl", action="store_true", help="skip the perplexity comparison")
    a = ap.parse_args(argv)
    rep = compare(a.model, a.bin, a.n_predict, ppl=not a.no_ppl)
    table = rep.table()
    print(table, end="")
    if a.out:
        a.out.write_text(table)
    return 1 if rep.n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
