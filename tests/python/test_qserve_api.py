"""qserve through the openai client: chat, streaming chat and completions give qrun's greedy text token
for token; concurrent requests give what each gives alone (the batch never changes a request's tokens)."""

from __future__ import annotations

import concurrent.futures
import json
import math
import re
import subprocess

import openai
import pytest

from conftest import program
from qserve_process import Qserve, qrun_text

SYSTEM = "You are a helpful assistant. Answer briefly."
USER = "What is the capital of France, and why is it famous?"
PROMPT = "The three most important inventions of the nineteenth century were"
N = 24


@pytest.fixture(scope="module")
def server(default_model):
    s = Qserve(default_model, "-np", "4", "-c", "1024")
    yield s
    assert s.stop() == 0, s.log()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)


def chat(client, messages, stream=False, **kw):
    """(text, finish_reason, usage or None) of one chat completion."""
    if not stream:
        r = client.chat.completions.create(model="m", messages=messages, **kw)
        return r.choices[0].message.content, r.choices[0].finish_reason, r.usage
    text, finish, usage, first = "", None, None, True
    for chunk in client.chat.completions.create(model="m", messages=messages, stream=True, **kw):
        if chunk.choices:
            delta = chunk.choices[0].delta
            if first:
                assert delta.role == "assistant"
                first = False
            text += delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        usage = getattr(chunk, "usage", None) or usage
    return text, finish, usage


def complete(client, prompt, stream=False, **kw):
    if not stream:
        r = client.completions.create(model="m", prompt=prompt, **kw)
        return r.choices[0].text, r.choices[0].finish_reason, r.usage
    text, finish = "", None
    for chunk in client.completions.create(model="m", prompt=prompt, stream=True, **kw):
        if chunk.choices:
            text += chunk.choices[0].text or ""
            finish = chunk.choices[0].finish_reason or finish
    return text, finish, None


def test_health_models_metrics(server, client):
    status, _, body = server.request("GET", "/health")
    assert status == 200 and b'"ok"' in body
    assert [m.id for m in client.models.list().data] == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    m = server.metrics()
    for name in ("qserve_prompt_tokens_total", "qserve_prompt_tokens_cached_total",
                 "qserve_tokens_generated_total", "qserve_requests_queued", "qserve_slots_busy", "qserve_decode_tokens_per_second", "qserve_prompt_tokens_per_second"):
        assert name in m, name
    assert m["qserve_slots_total"] == 4


def test_chat_greedy_equals_qrun(server, client, default_model):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
    text, finish, usage = chat(client, messages, temperature=0, max_tokens=N)
    want = qrun_text(default_model, "-cnv", "-st", "-sys", SYSTEM, "-p", USER, "--temp", "0", "-n", str(N))
    assert text == want
    assert finish in ("stop", "length")
    assert usage.completion_tokens <= N and usage.prompt_tokens > 10
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    streamed, finish_s, usage_s = chat(client, messages, stream=True, temperature=0, max_tokens=N)
    assert (streamed, finish_s) == (text, finish)
    assert usage_s is None or usage_s.completion_tokens == usage.completion_tokens


def test_completion_greedy_equals_qrun(server, client, default_model):
    text, finish, usage = complete(client, PROMPT, temperature=0, max_tokens=N)
    want = qrun_text(default_model, "-p", PROMPT, "--temp", "0", "-n", str(N), "--no-display-prompt")
    assert text == want
    if finish == "length":
        assert usage.completion_tokens == N
    assert complete(client, PROMPT, stream=True, temperature=0, max_tokens=N)[:2] == (text, finish)


def test_stop_string_ends_the_text(client):
    full, _, _ = complete(client, PROMPT, temperature=0, max_tokens=N)
    words = full.split()
    assert len(words) > 3, full
    stop = words[2]
    text, finish, _ = complete(client, PROMPT, temperature=0, max_tokens=N, stop=[stop, "zzzz"])
    assert finish == "stop"
    assert text == full[:full.index(stop)]


