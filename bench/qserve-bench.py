#!/usr/bin/env python3
"""qserve's scaling: aggregate decode tokens/s with 1, 2, 4, 8 parallel streams, time to first token
(p50/p95) and the server's RSS, as a Markdown table. Not a test: run it on a quiet machine.

  bench/qserve-bench.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf] [--tokens 64] [--rounds 2]

Each round sends, for each N in turn, N streaming completions at once (greedy unless --temperature,
different prompts, max_tokens --tokens) to a qserve started with -np 8. Aggregate t/s (wall) = generated tokens of the round /
the round's wall time from the first request sent to the last token received, prefill included; decode
t/s = the tokens after each stream's first / the time from the first first-token to the last token (the
prefill is TTFT's column); steady t/s = the tokens received while every stream of the round was decoding
(from the last stream's first token to the first stream's end) / that time. The first request reaches
the engine alone and takes its first token a step before the others, whose prompts are evaluated in the
next step: "decode" counts that step's prefill, "steady" leaves it and the stragglers' tail out.

The client shares the server's two cores, so it is kept light: one thread reads every stream of a round
through a selector (--client select, the default), as a load generator (wrk, k6) would. --client threads
runs one Python thread per stream instead (http.client), whose wake-ups and GIL hand-offs took CPU from
the server: 8 streams 1710 against 1770 t/s steady, medians of 8 rounds each, interleaved (2-vCPU Xeon).
Below the table: qbench's roofline (FMA and DRAM read on every physical core) before and after the rounds."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pathlib
import selectors
import socket
import statistics
import subprocess
import threading
import time

from qserve_launch import BIN, REPO, qserve


TEMPERATURE: float | None = 0.0  # --temperature; None: the server's sampling defaults (llama-server's)


def request_body(prompt: str, tokens: int) -> str:
    body = {"prompt": prompt, "max_tokens": tokens, "stream": True}
    if TEMPERATURE is not None:
        body["temperature"] = TEMPERATURE
    if TEMPERATURE != 0:
        body["seed"] = 1234
    return json.dumps(body)


def summary(start: float, end: float, events: list) -> dict:
    """A stream's times from its events (arrival time, `data: {...}` line), parsed after the round: the
    client shares the server's cores, and parsing 8 streams' events as they came took CPU from it."""
    first, n_gen, arrivals = None, 0, []
    for at, line in events:
        chunk = json.loads(line[6:])
        if chunk["choices"] and chunk["choices"][0].get("text"):
            arrivals.append(at)  # one token's text (a token of no text sends none)
            first = first or at
        if "usage" in chunk:
            n_gen = chunk["usage"]["completion_tokens"]
    return dict(start=start, first=first or end, ttft=(first or end) - start, end=end, n_gen=n_gen,
                arrivals=arrivals)


def stream(port: int, prompt: str, tokens: int, out: dict) -> None:
    """One stream on its own thread (--client threads)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", request_body(prompt, tokens), {"Content-Type": "application/json"})
    r = conn.getresponse()
    events = []
    for line in r:
        if line.startswith(b"data: ") and not line.startswith(b"data: [DONE]"):
            events.append((time.perf_counter(), line.rstrip(b"\n")))
    out.update(summary(t0, time.perf_counter(), events))
    conn.close()


class Stream:
    """One stream's side of select_round: its socket, and the response as it has come so far."""

    def __init__(self, port: int, prompt: str, tokens: int):
        body = request_body(prompt, tokens).encode()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.start = time.perf_counter()
        self.sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                          b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        self.sock.setblocking(False)
        self.raw = b""     # received, not yet taken apart
        self.body = b""    # de-chunked, not yet split into events
        self.head = True   # still in the response's headers
        self.events = []
        self.end = None

    def take(self, data: bytes, now: float) -> bool:
        """Adds what recv gave; true once the response is whole (its last chunk, or the socket closed)."""
        if not data:
            self.end = now
            return True
        self.raw += data
        if self.head:
            i = self.raw.find(b"\r\n\r\n")
            if i < 0:
                return False
            if not self.raw.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(self.raw[:200].decode(errors="replace"))
            self.raw, self.head = self.raw[i + 4:], False
        while (i := self.raw.find(b"\r\n")) >= 0:  # chunked transfer encoding: size line, data, CRLF
            size = int(self.raw[:i].split(b";")[0], 16)
            if len(self.raw) < i + 2 + size + 2:
                break
            self.body += self.raw[i + 2:i + 2 + size]
            self.raw = self.raw[i + 2 + size + 2:]
            if size == 0:
                self.end = now
                break
        *whole, self.body = self.body.split(b"\n\n")
        self.events += [(now, e) for e in whole if e.startswith(b"data: ") and e != b"data: [DONE]"]
        return self.end is not None


def select_round(port: int, prompts: list, tokens: int) -> list:
    """Every stream of a round from this one thread (--client select)."""
    streams = [Stream(port, p, tokens) for p in prompts]
    with selectors.DefaultSelector() as sel:
        for st in streams:
            sel.register(st.sock, selectors.EVENT_READ, st)
        left = len(streams)
        while left:
            for key, _ in sel.select():
                st = key.data
                if st.take(st.sock.recv(1 << 16), time.perf_counter()):
                    sel.unregister(st.sock)
                    st.sock.close()
                    left -= 1
    return [summary(st.start, st.end, st.events) for st in streams]


