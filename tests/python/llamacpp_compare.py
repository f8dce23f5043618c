"""qrun against llama.cpp (through the llama-cpp-python bindings) on one GGUF model: tokenization, greedy
continuations, logits and, for the default (fast) numerics, perplexity and KL divergence. Used by
test_llamacpp_parity.py and, standalone, by scripts/compare-llamacpp.sh:

    python tests/python/llamacpp_compare.py [--model M] [--bin build/bin] [--out table.md]

prints a Markdown table and a final "N passed, N failed" line; the exit status is non-zero on a failure.

How each side is driven:
- llama.cpp: Llama(model, n_ctx, n_threads, logits_all=True); the prompt is tokenized with BOS as the
  vocabulary says (add_bos=True only adds it when tokenizer.ggml.add_bos_token is true) and
  special=False; greedy = eval(prompt) (one batch) then argmax of the last row, token by token (one
  token per eval), until an end-of-generation token or n_predict tokens.
- qrun: `qrun -m M -p PROMPT -n N --temp 0 --numerics llama.cpp --verbose --dump-logits F`: stdout is the
  detokenized prompt and continuation (must equal llama.cpp's pieces byte for byte), --verbose logs the
  prompt's and the generated token ids (must equal llama.cpp's), F holds the logits of every prompt
  position (one batch), then of each decode step (one token): every row must have the bits of llama.cpp's
  row of the same position (logits_all keeps them all), the decode rows as far as both evaluated the same
  tokens. --numerics llama.cpp computes llama.cpp's bits (QE_PARITY_NUMERICS=fast measures this engine's
  own kernels instead).
- perplexity: llama.cpp's tools/perplexity method re-done in Python on llama.cpp's logits (chunks of
  n_ctx tokens, BOS as first token of each chunk when the vocabulary adds BOS, score the second half,
  -log softmax accumulated in double), against `qrun --perplexity -f TEXT -c N`'s last line
  "Final estimate: PPL = X +/- Y". The first chunk is also a long batch for the exact check: `qrun
  --token-ids CHUNK -n 0 -b n_ctx --numerics llama.cpp` must give llama.cpp's rows of it bit for bit.
- KL divergence of qrun's default numerics against llama.cpp, llama-perplexity's statistic on its scored
  positions (the second half of each chunk) of the first KLD_CHUNKS perplexity chunks: each chunk's rows
  from `qrun --token-ids CHUNK -n 0 --dump-logits` next to llama.cpp's rows of the same chunk, one chunk
  at a time, log-softmax in double; mean KLD and same-top-1 fraction with their standard errors
  (llama-perplexity's formulas).
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
PPL_TOL = 0.005      # relative
PPL_MIN_TOKENS = 20000
KLD_CHUNKS = 20      # perplexity chunks whose scored positions the KL divergence covers (5100 at -c 512)
KLD_MAX = 0.005      # mean KL divergence (nats) of the default numerics against llama.cpp
TOP1_MIN = 0.95      # fraction of those positions where both argmaxes agree
# Rows of logits per step of the float64 arithmetic: a few MB at a time, which the allocator reuses.
# Whole chunks (100-200 MB per temporary) came fresh from the kernel each time, and zeroing their pages
# took a quarter of the perplexity comparison's time.
ROWS_PER_STEP = 8

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
class RowsCompared:
    """qrun's logit rows against llama.cpp's, compared as float32 bit patterns."""
    n: int = 0
    equal: int = 0                   # rows whose every logit has llama.cpp's bits
    first_diff: str = ""             # the first row that does not, and how many of its logits differ
    rel_max_diff: float = float("nan")  # max |Δ| over the rows, as a fraction of llama.cpp's row range

    @property
    def ok(self) -> bool:
        return self.equal == self.n

    def cell(self) -> str:
        yn = "y" if self.ok else "**n**"
        return f"{yn} ({self.n})" if self.ok else f"{yn} ({self.equal} of {self.n}; {self.first_diff})"

    def detail(self, what: str) -> str:
        first = f" (first: {self.first_diff})" if self.first_diff else ""
        return f"{what}: {self.equal} of {self.n} rows bit-identical{first}, max|Δ|/range {self.rel_max_diff:.3g}"


@dataclasses.dataclass
class PromptResult:
    prompt: str
    n_prompt: int = 0
    tokens_equal: bool = False       # prompt tokenization
    text_equal: bool = False         # qrun's stdout == llama.cpp's prompt + continuation
    ids_equal: bool = False          # qrun's generated ids (--verbose) == llama.cpp's
    n_gen: int = 0
    first_divergence: str = "-"
    batch: RowsCompared = dataclasses.field(default_factory=RowsCompared)   # prompt rows, one batch
    decode: RowsCompared = dataclasses.field(default_factory=RowsCompared)  # the decode steps, one token each
    note: str = ""

    @property
    def gen_equal(self) -> bool:
        return self.text_equal and self.ids_equal

    @property
    def rel_max_diff(self) -> float:
        return max(self.batch.rel_max_diff, self.decode.rel_max_diff)


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
class KldResult:
    """KL(llama.cpp || qrun) per scored position, accumulated chunk by chunk; llama-perplexity's statistics
    (the standard error of a mean is sd / sqrt(n - 1), of the same-top-1 fraction sqrt(p (1 - p) / (n - 1)))."""
    n_chunks: int = 0
    n: int = 0
    sum_kld: float = 0.0
    sum_kld2: float = 0.0
    max_kld: float = 0.0
    n_same_top1: int = 0

    def add(self, ref: np.ndarray, ours: np.ndarray, rows_per_step: int = ROWS_PER_STEP) -> None:
        for i in range(0, len(ref), rows_per_step):
            lr, lo = log_softmax64(ref[i:i + rows_per_step]), log_softmax64(ours[i:i + rows_per_step])
            kld = (np.exp(lr) * (lr - lo)).sum(axis=1)
            self.n += len(kld)
            self.sum_kld += float(kld.sum())
            self.sum_kld2 += float((kld * kld).sum())
            self.max_kld = max(self.max_kld, float(kld.max()))
            self.n_same_top1 += int((lr.argmax(axis=1) == lo.argmax(axis=1)).sum())
        self.n_chunks += 1

    @property
    def mean(self) -> float:
        return self.sum_kld / self.n if self.n else float("nan")

    @property
    def mean_err(self) -> float:
        var = self.sum_kld2 / self.n - self.mean ** 2 if self.n > 1 else 0.0
        return float(np.sqrt(var / (self.n - 1))) if var > 0 else 0.0

    @property
    def top1(self) -> float:
        return self.n_same_top1 / self.n if self.n else float("nan")

    @property
    def top1_err(self) -> float:
        p = self.top1
        return float(np.sqrt(p * (1 - p) / (self.n - 1))) if self.n > 1 else float("nan")


@dataclasses.dataclass
class Report:
    model: str
    llama_version: str
    prompts: list[PromptResult]
    ppl: PplResult | None
    kld: KldResult | None
    long_batch: RowsCompared | None  # the first perplexity chunk in one batch, qrun --numerics NUMERICS
    checks: list[Check]
    seconds: float = 0.0

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    @property
    def n_failed(self) -> int:
        return sum(not c.ok for c in self.checks)

    def table(self) -> str:
        yn = lambda b: "y" if b else "**n**"  # noqa: E731
        lines = [f"qrun vs llama.cpp (llama-cpp-python {self.llama_version}) on {self.model}, {N_THREADS} "
                 f"thread{'s' if N_THREADS != 1 else ''}"]
        if self.prompts:
            lines[0] += (f": greedy {N_PREDICT}-token continuations, n_ctx {N_CTX}, qrun --numerics {NUMERICS}; "
                         "logits compared as float32 bits: every prompt position (one batch) and every decode "
                         "step (one token)")
            lines += ["", "| # | prompt | prompt tokens equal | generated tokens equal | first divergence | "
                          "prompt logits equal (rows) | decode logits equal (rows) | max\\|Δ\\|/range |",
                      "|---|---|---|---|---|---|---|---|"]
        for i, r in enumerate(self.prompts):
            shown = r.prompt.replace("\n", "\\n").replace("\t", "\\t").replace("|", "\\|")
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            gen = f"{yn(r.gen_equal)} ({r.n_gen})"
            if not r.gen_equal:
                gen += f" text {yn(r.text_equal)}, ids {yn(r.ids_equal)}"
            lines.append(f"| {i} | `{shown}` | {yn(r.tokens_equal)} ({r.n_prompt}) | {gen} | {r.first_divergence} | "
                         f"{r.batch.cell()} | {r.decode.cell()} | {r.rel_max_diff:.3g} |")
        if self.long_batch is not None:
            lines += ["", f"The first perplexity chunk in one batch ({self.long_batch.n} positions, qrun --numerics "
                          f"{NUMERICS}): logits bit-identical {self.long_batch.cell()}, max|Δ|/range "
                          f"{self.long_batch.rel_max_diff:.3g}"]
        if self.ppl is not None:
            p = self.ppl
            ours = f"{p.ours:.4f} ± {p.ours_err:.5f}" if p.ours == p.ours else p.ours_note
            delta = f"{100 * p.rel:+.3f}%" if p.ours == p.ours else "-"
            lines += ["", f"Perplexity (qrun's default numerics): {p.n_tokens} tokens (pydoc_data topics, sha256 "
                          f"{p.text_sha[:12]}), -c {p.n_ctx}, {p.n_chunks} chunks", "",
                      "| PPL ours | PPL llama.cpp | Δ% |", "|---|---|---|",
                      f"| {ours} | {p.llama:.4f} ± {p.llama_err:.5f} | {delta} |"]
        if self.kld is not None:
            k = self.kld
            lines += ["", f"KL divergence of qrun's default numerics from llama.cpp: the first {k.n_chunks} chunks, "
                          f"{k.n} scored positions", "",
                      "| mean KLD | max KLD | same top-1 |", "|---|---|---|",
                      f"| {k.mean:.6f} ± {k.mean_err:.6f} | {k.max_kld:.4f} | "
                      f"{100 * k.top1:.2f}% ± {100 * k.top1_err:.2f}% |"]
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


def llama_greedy(llm, prompt: list[int], n_predict: int) -> tuple[list[int], np.ndarray]:
    """(continuation ids, logits of every evaluated position: the prompt's (one batch), then each decode
    step's)."""
    llm.reset()
    llm.eval(prompt)
    out: list[int] = []
    while len(out) < n_predict:
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        if llama_is_eog(llm, tok):
            break
        out.append(tok)
        if len(out) < n_predict:
            llm.eval([tok])
    return out, np.array(llm.scores[:llm.n_tokens], dtype=np.float32)


def llama_chunk_logits(llm, tokens: list[int]) -> np.ndarray:
    """The logits of every position: a view of llm's own rows, valid until its next eval (a copy of
    these 100 MB per chunk costs more in page faults than the copy itself)."""
    llm.reset()
    llm.eval(tokens)
    return llm.scores[:len(tokens)]


def log_softmax64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x -= x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def nll_of_chunk(logits: np.ndarray, tokens: list[int] | np.ndarray, first: int) -> np.ndarray:
    """-log p(tokens[i+1]) for i in [first, n-2], as tools/perplexity/perplexity.cpp log_softmax does it:
    max in float, sum of expf(l - max) in double, logit - max - log(sum)."""
    x = np.asarray(logits[first:len(tokens) - 1], dtype=np.float32)
    tgt = np.asarray(tokens[first + 1:], dtype=np.int64)
    m = x.max(axis=1)
    s = np.empty(len(x))
    e = np.empty((ROWS_PER_STEP, x.shape[1]), dtype=np.float32)
    for i in range(0, len(x), ROWS_PER_STEP):
        k = min(ROWS_PER_STEP, len(x) - i)
        np.exp(np.subtract(x[i:i + k], m[i:i + k, None], out=e[:k]), out=e[:k])
        s[i:i + k] = e[:k].astype(np.float64).sum(axis=1)
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
    """(stdout bytes, prompt ids and generated ids from --verbose, logits of every prompt position, then of
    each decode step)."""
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


def qrun_logits(qrun, model, ids: list[int], tmp: pathlib.Path, n_vocab: int, n_batch: int,
                numerics: str = NUMERICS) -> np.ndarray:
    """qrun's logits at every position of a given token sequence (no tokenization, no BOS), n_batch
    tokens per forward pass."""
    dump = tmp / "forced_logits.f32"
    p = run_qrun(qrun, "-m", model, "--token-ids", ",".join(map(str, ids)), "-n", 0, "-t", N_THREADS,
                 "-c", max(N_CTX, len(ids)), "-b", n_batch, "--numerics", numerics, "--dump-logits", dump)
    if p.returncode != 0:
        raise RuntimeError(f"qrun --token-ids exited {p.returncode}: {p.stderr.decode(errors='replace')[-800:]}")
    logits = read_logits(dump, n_vocab)
    dump.unlink()
    if logits.shape[0] != len(ids):
        raise RuntimeError(f"qrun dumped {logits.shape[0]} logit rows for {len(ids)} tokens")
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

def compare_rows(got: np.ndarray, want: np.ndarray, first_position: int = 0) -> RowsCompared:
    """Rows of the same positions (the first at first_position) compared as float32 bits."""
    if got.shape != want.shape:
        raise RuntimeError(f"qrun gave {got.shape[0]} logit rows of {got.shape[1]}, llama.cpp {want.shape}")
    if len(want) == 0:
        return RowsCompared(rel_max_diff=0.0)
    differ = got.view(np.uint32) != want.view(np.uint32)
    bad = np.flatnonzero(differ.any(axis=1))
    span = (want.max(axis=1) - want.min(axis=1)).astype(np.float64)
    rel = np.abs(got.astype(np.float64) - want).max(axis=1) / span
    first = f"position {first_position + bad[0]}: {np.count_nonzero(differ[bad[0]])} logits" if len(bad) else ""
    return RowsCompared(n=len(want), equal=len(want) - len(bad), first_diff=first, rel_max_diff=float(rel.max()))


def compare_prompt(llm, qrun, model, prompt: str, n_predict: int, tmp: pathlib.Path) -> PromptResult:
    n_vocab = llm.n_vocab()
    r = PromptResult(prompt)
    ids = llama_tokenize(llm, prompt)
    r.n_prompt = n = len(ids)
    gen, ref_logits = llama_greedy(llm, ids, n_predict)
    r.n_gen = len(gen)

    stdout, our_ids, our_gen, our_logits = qrun_generate(qrun, model, prompt, n_predict, tmp, n_vocab)
    r.tokens_equal = our_ids == ids
    if not r.tokens_equal:
        r.note = f"prompt ids: ours {our_ids} llama.cpp {ids}"

    # Text: qrun echoes the prompt's pieces, streams the continuation's, ends with a newline; invalid
    # UTF-8 becomes U+FFFD on both sides.
    want = (llama_pieces(llm, ids) + llama_pieces(llm, gen)).decode("utf-8", errors="replace") + "\n"
    got = stdout.decode("utf-8", errors="replace")
    r.text_equal = got == want

    # Ids: qrun's --verbose log of what it generated.
    r.ids_equal = our_gen == gen
    same = 0  # generated tokens both sides share from the start
    if our_gen is None:
        r.first_divergence = "qrun did not log its generated ids"
    elif not r.ids_equal:
        same = next((i for i, (a, b) in enumerate(zip(our_gen, gen)) if a != b), min(len(our_gen), len(gen)))
        r.first_divergence = f"token {same}: ours {our_gen[same:same + 1]}, llama.cpp {gen[same:same + 1]}"
    elif not r.text_equal:
        k = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        r.first_divergence = f"text char {k}: ours {got[k:k + 20]!r}, llama.cpp {want[k:k + 20]!r}"
    else:
        same = len(gen)

    # Logits: the prompt's rows (one batch on both sides), then each decode step's (one token), as far as
    # both evaluated the same tokens.
    if not r.tokens_equal:
        r.batch = RowsCompared(n=n, first_diff="not compared: the prompt tokens differ")
        r.decode = RowsCompared(n=len(gen), first_diff="not compared: the prompt tokens differ")
        return r
    r.batch = compare_rows(our_logits[:n], ref_logits[:n])
    n_ours, n_ref = len(our_logits) - n, len(ref_logits) - n
    m = min(same, n_ours, n_ref)
    r.decode = compare_rows(our_logits[n:n + m], ref_logits[n:n + m], first_position=n)
    if r.ids_equal and n_ours != n_ref:
        r.decode.n = max(n_ours, n_ref)
        r.decode.first_diff = f"qrun dumped {n_ours} decode steps, llama.cpp evaluated {n_ref}"
    return r


def compare_perplexity(llm, qrun, model, tmp: pathlib.Path, n_ctx: int = N_CTX,
                       kld_chunks: int = KLD_CHUNKS) -> tuple[PplResult, KldResult, RowsCompared]:
    """llama.cpp's perplexity and qrun's (default numerics) on the text; on the way (one chunk's logits of
    each side in memory), the KL divergence of qrun's default numerics on the first kld_chunks chunks, and
    the first chunk's rows with NUMERICS (a full n_ctx batch) compared bit for bit."""
    text = perplexity_text()
    text_file = tmp / "ppl.txt"
    text_file.write_bytes(text.encode("utf-8"))
    tokens = llama_tokenize(llm, text)  # perplexity.cpp: common_tokenize(ctx, prompt, add_special=true)
    res = PplResult(n_tokens=len(tokens), n_ctx=n_ctx, text_sha=hashlib.sha256(text.encode()).hexdigest())
    if len(tokens) < PPL_MIN_TOKENS:
        raise RuntimeError(f"the perplexity text has {len(tokens)} tokens, fewer than {PPL_MIN_TOKENS}")
    kld = KldResult()
    long_batch = None
    first = n_ctx // 2  # llama-perplexity's scored positions: first .. n_ctx - 2

    def chunk_logits(chunk: list[int]) -> np.ndarray:
        nonlocal long_batch
        ref = llama_chunk_logits(llm, chunk)
        if long_batch is None:
            long_batch = compare_rows(qrun_logits(qrun, model, chunk, tmp, llm.n_vocab(), n_ctx), ref)
        if kld.n_chunks < kld_chunks:
            ours = qrun_logits(qrun, model, chunk, tmp, llm.n_vocab(), n_batch=n_ctx, numerics="fast")
            kld.add(ref[first:n_ctx - 1], ours[first:n_ctx - 1])
        return ref

    res.llama, res.llama_err, res.n_chunks = perplexity_from_chunks(chunk_logits, tokens, n_ctx,
                                                                    llama_bos_if_added(llm))
    try:
        res.ours, res.ours_err = qrun_perplexity(qrun, model, text_file, n_ctx)
    except Unavailable as e:
        res.ours_note = str(e)
    return res, kld, long_batch


def compare(model: pathlib.Path = DEFAULT_MODEL, bin_dir: pathlib.Path = DEFAULT_BIN,
            n_predict: int = N_PREDICT, prompts: list[str] | None = None, ppl: bool = True,
            log=lambda s: print(s, file=sys.stderr, flush=True)) -> Report:
    """The whole comparison; ppl=False skips perplexity and KL divergence."""
    import llama_cpp
    t0 = time.monotonic()
    qrun = bin_dir / "qrun"
    if not qrun.exists():
        raise FileNotFoundError(f"{qrun} is not built (set QE_BIN)")
    llm = load_llama(model)
    checks: list[Check] = []
    results = []
    p = kld = long_batch = None
    with tempfile.TemporaryDirectory(prefix="qe-parity-") as d:
        tmp = pathlib.Path(d)
        for i, prompt in enumerate(PROMPTS if prompts is None else prompts):
            r = compare_prompt(llm, qrun, model, prompt, n_predict, tmp)
            log(f"prompt {i}: tokens {r.tokens_equal}, generation text {r.text_equal} ids {r.ids_equal} "
                f"({r.n_gen} tokens) {r.first_divergence}; {r.batch.detail('prompt')}; "
                f"{r.decode.detail('decode')} {r.note}")
            results.append(r)
            checks += [Check(f"tokenize[{i}]", r.tokens_equal, r.note),
                       Check(f"greedy[{i}]", r.gen_equal,
                             f"{r.first_divergence}; text equal {r.text_equal}, ids equal {r.ids_equal}"),
                       Check(f"logits[{i}]", r.batch.ok, r.batch.detail("prompt, one batch")),
                       Check(f"decode[{i}]", r.decode.ok, r.decode.detail("decode steps, one token each"))]
        if ppl:
            log("perplexity and KL divergence ...")
            p, kld, long_batch = compare_perplexity(llm, qrun, model, tmp)
            log(f"perplexity: llama.cpp {p.llama:.4f} +/- {p.llama_err:.5f}, ours "
                f"{p.ours:.4f} +/- {p.ours_err:.5f} {p.ours_note}")
            log(f"KL divergence: {kld.mean:.6f} +/- {kld.mean_err:.6f}, same top-1 {100 * kld.top1:.2f}% "
                f"+/- {100 * kld.top1_err:.2f}% over {kld.n} positions of {kld.n_chunks} chunks")
            if p.ours != p.ours:
                checks.append(Check("perplexity", False, p.ours_note))
            else:
                checks.append(Check("perplexity", p.rel <= PPL_TOL,
                                    f"ours {p.ours:.4f}, llama.cpp {p.llama:.4f}, Δ {100 * p.rel:.3f}% "
                                    f"(limit {100 * PPL_TOL}%)"))
            checks.append(Check("logits[chunk 0]", long_batch.ok,
                                long_batch.detail("first perplexity chunk, one batch")))
            enough = kld.n_chunks >= KLD_CHUNKS
            checks += [Check("kld", enough and kld.mean <= KLD_MAX,
                             f"mean KLD {kld.mean:.6f} ± {kld.mean_err:.6f} over {kld.n_chunks} chunks "
                             f"(limit {KLD_MAX}, {KLD_CHUNKS} chunks)"),
                       Check("top1", enough and kld.top1 >= TOP1_MIN,
                             f"same top-1 {100 * kld.top1:.2f}% ± {100 * kld.top1_err:.2f}% "
                             f"(limit {100 * TOP1_MIN}%)")]
    return Report(model.name, llama_cpp.__version__, results, p, kld, long_batch, checks, time.monotonic() - t0)


def compare_and_keep_table(model: pathlib.Path, bin_dir: pathlib.Path, table_name: str, **kw) -> Report:
    """compare(), with its table printed and written to $QE_PARITY_TABLES/table_name, else beside the
    binaries (CI runs the tests once, through the README's test command, and keeps build/*.md)."""
    rep = compare(model, bin_dir, **kw)
    table = rep.table()
    print("\n" + table)
    out_dir = pathlib.Path(os.environ.get("QE_PARITY_TABLES") or bin_dir.parent)
    (out_dir / table_name).write_text(table)
    return rep


def check_names(n_prompts: int = len(PROMPTS), ppl: bool = True) -> list[str]:
    names = [f"{k}[{i}]" for i in range(n_prompts) for k in ("tokenize", "greedy", "logits", "decode")]
    return names + (["logits[chunk 0]", "perplexity", "kld", "top1"] if ppl else [])


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
