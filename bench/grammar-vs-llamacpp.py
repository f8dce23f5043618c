#!/usr/bin/env python3
"""The cost of a grammar's verdict on the whole vocabulary (what a token the grammar refuses costs: the
row masked before the chain samples again), ours against llama.cpp's grammar sampler, on the same model's
vocabulary, the same grammar and the same text so far; each the median of --repeat runs, with the number
of tokens allowed (which must agree).

  .venv/bin/python bench/grammar-vs-llamacpp.py [--model M.gguf] [--repeat 20]

Needs llama-cpp-python (scripts/compare-llamacpp.sh) and build/tests/grammar_mask_tool."""

from __future__ import annotations

import argparse
import ctypes
import pathlib
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]

JSON = r'''root ::= object
value ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9]{1,15})? ws
ws ::= | " " | "\n" [ \t]{0,20}
'''
# (where, text so far) in llama.cpp's JSON grammar.
STATES = [("a key or the end", '{'), ("inside a string", '{"ab'), ("a value", '{"ab": '),
          ("an array's next value", '{"ab": [1, ')]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--repeat", type=int, default=20)
    a = ap.parse_args()
    import llama_cpp
    llm = llama_cpp.Llama(a.model, verbose=False, n_ctx=256)
    n = llm.n_vocab()
    gfile = REPO / "build" / "grammar-bench.gbnf"
    gfile.write_text(JSON)
    print(f"| where | allowed | ours ms | llama.cpp ms | llama.cpp / ours |")
    print("|---|---:|---:|---:|---:|")
    for where, text in STATES:
        ids = llm.tokenize(text.encode(), add_bos=False, special=False)
        g = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, JSON.encode(), b"root")
        for t in ids:
            llama_cpp.llama_sampler_accept(g, t)
        data = np.zeros(n, dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
        times = []
        for _ in range(a.repeat):
            data["id"] = np.arange(n, dtype=np.int32)
            data["logit"] = 0.0
            cur = llama_cpp.llama_token_data_array(data.ctypes.data_as(llama_cpp.llama_token_data_p), n, -1, False)
            t0 = time.perf_counter()
            llama_cpp.llama_sampler_apply(g, ctypes.byref(cur))
            times.append((time.perf_counter() - t0) * 1e3)
        llama_cpp.llama_sampler_free(g)
        theirs = int(np.isfinite(data["logit"]).sum())
        q = subprocess.run([str(REPO / "build" / "tests" / "grammar_mask_tool"), a.model, str(gfile),
                            ",".join(map(str, ids)), str(a.repeat)], capture_output=True, text=True, check=True)
        ours_ms = float(q.stderr.split("mask_ms")[1])
        allowed = n - len(q.stdout.split())
        if allowed != theirs:
            print(f"{where}: {allowed} allowed here, {theirs} by llama.cpp", file=sys.stderr)
            return 1
        ms = statistics.median(times)
        print(f"| {where} (`{text}`) | {allowed} | {ours_ms:.2f} | {ms:.2f} | {ms / ours_ms:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