def test_penalties_and_logit_bias_give_qruns_tokens(client, default_model):
    """OpenAI's frequency / presence penalties, llama-server's repeat penalty and window, and logit_bias
    give what qrun gives with llama-cli's flags for them (scripts/compare-llamacpp.sh checks those flags
    against llama.cpp's own sampler); the banned token never comes, and the penalties change the text."""
    plain = qrun_text(default_model, "-p", PROMPT, "--temp", "0", "-n", str(N), "--no-display-prompt")
    ban, boost = 260, 33615  # " the", " Steam": the plain text has the first, not the second
    kw = dict(frequency_penalty=0.8, presence_penalty=0.5, logit_bias={str(ban): -100, str(boost): 5},
              extra_body={"repeat_penalty": 1.2, "repeat_last_n": 32})
    text = complete(client, PROMPT, temperature=0, max_tokens=N, **kw)[0]
    want = qrun_text(default_model, "-p", PROMPT, "--temp", "0", "-n", str(N), "--no-display-prompt",
                     "--frequency-penalty", "0.8", "--presence-penalty", "0.5", "--repeat-penalty", "1.2",
                     "--repeat-last-n", "32", "-l", f"{ban}-100", "-l", f"{boost}+5")
    assert text == want
    assert " the " in plain and " the " not in text and " Steam" in text and text != plain
    assert complete(client, PROMPT, stream=True, temperature=0, max_tokens=N, **kw)[0] == text


def test_ignore_eos_runs_to_max_tokens(client):
    """llama-server's ignore_eos: a reply that ends by itself goes on to max_tokens instead."""
    messages = [{"role": "user", "content": "Say hi."}]
    text, finish, usage = chat(client, messages, temperature=0, max_tokens=64)
    assert finish == "stop" and usage.completion_tokens < 64, (text, usage)
    longer, finish, usage = chat(client, messages, temperature=0, max_tokens=64, extra_body={"ignore_eos": True})
    assert finish == "length" and usage.completion_tokens == 64 and longer.startswith(text)


GRAMMAR = 'root ::= "Answer: " ("yes" | "no") ". Because " [a-z ]{5,40} "."'
CAT_SCHEMA = {"type": "object",
              "properties": {"name": {"type": "string", "maxLength": 20},
                             "age": {"type": "integer", "minimum": 0, "maximum": 30},
                             "color": {"enum": ["black", "white", "orange"]}},
              "required": ["name", "age", "color"]}


def test_grammar_gives_qruns_tokens(client, default_model):
    """llama-server's "grammar" (GBNF): the text qrun --grammar gives (whose tokens are llama.cpp's:
    test_llamacpp_parity.py), streamed or not, and a text the grammar holds."""
    kw = dict(temperature=0, max_tokens=48, extra_body={"grammar": GRAMMAR})
    text, finish, _ = complete(client, PROMPT, **kw)
    want = qrun_text(default_model, "-p", PROMPT, "--temp", "0", "-n", "48", "--no-display-prompt",
                     "--grammar", GRAMMAR)
    assert text == want and finish == "stop"
    assert re.fullmatch(r"Answer: (yes|no)\. Because [a-z ]{5,40}\.", text), text
    assert complete(client, PROMPT, stream=True, **kw)[:2] == (text, finish)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_json_mode_and_json_schema(client, default_model, stream):
    """OpenAI's response_format: json_object gives a JSON object, json_schema one that holds to the schema
    (the grammar llama.cpp's converter writes: test_json_schema_grammar.py), as qrun -j gives it."""
    messages = [{"role": "user", "content": "Give a JSON object with a cat's name and age."}]
    text, finish, _ = chat(client, messages, stream=stream, temperature=0, max_tokens=96,
                           response_format={"type": "json_object"})
    assert isinstance(json.loads(text), dict), text
    text, finish, _ = chat(client, messages, stream=stream, temperature=0, max_tokens=96,
                           response_format={"type": "json_schema",
                                            "json_schema": {"name": "cat", "schema": CAT_SCHEMA, "strict": True}})
    cat = json.loads(text)
    assert list(cat) == ["name", "age", "color"], text  # in the schema's order
    assert isinstance(cat["name"], str) and len(cat["name"]) <= 20
    assert isinstance(cat["age"], int) and 0 <= cat["age"] <= 30 and cat["color"] in ("black", "white", "orange")
    want = qrun_text(default_model, "-cnv", "-st", "-p", messages[0]["content"], "--temp", "0", "-n", "96",
                     "-j", json.dumps(CAT_SCHEMA))
    assert text == want
    # llama-server's own field says the same.
    assert chat(client, messages, stream=stream, temperature=0, max_tokens=96,
                extra_body={"json_schema": CAT_SCHEMA})[0] == text


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CLOCK_TOOL = {"type": "function", "function": {"name": "get_time", "description": "The time now."}}


