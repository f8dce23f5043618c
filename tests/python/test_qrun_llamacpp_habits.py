"""qrun behaves as a llama-cli / llama-perplexity user's hands expect (on the default model, greedy):

* Ctrl-C (SIGINT, and SIGTERM alike): the first stops generation at the next token, prints the timings
  and exits 0; in chat it ends the reply and the chat goes on, and at the prompt it ends the chat; a
  second one exits at once (130). Perplexity prints what it scored so far and leaves no half-written
  KL base file. The signals are sent from the test to the child process.
* llama.cpp's flags: the one-dash long names (-cnv -st -ctk ...), --ignore-eos, --no-display-prompt; the
  GPU-only flags accepted with one note each; any other unknown dash-word is "unknown option", never a
  misparse such as -ngl read as -n "gl".
* Stop reasons on stderr: [end of text], [n_predict reached], [context full], [interrupted].
* --kl-divergence accepts -f (ignored, with a note); a KL base file is not overwritten without --force;
  -c beyond the training context gives one warning.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import threading
import time

import pytest

REPO = pathlib.Path(os.environ.get("QE_SOURCE", pathlib.Path(__file__).resolve().parents[2]))
BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))
# A question SmolLM2 answers in a few tokens at every kernel level and in both numerics ("Hi!" got a
# reply that ends by itself on AVX-512 but runs past 200 tokens on AVX2: a greedy path is that fragile).
CHAT_PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


def qrun_path() -> pathlib.Path:
    path = BIN / "qrun"
    if not path.exists():
        pytest.skip(f"{path} is not built (set QE_BIN)")
    return path


def qrun(*args, stdin: str = "", timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(qrun_path()), *map(str, args)], input=stdin.encode(), capture_output=True,
                          timeout=timeout)


class Child:
    """A qrun process whose stdout and stderr are collected as they come, so the test can act on them."""

    def __init__(self, *args, stdin: bool = False):
        self.proc = subprocess.Popen([str(qrun_path()), *map(str, args)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)
        self.out = bytearray()
        self.err = bytearray()
        self._threads = [threading.Thread(target=self._pump, args=(self.proc.stdout, self.out), daemon=True),
                         threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True)]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream, buf: bytearray):
        while chunk := stream.read1(4096):
            buf.extend(chunk)

    def wait_for(self, what, timeout: float = 120.0, where: str = "out"):
        """Waits until `what` (bytes, or a predicate on the buffer) is in stdout (or stderr)."""
        buf = self.out if where == "out" else self.err
        test = what if callable(what) else (lambda b: what in b)
        deadline = time.monotonic() + timeout
        while not test(bytes(buf)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"waited for {what!r} in std{where}; exit {self.proc.poll()}\n"
                            f"stdout: {bytes(self.out)[-2000:]!r}\nstderr: {bytes(self.err)[-2000:]!r}")
            time.sleep(0.01)

    def send(self, sig: int):
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 60.0) -> int:
        if self.proc.stdin:
            self.proc.stdin.close()
        rc = self.proc.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=10)
        return rc

    @property
    def stderr(self) -> str:
        return bytes(self.err).decode(errors="replace")

    @property
    def stdout(self) -> str:
        return bytes(self.out).decode(errors="replace")


# ---- Signals

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_first_signal_stops_generation_prints_timings_exits_0(default_model, sig):
    c = Child("-m", default_model, "-p", "1, 2, 3,", "-n", "2000", "--temp", "0", "--ignore-eos", "-c", "4096")
    c.wait_for(lambda out: len(out) > len(b"1, 2, 3,") + 8)  # generating
    c.send(sig)
    rc = c.finish()
    assert rc == 0, c.stderr
    assert "[interrupted]" in c.stderr
    assert "eval time" in c.stderr and "total time" in c.stderr
    assert c.stdout.endswith("\n")
    # It stopped at the next token, long before 2000.
    n_gen = int(c.stderr.split("tokens generated")[0].rsplit("/", 1)[1])
    assert n_gen < 1500, c.stderr


def test_second_signal_exits_at_once(default_model):
    # A long prompt, not echoed (an echo would notice the first Ctrl-C before the prefill): the first
    # Ctrl-C lands in the prefill (which runs to its end, seconds), the second one exits at once.
    prompt = " ".join(f"word{i}" for i in range(1500))  # ~6800 tokens
    c = Child("-m", default_model, "-p", prompt, "-n", "64", "--temp", "0", "-c", "8192", "--no-display-prompt")
    c.wait_for(b"n_ctx = ", where="err")
    c.send(signal.SIGINT)
    time.sleep(0.3)  # a person's second Ctrl-C (a repeat within 0.1 s is the first one delivered twice)
    c.send(signal.SIGINT)
    rc = c.finish(timeout=30)
    assert rc == 128 + signal.SIGINT, c.stderr
    assert "total time" not in c.stderr


@pytest.mark.skipif(shutil.which("timeout") is None, reason="no timeout(1)")
def test_timeout_s_int_stops_with_timings(default_model):
    """The issue's command: GNU timeout sends SIGINT to qrun and again to its process group at once; that
    is one Ctrl-C, so qrun stops, prints its timings and exits 0."""
    p = subprocess.run(["timeout", "--preserve-status", "-s", "INT", "3", str(qrun_path()), "-m", str(default_model),
                        "-p", "1, 2, 3,", "-n", "20000", "-c", "8192", "--temp", "0", "--ignore-eos"],
                       capture_output=True, timeout=120)
    err = p.stderr.decode()
    assert p.returncode == 0, err
    assert "[interrupted]" in err and "total time" in err, err


def test_chat_ctrl_c_ends_the_reply_then_the_chat_goes_on(default_model):
    c = Child("-m", default_model, "-cnv", "--temp", "0", "-n", "2000", "-c", "4096", stdin=True)
    c.wait_for(b"> ", where="err")
    c.proc.stdin.write(b"Write a long story about a dragon who learns to cook.\n")
    c.proc.stdin.flush()
    c.wait_for(lambda out: len(out.strip()) > 0)  # the reply has started
    c.send(signal.SIGINT)
    c.wait_for(b"[interrupted]", where="err")
    first = len(c.out)
    c.proc.stdin.write(b"Thanks. What is 2 + 2?\n")
    c.proc.stdin.flush()
    rc = c.finish()  # EOF after the second reply ends the chat
    assert rc == 0, c.stderr
    assert c.stdout[first:].strip(), "no second reply"
    assert "2 turns" in c.stderr and "eval time" in c.stderr


def test_chat_ctrl_c_at_the_prompt_ends_the_chat(default_model):
    c = Child("-m", default_model, "-cnv", "--temp", "0", "-c", "512", stdin=True)
    c.wait_for(b"> ", where="err")
    c.send(signal.SIGINT)
    rc = c.finish(timeout=30)
    assert rc == 0, c.stderr
    assert "0 turns" in c.stderr and "load time" in c.stderr


def test_perplexity_ctrl_c_prints_what_it_scored_and_writes_no_base(default_model, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(" ".join(f"The {i}th line of a text about nothing in particular." for i in range(1500)))
    base = tmp_path / "base.kld"
    c = Child("-m", default_model, "--perplexity", "-f", text, "-c", "128", "--kl-divergence-base", base)
    c.wait_for(b"[1]")
    c.send(signal.SIGINT)
    rc = c.finish()
    assert rc == 0, c.stderr
    assert "Final estimate: PPL = " in c.stdout
    assert "interrupted:" in c.stderr and "the KL base file was not written" in c.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.txt"], "a base or temporary file was left"


# ---- llama.cpp's flags

def test_gpu_flags_are_accepted_with_a_note(default_model):
    p = qrun("-m", default_model, "-p", "Hi", "-n", "2", "--temp", "0", "-ngl", "99", "-fa", "on", "-sm", "none",
             "-mg", "0", "-ts", "1", "--kv-unified")
    err = p.stderr.decode()
    assert p.returncode == 0, err
    for flag in ["-ngl", "-fa", "-sm", "-mg", "-ts", "--kv-unified"]:
        assert err.count(f"note: {flag} does nothing on this CPU engine") == 1, err


@pytest.mark.parametrize("flag", ["-xyz", "--no-such-option", "-ngx", "-st2x", "-i"])
def test_unknown_options_are_named(default_model, flag):
    p = qrun("-m", default_model, "-p", "Hi", "-n", "2", flag)
    assert p.returncode == 1
    assert p.stderr.decode().strip() == f"qrun: unknown option {flag} (see --help)"


def test_an_unknown_letter_with_a_value_is_named_not_misparsed(default_model):
    p = qrun("-m", default_model, "-p", "Hi", "-n", "2", "-r", "User:")
    assert p.returncode == 1
    assert p.stderr.decode().strip() == "qrun: unknown option -r (see --help)"


def test_a_value_that_starts_with_a_dash_is_a_value(default_model):
    p = qrun("-m", default_model, "-p", "-cnv is not a flag here", "-n", "2", "--temp", "0")
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().startswith("-cnv is not a flag here")


def test_cache_type_flags(default_model):
    p = qrun("-m", default_model, "-p", "Hi", "-n", "2", "-ctk", "q8_0")
    assert p.returncode == 1 and "-ctk q8_0 is not supported" in p.stderr.decode()
    p = qrun("-m", default_model, "-p", "Hi", "-n", "2", "-ctk", "f32", "-ctv", "f16")
    assert p.returncode == 1 and "K and V must have the same cache type" in p.stderr.decode()
    p = qrun("-m", default_model, "-p", "Hi", "-n", "2", "-ctk", "f32", "-ctv", "f32")
    assert p.returncode == 0 and "kv cache f32" in p.stderr.decode()


def test_ignore_eos_and_stop_reasons(default_model):
    p = qrun("-m", default_model, "-p", CHAT_PROMPT, "-n", "200", "--temp", "0")
    err = p.stderr.decode()
    assert p.returncode == 0 and "[end of text]" in err, err
    p = qrun("-m", default_model, "-p", CHAT_PROMPT, "-n", "200", "--temp", "0", "--ignore-eos", "-v")
    err = p.stderr.decode()
    assert p.returncode == 0 and "[n_predict reached]" in err, err
    assert "/   200 tokens generated" in err
    p = qrun("-m", default_model, "-p", CHAT_PROMPT, "--temp", "0", "--ignore-eos", "-c", "64")
    err = p.stderr.decode()
    assert p.returncode == 0 and "[context full]" in err, err


def test_no_display_prompt(default_model):
    p = qrun("-m", default_model, "-p", "The capital of France is", "-n", "4", "--temp", "0", "--no-display-prompt")
    assert p.returncode == 0
    out = p.stdout.decode()
    assert out.strip() and not out.startswith("The capital"), out


def test_single_turn_and_no_cnv(default_model):
    p = qrun("-m", default_model, "-st", "--temp", "0", "-n", "8", stdin="Hello\nAnd more\n")
    err = p.stderr.decode()
    assert p.returncode == 0, err
    assert "1 turn," in err and "And more" not in err
    p = qrun("-m", default_model, "-cnv", "-no-cnv", "-p", "Hi")
    assert p.returncode == 1 and "-cnv and -no-cnv" in p.stderr.decode()


def test_ctx_beyond_training_warns_once(default_model):
    p = qrun("-m", default_model, "-p", "Hi", "-n", "1", "--temp", "0", "-c", "9000")
    err = p.stderr.decode()
    assert p.returncode == 0
    assert err.count("more than the model's training context (8192)") == 1, err


def test_help_shows_llama_names_and_defaults():
    p = qrun("--help")
    out = p.stdout.decode()
    assert p.returncode == 0
    for name in ["-cnv,--conversation", "-sys,--system-prompt", "-nr,--no-repack", "-st,--single-turn",
                 "-ctk,--cache-type-k", "-n,--n-predict INT=-1", "-c,--ctx-size INT=0", "-t,--threads INT=0",
                 "-s,--seed INT=-1", "--ignore-eos", "--no-display-prompt"]:
        assert name in out, name


# ---- KL divergence habits

def test_kl_divergence_base_is_not_overwritten_and_f_is_accepted(default_model, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(" ".join(f"Line {i} of a short text to score." for i in range(300)))
    base = tmp_path / "base.kld"
    common = ["-m", default_model, "-c", "128", "--chunks", "2"]
    p = qrun(*common, "--perplexity", "-f", text, "--kl-divergence-base", base)
    assert p.returncode == 0, p.stderr.decode()
    saved = base.read_bytes()
    p = qrun(*common, "--perplexity", "-f", text, "--kl-divergence-base", base)
    assert p.returncode == 1
    assert p.stderr.decode().strip() == (f"qrun: {base}: exists; use --force to overwrite it "
                                         "(or --kl-divergence to read it)")
    assert base.read_bytes() == saved
    p = qrun(*common, "--perplexity", "-f", text, "--kl-divergence-base", base, "--force")
    assert p.returncode == 0, p.stderr.decode()
    # The README's command: -f with --kl-divergence is accepted (the base file's tokens are scored).
    p = qrun(*common, "--perplexity", "--kl-divergence", "--kl-divergence-base", base, "-f", text)
    assert p.returncode == 0, p.stderr.decode()
    assert "-p / -f ignored" in p.stderr.decode()


def prompt_ids(model, *args) -> list[int]:
    p = qrun("-m", model, "-n", "1", "--temp", "0", "-v", *args)
    assert p.returncode == 0, p.stderr.decode()
    line = next(l for l in p.stderr.decode().splitlines() if l.startswith("qrun: prompt: "))
    return [int(x) for x in line.split("tokens:", 1)[1].split()]


def test_escapes_as_llama_cli_processes_them(default_model, tmp_path):
    """llama-cli's -e (on by default): \\n \\t \\xHH ... in -p and -f become the characters; --no-escape keeps
    them; an unknown escape keeps its backslash."""
    real = prompt_ids(default_model, "-p", "Hello\nWorld\tA\"B'C\\D")
    assert prompt_ids(default_model, "-p", r"Hello\nWorld\tA\"B\'C\\D") == real
    assert prompt_ids(default_model, "-p", r"Hello\nWorld\x09A") == prompt_ids(default_model, "-p", "Hello\nWorld\tA")
    assert prompt_ids(default_model, "-p", r"Hello\nWorld", "--no-escape") != prompt_ids(default_model, "-p", "Hello\nWorld")
    assert prompt_ids(default_model, "-p", r"a\q\x4") == prompt_ids(default_model, "-p", r"a\q\x4", "--no-escape")
    f = tmp_path / "prompt.txt"
    f.write_text("Hello\\nWorld\n")  # the one trailing newline goes, as in llama.cpp
    assert prompt_ids(default_model, "-f", f) == prompt_ids(default_model, "-p", "Hello\nWorld")


def test_perplexity_reads_its_text_as_it_is(default_model, tmp_path):
    """llama-perplexity turns escapes off: a text's backslashes are scored as written."""
    f = tmp_path / "text.txt"
    f.write_text(("print('a\\nb')  # a line of code with escapes\\t" * 40) + "\n")
    outs = [(lambda p: p.stdout.decode() + p.stderr.decode())(
        qrun("-m", default_model, "--perplexity", "-f", f, "-c", "64", "--chunks", "2", *extra))
        for extra in ([], ["--no-escape"])]
    final = [next(l for l in o.splitlines() if "Final estimate" in l) for o in outs]
    assert final[0] == final[1], outs[0]
