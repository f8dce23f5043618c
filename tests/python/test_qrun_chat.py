"""qrun -cnv (chat) driven through stdin.

On SmolLM2 (its GGUF's ChatML template), greedy: two user lines give two replies on stdout and exit 0 at
EOF; the first reply is exactly what completion mode generates from the same formatted prompt (the
chat adds nothing of its own to the tokens), and the second turn evaluates only the new turn's tokens
on top of the cache (llama.cpp's incremental formatting), after the first reply's end marker.
On a tiny synthetic model (no template: chatml, as llama.cpp) the edge cases: EOF at once, blank lines,
and the one-line errors.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

import pytest

import make_tiny_model as tiny

REPO = pathlib.Path(os.environ.get("QE_SOURCE", pathlib.Path(__file__).resolve().parents[2]))
BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))

QUESTIONS = ["What is the capital of France?", "And of Germany?"]


def qrun(*args, stdin: str = "") -> subprocess.CompletedProcess:
    path = BIN / "qrun"
    if not path.exists():
        pytest.skip(f"{path} is not built (set QE_BIN)")
    return subprocess.run([str(path), *map(str, args)], input=stdin.encode(), capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def chat(default_model) -> subprocess.CompletedProcess:
    proc = qrun("-m", default_model, "-cnv", "--temp", "0", "-n", "16", "-c", "512", "-v",
                stdin="\n".join(QUESTIONS) + "\n")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc


def test_two_turns_give_two_replies(chat, default_model):
    out = chat.stdout.decode()
    err = chat.stderr.decode()
    # Completion mode on the first turn's prompt: it echoes the prompt (control tokens render as nothing),
    # then generates; the chat's first reply must be that generation.
    prompt = f"<|im_start|>user\n{QUESTIONS[0]}<|im_end|>\n<|im_start|>assistant\n"
    proc = qrun("-m", default_model, "-p", prompt, "--temp", "0", "-n", "16", "-c", "512")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    echo = f"user\n{QUESTIONS[0]}\nassistant\n"
    completion = proc.stdout.decode()
    assert completion.startswith(echo)
    first = completion[len(echo):]
    assert first.strip(), "the model said nothing"
    assert out.startswith(first), f"chat:\n{out!r}\ncompletion:\n{first!r}"
    second = out[len(first):]
    assert second.strip() and second.endswith("\n"), out
    # Both questions were answered, in order, on stderr's transcript.
    assert err.count("> ") >= 3 and err.index(QUESTIONS[0]) < err.index(QUESTIONS[1])


def test_second_turn_reuses_the_cache(chat):
    err = chat.stderr.decode()
    turns = re.findall(r"turn (\d+): (\d+) new tokens at position (\d+): ([0-9 ]+)", err)
    generated = [int(n) for n in re.findall(r"turn \d+: (\d+) tokens generated", err)]
    assert [t[0] for t in turns] == ["1", "2"], err
    n1, pos2 = int(turns[0][1]), int(turns[1][2])
    assert int(turns[0][2]) == 0
    # Turn 2 starts where turn 1's prompt and reply end ...
    assert pos2 == n1 + generated[0]
    # ... with only the new text: "<|im_end|>\n" closing the reply (or the reply's last token when -n
    # cut it), then "<|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n".
    ids = [int(x) for x in turns[1][3].split()]
    im_start, im_end = 1, 2  # SmolLM2's <|im_start|> and <|im_end|>
    assert ids.count(im_start) == 2 and len(ids) < 24, ids
    if generated[0] < 16:  # ended by <|im_end|>: the template's tail re-opens with it
        assert ids[0] == im_end, ids


def test_eof_at_once_and_blank_lines(tmp_path):
    model = tmp_path / "tiny.gguf"
    tiny.write_model(str(model), tiny.TinySpec(wtype="f32"))
    proc = qrun("-m", model, "-cnv", "--temp", "0", "-n", "4", stdin="")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stdout == b""
    assert "chatml" in proc.stderr.decode()  # no template in the file: chatml, as llama.cpp
    proc = qrun("-m", model, "-cnv", "--temp", "0", "-n", "4", "-sys", "be brief", stdin="\n\nhello\n\n")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stdout.endswith(b"\n")  # one reply (maybe empty), one newline
    assert re.search(r"=\s*1 turn,", proc.stderr.decode()), proc.stderr.decode()  # blank lines are no turns


@pytest.mark.parametrize("args, message", [
    (["-cnv", "--chat-template", "llama-3"], "--chat-template"),
    (["-p", "x", "--chat-template", "chatml"], "-cnv"),
    (["-cnv", "-f", "/dev/null"], "-f"),
])
def test_bad_input_is_one_line_and_exit_1(tmp_path, args, message):
    model = tmp_path / "tiny.gguf"
    tiny.write_model(str(model), tiny.TinySpec(wtype="f32"))
    proc = qrun("-m", model, *args, stdin="hi\n")
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 1, err
    assert proc.stdout == b""
    lines = [line for line in err.strip().splitlines()
             if not line.startswith(("qrun: model ", "qrun: kernels", "qrun: chat "))]
    assert len(lines) == 1 and lines[0].startswith("qrun: ") and message in lines[0], err