def streamed_calls(client, **kw):
    """(content, [(name, arguments)], finish_reason) added up from the openai client's stream deltas."""
    content, calls, finish = None, {}, None
    for chunk in client.chat.completions.create(model="m", stream=True, **kw):
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        if choice.delta.content:
            content = (content or "") + choice.delta.content
        for d in choice.delta.tool_calls or []:
            if d.index not in calls:
                assert d.id.startswith("call_") and d.type == "function"
                calls[d.index] = [d.function.name, ""]
            calls[d.index][1] += d.function.arguments or ""
    return content, [tuple(calls[i]) for i in sorted(calls)], finish


def test_tool_calls_through_the_openai_client(client):
    """OpenAI's tools (llama.cpp's generic format; the prompt and replies are llama-server's:
    test_llamacpp_server_tools.py): a call comes back as tool_calls with finish_reason tool_calls, the
    same streamed; the call and its result go back into the history as the client sends them; a named
    tool_choice calls that function, "none" answers in text."""
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    kw = dict(model="m", tools=[WEATHER_TOOL, CLOCK_TOOL], temperature=0, max_tokens=96)
    r = client.chat.completions.create(messages=messages, **kw)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert streamed_calls(client, messages=messages, tools=kw["tools"], temperature=0, max_tokens=96) == \
        (None, [(call.function.name, call.function.arguments)], "tool_calls")

    history = messages + [choice.message.model_dump(), {"role": "tool", "tool_call_id": call.id,
                                                         "content": "18 degrees and sunny"}]
    r = client.chat.completions.create(messages=history, **kw)
    assert r.choices[0].finish_reason in ("stop", "tool_calls", "length")
    assert r.choices[0].message.content or r.choices[0].message.tool_calls

    r = client.chat.completions.create(messages=messages, tool_choice={"type": "function",
                                                                       "function": {"name": "get_time"}}, **kw)
    assert [c.function.name for c in r.choices[0].message.tool_calls] == ["get_time"]
    r = client.chat.completions.create(messages=messages, tool_choice="none", **{**kw, "max_tokens": 16})
    assert r.choices[0].message.tool_calls is None and r.choices[0].message.content


def test_n_choices_are_the_requests_of_each_seed(client):
    """OpenAI's n: choice i is the same request with seed + i (each decodes in a slot of its own, and a
    request's tokens do not depend on the batch), streamed or not; the usage counts the prompt once."""
    messages = [{"role": "user", "content": "Name a color."}]
    kw = dict(temperature=1.0, max_tokens=12)
    r = client.chat.completions.create(model="m", messages=messages, n=3, seed=5, **kw)
    assert [c.index for c in r.choices] == [0, 1, 2]
    alone = [chat(client, messages, seed=5 + i, **kw) for i in range(3)]
    assert [(c.message.content, c.finish_reason) for c in r.choices] == [a[:2] for a in alone]
    assert r.usage.prompt_tokens == alone[0][2].prompt_tokens
    assert r.usage.completion_tokens == sum(a[2].completion_tokens for a in alone)
    texts, finishes, usage = {}, {}, None
    for chunk in client.chat.completions.create(model="m", messages=messages, n=3, seed=5, stream=True, **kw):
        usage = chunk.usage or usage
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
            finishes[c.index] = c.finish_reason or finishes.get(c.index)
    assert [(texts[i], finishes[i]) for i in range(3)] == [a[:2] for a in alone]
    assert usage.completion_tokens == r.usage.completion_tokens
    # Completions too; greedy choices are the same text.
    r = client.completions.create(model="m", prompt=PROMPT, n=2, temperature=0, max_tokens=8)
    assert r.choices[0].text == r.choices[1].text == complete(client, PROMPT, temperature=0, max_tokens=8)[0]
    # Each choice of a tool request is read on its own.
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Weather in Paris?"}],
                                       tools=[WEATHER_TOOL], n=2, temperature=0, max_tokens=64)
    calls = [c.message.tool_calls[0] for c in r.choices]
    assert calls[0].function.arguments == calls[1].function.arguments and calls[0].id != calls[1].id