def thread_round(port: int, prompts: list, tokens: int) -> list:
    outs = [{} for _ in prompts]
    threads = [threading.Thread(target=stream, args=(port, p, tokens, o)) for p, o in zip(prompts, outs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outs


def machine() -> str:
    """The machine's speed now, from qbench's roofline on every physical core: a shared VM's cores slow
    down and speed up with its neighbours, and the rounds' ratios move with them (the 8 streams' GEMMs are
    bound by the cores, one stream's GEMVs more by memory), so the table says what the machine gave
    before and after its rounds."""
    try:
        r = json.loads(subprocess.run([str(BIN / "qbench"), "--roofline"], capture_output=True, text=True,
                                      timeout=120, check=True).stdout)
        return (f"f32 FMA {r['fma_gflops'][-1]:.0f} GFLOP/s, DRAM read {r['dram_read_gbs'][-1]:.1f} GB/s "
                f"({r['threads']} threads)")
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
        return f"roofline not measured ({e.__class__.__name__})"


def rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--streams", default="1,2,4,8")
    ap.add_argument("-t", "--threads", type=int, default=0)
    ap.add_argument("--client", choices=["select", "threads"], default="select",
                    help="one thread reading every stream (default), or a thread per stream")
    ap.add_argument("--temperature", default="0",
                    help="the requests' temperature (default 0: greedy); 'server': leave it and the other "
                         "sampling fields to the server's defaults (temperature 0.8, top-k 40, top-p 0.95, "
                         "min-p 0.05), seeded")
    a = ap.parse_args()
    global TEMPERATURE
    TEMPERATURE = None if a.temperature == "server" else float(a.temperature)
    counts = [int(x) for x in a.streams.split(",")]
    before = machine()
    with qserve(a.model, "-np", str(max(counts)), "-c", "512", "-t", str(a.threads)) as (proc, port):
        stream(port, "Warm up:", 8, {})
        print(f"model {pathlib.Path(a.model).name}, {a.tokens} tokens per stream, {a.rounds} rounds, "
              f"client {a.client}, temperature {a.temperature}, load {os.getloadavg()[0]:.2f}\n")
        print("| streams | aggregate t/s (wall) | decode t/s (first token on) | steady t/s (all decoding) "
              "| per stream t/s | TTFT p50 ms | TTFT p95 ms | RSS MiB |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        # Rounds interleave the stream counts (1, 2, 4, 8, 1, 2, ...), so that a drift in the machine's
        # speed (a shared VM's neighbours) reaches every count alike; medians per count.
        rates = {n: [] for n in counts}
        ttfts = {n: [] for n in counts}
        decode = {n: [] for n in counts}
        steady = {n: [] for n in counts}
        rss = {n: 0.0 for n in counts}
        for rnd in range(a.rounds):
            for n in counts:
                prompts = [f"Story {rnd}-{i}: count from one to one hundred in words: one, two," for i in range(n)]
                outs = (select_round if a.client == "select" else thread_round)(port, prompts, a.tokens)
                wall = max(o["end"] for o in outs) - min(o["start"] for o in outs)
                rates[n].append(sum(o["n_gen"] for o in outs) / wall)
                # Decode alone: the tokens after each stream's first, over the span from the first
                # first-token to the last token (the prompts' prefill is left out; TTFT reports it).
                span = max(o["end"] for o in outs) - min(o["first"] for o in outs)
                decode[n].append(sum(o["n_gen"] - 1 for o in outs) / span)
                # Steady: every stream decoding. Tokens that arrived after the window opened (the last
                # first token, itself excluded) and up to its close (the first stream's last token).
                lo, hi = max(o["first"] for o in outs), min(o["arrivals"][-1] for o in outs if o["arrivals"])
                if hi > lo:
                    got = sum(1 for o in outs for t in o["arrivals"] if lo < t <= hi)
                    steady[n].append(got / (hi - lo))
                ttfts[n] += [o["ttft"] * 1e3 for o in outs]
                if rnd == 0:  # after the first round of n, before any larger count has run
                    rss[n] = rss_mib(proc.pid)
        base = statistics.median(rates[counts[0]])
        dbase = statistics.median(decode[counts[0]])
        med = lambda v: statistics.median(v) if v else float("nan")
        sbase = med(steady[counts[0]])
        for n in counts:
            rate, drate, srate = statistics.median(rates[n]), statistics.median(decode[n]), med(steady[n])
            t = sorted(ttfts[n])
            p95 = t[min(len(t) - 1, round(0.95 * (len(t) - 1)))]
            print(f"| {n} | {rate:.1f} ({rate / base:.2f}x) | {drate:.1f} ({drate / dbase:.2f}x) "
                  f"| {srate:.1f} ({srate / sbase:.2f}x) | {rate / n:.1f} "
                  f"| {statistics.median(t):.0f} | {p95:.0f} | {rss[n]:.0f} |")
        print(f"\nmachine before the rounds: {before}\nmachine after them:       {machine()}")


if __name__ == "__main__":
    main()
