"""qserve's tool calls (OpenAI's "tools") against llama-server --jinja, both serving the default model
(SmolLM2-135M-Instruct Q4_1, whose ChatML template has no tool format: llama.cpp's generic one).

- The prompt: for requests with tools, tool choices, calls and tool results in the history, a response
  format, the text each server's /apply-template gives is the same, byte for byte.
- The reply: greedy, with qserve --numerics llama.cpp against llama-server built at the AVX2 level (the
  build scripts/build-llamacpp-tools.sh --with-python makes, as CI does), the same message: finish
  reason, content, and each call's name and arguments (the ids are random in both), and the same token
  counts, for replies that call a tool, answer, or are cut short by max_tokens at many points (a call
  or an answer healed where it stops, as llama.cpp heals it). Streamed, qserve's deltas add up to the
  same message.

Skips when llama-server is not built; the reply checks also when it is not the AVX2-level build."""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import platform
import subprocess
import tempfile
import time

import pytest

from conftest import REPO, optional_program
from qserve_process import Qserve, free_port

TOOLS_ROOT = pathlib.Path(os.environ.get("QE_LLAMACPP_TOOLS", REPO / ".venv" / "llama.cpp-tools"))
LLAMA_SERVER = optional_program(TOOLS_ROOT / "bin" / "llama-server", "llama-server")


def avx2_build() -> bool:
    """llama.cpp built at the AVX2 level on x86-64: the numbers qrun --numerics llama.cpp gives."""
    stamp = TOOLS_ROOT / "stamp"
    return (platform.machine() == "x86_64" and stamp.exists()
            and "-DGGML_NATIVE=OFF" in stamp.read_text() and "-DGGML_AVX512=OFF" in stamp.read_text())


class LlamaServer:
    def __init__(self, model: pathlib.Path):
        self.port = free_port()
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([str(LLAMA_SERVER), "-m", str(model), "--jinja", "--host", "127.0.0.1",
                                      "--port", str(self.port), "-np", "1", "-c", "2048", "-t", "2"],
                                     stdout=subprocess.DEVNULL, stderr=self.err)
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, f"llama-server exited {self.proc.returncode}:\n{self.log()}"
            try:
                if post(self.port, "/health", None, "GET")[0] == 200:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"llama-server did not answer /health:\n{self.log()}"
            time.sleep(0.2)

    def log(self) -> str:
        self.err.seek(0)
        return self.err.read().decode("utf-8", errors="replace")[-3000:]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def post(port: int, path: str, body: dict | None, method: str = "POST") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def post_json(port: int, path: str, body: dict) -> dict:
    status, data = post(port, path, body)
    assert status == 200, data[-1000:]
    return json.loads(data)


@pytest.fixture(scope="module")
def servers(default_model):
    ours = Qserve(default_model, "--numerics", "llama.cpp", "-np", "1", "-c", "2048", "-t", "2")
    theirs = LlamaServer(default_model)
    yield ours, theirs
    theirs.stop()
    assert ours.stop() == 0, ours.log()


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object",
                   "properties": {"city": {"type": "string", "description": "The city, e.g. Paris"},
                                  "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"]}}}