def test_tokenize_and_detokenize(server, default_model):
    """llama-server's /tokenize and /detokenize: a prompt's ids as qrun reads them, its pieces, special
    tokens written in the text, and the way back."""
    proc = subprocess.run([str(program("qrun")), "-m", str(default_model), "-p", PROMPT, "-n", "0", "--verbose"],
                          capture_output=True, text=True, timeout=120)
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("qrun: prompt: "))
    want = [int(t) for t in line.split("tokens:", 1)[1].split()]
    status, body = server.post("/tokenize", {"content": PROMPT, "add_special": True})
    assert status == 200 and body["tokens"] == want
    status, body = server.post("/tokenize", {"content": "<|im_start|>user ä€😀", "with_pieces": True})
    assert status == 200
    toks = body["tokens"]
    assert toks[0]["piece"] == "<|im_start|>" and all(isinstance(t["id"], int) for t in toks)
    # Byte-level pieces of one character come as bytes, whole characters as text; together the content.
    joined = b"".join(t["piece"].encode() if isinstance(t["piece"], str) else bytes(t["piece"]) for t in toks)
    assert joined.decode() == "<|im_start|>user ä€😀"
    status, back = server.post("/detokenize", {"tokens": [t["id"] for t in toks]})
    assert status == 200 and back["content"] == "<|im_start|>user ä€😀"
    status, back = server.post("/detokenize", {"tokens": want})
    assert status == 200 and back["content"] == PROMPT
    # A completion's prompt may be those ids (OpenAI's other form of it), alone or as [[ids]].
    text = complete_raw(server, PROMPT)
    assert complete_raw(server, want) == text and complete_raw(server, [want]) == text


def complete_raw(server, prompt):
    status, body = server.post("/v1/completions", {"prompt": prompt, "temperature": 0, "max_tokens": 12})
    assert status == 200, body
    return body["choices"][0]["text"]


def test_seeded_sampling_is_reproducible(client):
    kw = dict(temperature=0.9, top_p=0.95, seed=1234, max_tokens=16)
    a = complete(client, PROMPT, **kw)[0]
    assert complete(client, PROMPT, stream=True, **kw)[0] == a


def test_next_turn_reuses_the_cached_conversation(server, client):
    """A chat's next turn resends the conversation: the slot that served the last turn still holds its
    K/V, so only the new part is evaluated (usage.prompt_tokens_details.cached_tokens), and the reply is
    the one the whole conversation gets without the cache."""
    turn1 = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
    reply, _, usage1 = chat(client, turn1, temperature=0, max_tokens=N)
    turn2 = turn1 + [{"role": "assistant", "content": reply}, {"role": "user", "content": "And Italy's?"}]
    before = server.metrics()["qserve_prompt_tokens_cached_total"]
    text, finish, usage = chat(client, turn2, temperature=0, max_tokens=N)
    # At least the first turn's prompt; its reply too where the template re-tokenizes it the same way.
    assert usage1.prompt_tokens <= usage.prompt_tokens_details.cached_tokens < usage.prompt_tokens
    cached = usage.prompt_tokens_details.cached_tokens
    assert server.metrics()["qserve_prompt_tokens_cached_total"] == before + cached
    fresh, finish_f, usage_f = chat(client, turn2, temperature=0, max_tokens=N,
                                    extra_body={"cache_prompt": False})
    assert usage_f.prompt_tokens_details.cached_tokens == 0
    assert (fresh, finish_f, usage_f.prompt_tokens) == (text, finish, usage.prompt_tokens)
    streamed, finish_s, usage_s = chat(client, turn2, stream=True, temperature=0, max_tokens=N)
    assert (streamed, finish_s) == (text, finish)
    assert usage_s.prompt_tokens_details.cached_tokens == usage.prompt_tokens - 1, "all but the last token"


