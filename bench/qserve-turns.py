#!/usr/bin/env python3
"""qserve's prompt cache over a chat: time to first token of each turn of a conversation, with the
cache (a slot keeps the K/V of the last turn, so only what the turn adds is evaluated) and without it
("cache_prompt": false: the whole conversation evaluated again), as a Markdown table. Not a test: run it
on a quiet machine.

  bench/qserve-turns.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf] [--turns 6] [--tokens 64]
                        [--rounds 3] [-t N]

Each round is a new conversation (its system prompt names the round, so no round reuses another's
turns). Each turn sends the conversation so far twice, streaming and greedy: with the cache, then
without it; both must give the same reply (the cache never changes a request's tokens), which becomes
the assistant's message of the next turn. qserve runs with -np 2: the uncached request takes the other
slot (the least recently used), so the conversation's own slot keeps its cache. Medians per turn."""

from __future__ import annotations

import argparse
import http.client
import json
import pathlib
import statistics
import time

from qserve_launch import REPO, qserve
TOPICS = ["the sea", "mountains", "the moon", "rivers", "forests", "deserts", "volcanoes", "glaciers"]


def chat(port: int, messages: list, tokens: int, cache: bool) -> tuple[str, float, dict]:
    """(reply, seconds to its first text, usage) of one streamed greedy chat completion."""
    body = json.dumps({"messages": messages, "max_tokens": tokens, "temperature": 0, "stream": True,
                       "cache_prompt": cache})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    res = conn.getresponse()
    if res.status != 200:
        raise SystemExit(f"qserve answered {res.status}: {res.read()[:200]!r}")
    text, first, usage = "", None, {}
    for raw in res:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            first = first or time.perf_counter() - start
            text += chunk["choices"][0]["delta"]["content"]
        usage = chunk.get("usage") or usage
    conn.close()
    return text, first or time.perf_counter() - start, usage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--tokens", type=int, default=64, help="max_tokens of each reply")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-t", "--threads", type=int, default=0)
    a = ap.parse_args()
    with qserve(a.model, "-np", "2", "-c", "4096", "-t", str(a.threads)) as (_, port):
        chat(port, [{"role": "user", "content": "Warm up."}], 4, False)
        rows = [dict(prompt=[], cached=[], hit=[], miss=[]) for _ in range(a.turns)]
        for rnd in range(a.rounds):
            messages = [{"role": "system", "content": f"Conversation {rnd}. You are a helpful assistant."}]
            for turn in range(a.turns):
                topic = TOPICS[turn % len(TOPICS)]
                messages.append({"role": "user", "content": f"Tell me something about {topic}, in detail."})
                reply, hit, usage = chat(port, messages, a.tokens, True)
                again, miss, usage_miss = chat(port, messages, a.tokens, False)
                if again != reply:
                    raise SystemExit(f"round {rnd} turn {turn}: the reply differs without the cache")
                r = rows[turn]
                r["prompt"].append(usage["prompt_tokens"])
                r["cached"].append(usage.get("prompt_tokens_details", {}).get("cached_tokens", 0))
                r["hit"].append(hit * 1e3)
                r["miss"].append(miss * 1e3)
                assert usage_miss.get("prompt_tokens_details", {}).get("cached_tokens", 0) == 0
                messages.append({"role": "assistant", "content": reply})
        print(f"model {pathlib.Path(a.model).name}, {a.tokens} tokens per reply, {a.rounds} rounds, "
              f"medians; replies identical with and without the cache\n")
        print("| turn | prompt tokens | cached | TTFT cached ms | TTFT uncached ms | ratio |")
        print("|---:|---:|---:|---:|---:|---:|")
        med = statistics.median
        for turn, r in enumerate(rows):
            hit, miss = med(r["hit"]), med(r["miss"])
            print(f"| {turn + 1} | {med(r['prompt']):.0f} | {med(r['cached']):.0f} | {hit:.0f} | {miss:.0f} "
                  f"| {miss / hit:.1f}x |")


if __name__ == "__main__":
    main()