SEARCH = {"type": "function", "function": {
    "name": "search_web", "description": "Search the web \u2014 returns the top results (\u00e9t\u00e9, \u6771\u4eac).",
    "parameters": {"type": "object",
                   "properties": {"query": {"type": "string"},
                                  "max_results": {"type": "integer", "minimum": 1, "maximum": 10},
                                  "filters": {"type": "object", "properties": {}},
                                  "tags": {"type": "array", "items": {}}},
                   "required": ["query"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "description": "",
                                          "parameters": {"type": "object", "properties": {}}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
HISTORY = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the weather in Paris, and what time is it?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "18 degrees, sunny"},
    {"role": "assistant", "content": "Now the time.", "tool_calls": [
        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "not json"}}]},
    {"role": "tool", "tool_call_id": "call_2", "content": ""},
]
# An earlier answer in the generic format, which the model then follows with an answer of its own.
ANSWERED = [{"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "{\n  \"response\": \"Hello! How can I help you?\"\n}"}]
CAT = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name"]}

PROMPTS = {
    "tools": dict(messages=ASK, tools=[WEATHER, SEARCH, CLOCK]),
    "system": dict(messages=[{"role": "system", "content": "Be brief.\nAnswer in English."}, *ASK], tools=[WEATHER]),
    "history": dict(messages=HISTORY, tools=[WEATHER, CLOCK]),
    "history-without-tools": dict(messages=HISTORY),
    "choice-none": dict(messages=ASK, tools=[WEATHER], tool_choice="none"),
    "choice-required": dict(messages=ASK, tools=[WEATHER, CLOCK], tool_choice="required"),
    "response-format": dict(messages=ASK, tools=[WEATHER],
                            response_format={"type": "json_schema", "json_schema": {"name": "cat", "schema": CAT}}),
}


@pytest.mark.parametrize("case", list(PROMPTS))
def test_prompt_equals_llama_servers(servers, case):
    ours, theirs = servers
    want = post_json(theirs.port, "/apply-template", PROMPTS[case])["prompt"]
    got = post_json(ours.port, "/apply-template", PROMPTS[case])["prompt"]
    assert got == want


REPLIES = {
    "call": dict(messages=ASK, tools=[WEATHER, SEARCH, CLOCK], max_tokens=96),
    "joke": dict(messages=[{"role": "user", "content": "Tell me a joke."}], tools=[WEATHER, SEARCH, CLOCK],
                 max_tokens=96),
    "after-results": dict(messages=HISTORY, tools=[WEATHER, CLOCK], max_tokens=96),
    "answer": dict(messages=[*ANSWERED, {"role": "user", "content": "Write a poem about the moon."}],
                   tools=[WEATHER], max_tokens=96),
    "required": dict(messages=[*ANSWERED, {"role": "user", "content": "Hello again!"}], tools=[WEATHER, CLOCK],
                     tool_choice="required", max_tokens=96),
    "none": dict(messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=32),
}
# Cut short at these lengths: before a call's name is whole (the text as it is), inside it, inside
# its arguments' keys, strings and numbers; an answer inside its string.
CUTS = {"call": [3, 9, 14, 17, 20, 23, 26, 30, 34], "answer": [4, 8, 12, 20]}
for name, lengths in CUTS.items():
    for n in lengths:
        REPLIES[f"{name}-cut{n}"] = {**REPLIES[name], "max_tokens": n}


def message(choice: dict) -> tuple:
    m = choice["message"]
    return (choice["finish_reason"], m.get("content"),
            [(c["type"], c["function"]["name"], c["function"]["arguments"]) for c in m.get("tool_calls") or []])


def streamed(port: int, body: dict) -> tuple:
    """The message a client builds from qserve's stream: the content and the calls' deltas added up."""
    status, data = post(port, "/v1/chat/completions", {**body, "stream": True})
    assert status == 200, data[-1000:]
    content, calls, finish = None, [], None
    for line in data.decode().splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if not chunk.get("choices"):
            continue
        choice = chunk["choices"][0]
        finish = choice["finish_reason"] or finish
        delta = choice["delta"]
        if delta.get("content"):
            content = (content or "") + delta["content"]
        for d in delta.get("tool_calls") or []:
            if d["index"] == len(calls):
                assert d["id"].startswith("call_") and d["type"] == "function"
                calls.append([d["type"], d["function"]["name"], ""])
            calls[d["index"]][2] += d["function"].get("arguments", "")
    return finish, content, [tuple(c) for c in calls]


@pytest.mark.skipif(not avx2_build(), reason="llama-server is not the AVX2-level build (scripts/"
                                             "build-llamacpp-tools.sh --with-python): its numbers differ")
@pytest.mark.parametrize("case", list(REPLIES))
def test_reply_equals_llama_servers(servers, case):
    ours, theirs = servers
    body = {**REPLIES[case], "temperature": 0, "cache_prompt": False}
    want = post_json(theirs.port, "/v1/chat/completions", body)
    got = post_json(ours.port, "/v1/chat/completions", body)
    assert message(got["choices"][0]) == message(want["choices"][0])
    assert got["usage"]["prompt_tokens"] == want["usage"]["prompt_tokens"]
    # llama-server counts the end-of-generation token among the completion's; qserve does not (OpenAI's count).
    ended = want["choices"][0]["finish_reason"] != "length"
    assert got["usage"]["completion_tokens"] == want["usage"]["completion_tokens"] - ended
    for c in got["choices"][0]["message"].get("tool_calls") or []:
        assert c["id"].startswith("call_") and len(c["id"]) == 29, c["id"]
    if case in ("call", "answer", "answer-cut12", "call-cut26"):
        assert streamed(ours.port, body) == message(want["choices"][0])