def test_logprobs(client):
    """Each generated token's log-probability and its most likely alternatives (OpenAI's chat and
    completions shapes): greedy takes the most likely; streamed equals whole; asking does not change the
    tokens."""
    messages = [{"role": "user", "content": USER}]
    plain, _, _ = chat(client, messages, temperature=0, max_tokens=N)
    r = client.chat.completions.create(model="m", messages=messages, temperature=0, max_tokens=N,
                                       logprobs=True, top_logprobs=3)
    text, entries = r.choices[0].message.content, r.choices[0].logprobs.content
    assert text == plain and len(entries) == r.usage.completion_tokens
    assert b"".join(bytes(e.bytes) for e in entries).decode() == text
    for e in entries:
        assert e.bytes == list(e.token.encode())
        assert len(e.top_logprobs) == 3 and e.logprob <= 0
        assert (e.top_logprobs[0].token, e.top_logprobs[0].logprob) == (e.token, e.logprob), "greedy"
        assert [t.logprob for t in e.top_logprobs] == sorted((t.logprob for t in e.top_logprobs), reverse=True)
        assert sum(math.exp(t.logprob) for t in e.top_logprobs) <= 1 + 1e-6
    streamed = []
    for chunk in client.chat.completions.create(model="m", messages=messages, temperature=0, max_tokens=N,
                                                logprobs=True, top_logprobs=3, stream=True):
        if chunk.choices and chunk.choices[0].logprobs:
            streamed += chunk.choices[0].logprobs.content
    assert [(e.token, e.logprob, [(t.token, t.logprob) for t in e.top_logprobs]) for e in streamed] == \
           [(e.token, e.logprob, [(t.token, t.logprob) for t in e.top_logprobs]) for e in entries]
    assert client.chat.completions.create(model="m", messages=messages, max_tokens=2).choices[0].logprobs is None

    c = client.completions.create(model="m", prompt=PROMPT, temperature=0, max_tokens=N, logprobs=2).choices[0]
    lp = c.logprobs
    assert "".join(lp.tokens) == c.text
    assert lp.text_offset == [sum(len(t.encode()) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    for tok, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert len(top) == 2 and top[tok] == value == max(top.values())


# Mixed prompt lengths, greedy and seeded sampling: 8 requests, each sent alone first, then 8 clients
# each send 4 of them (streaming and not) at once.
SPECS = [
    ("chat", "Hi!", dict(temperature=0, max_tokens=12)),
    ("completion", "Once upon a time", dict(temperature=0, max_tokens=20)),
    ("chat", "Explain photosynthesis. " * 12, dict(temperature=0, max_tokens=16)),
    ("completion", "A list of fruits: apple, banana, " * 20, dict(temperature=0.8, seed=7, max_tokens=14)),
    ("chat", "Write a haiku about the sea.", dict(temperature=0.7, seed=42, max_tokens=18)),
    ("completion", "def fibonacci(n):", dict(temperature=0, max_tokens=10)),
    ("chat", "Summarise: " + "The quick brown fox jumps over the lazy dog. " * 30, dict(temperature=0, max_tokens=8)),
    ("completion", "1, 2, 3, 4,", dict(temperature=1.0, seed=3, max_tokens=16, extra_body={"top_k": 20, "min_p": 0.1})),
]


def run_spec(client, spec, stream):
    kind, text, kw = spec
    if kind == "chat":
        return chat(client, [{"role": "user", "content": text}], stream=stream, **kw)[:2]
    return complete(client, text, stream=stream, **kw)[:2]


def test_concurrent_clients_match_requests_alone(server):
    clients = [openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)
               for _ in range(8)]
    alone = [run_spec(clients[0], spec, stream=False) for spec in SPECS]

    def client_work(i):
        return [(k, run_spec(clients[i], SPECS[k], stream=(i + j) % 2 == 1))
                for j in range(4) for k in [(i + 3 * j) % len(SPECS)]]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(client_work, range(8)) for r in rs]
    assert len(results) == 32
    for k, got in results:
        assert got == alone[k], f"request {k} {SPECS[k][:2]!r}: batched {got!r} != alone {alone[k]!r}"
    assert server.metrics()["qserve_slots_busy"] == 0


@pytest.mark.parametrize("args, message", [
    (["-xyz"], "unknown option -xyz"),
    (["-np", "0"], "-np 0 must be 1..256"),
    (["--queue", "0"], "--queue 0 must be >= 1"),
    (["-n", "0"], "-n 0 must be > 0"),
    (["--chat-template", "bogus"], "--chat-template"),
    (["--grammar", "root ::= ("], "--grammar: line 1, column 11"),
    (["-j", "{"], "--json-schema: the schema is not valid JSON"),
    (["-jf", "/nonexistent.json"], "--json-schema-file: cannot read"),
    (["--numerics", "llama.cpp", "-np", "2"], "--numerics: llama.cpp numerics run one sequence per forward pass"),
    (["--numerics", "exact"], "--numerics"),
])
def test_bad_flags_exit_1_with_one_line(default_model, args, message):
    proc = subprocess.run([str(program("qserve")), "-m", str(default_model), *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("qserve: note:")]
    assert len(lines) == 1 and lines[0].startswith("qserve: ") and message in lines[0], proc.stderr
