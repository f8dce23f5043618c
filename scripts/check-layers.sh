#!/usr/bin/env bash
# The one-way layering of src/, checked (ctest `layering`; README "Architecture"):
#   (a) a file under src/<layer>/ includes only its own layer's and lower layers' headers, in the order
#       formats < kernels < tokenizer < model < convert < cli; the tools (src/cli/<tool>/) may include
#       anything in src/, the shared front-end library (src/cli/*.cpp|h) no tool's files; nothing in src/
#       includes tests/ or bench/.
#   (b) no string literal in src/ outside src/cli names a command-line flag ("--force", "-cnv"): the
#       library says what is wrong and sets Error::option; the front end names its flag (cli/flag_errors.h).
#   (c) no getenv / secure_getenv / environ in src/ outside src/cli: environment variables are read by
#       the front ends (e.g. QE_ISA in src/cli/isa_choice.cpp) and passed down as arguments.
# Comments are ignored. Prints one `file:line: reason` per violation and exits 1 if there is any.
#   scripts/check-layers.sh [REPO_ROOT]
set -euo pipefail
root="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
exec python3 - "$root" <<'PY'
import os
import re
import sys

ROOT = sys.argv[1]
SRC = os.path.join(ROOT, "src")
LAYERS = ["formats", "kernels", "tokenizer", "model", "convert", "cli"]
RANK = {name: i for i, name in enumerate(LAYERS)}
EXTS = (".cpp", ".cc", ".c", ".h", ".hpp", ".inc")

# A flag inside a string literal: "--word" anywhere, or "-word" as its own word (after the start, a space
# or an opening bracket/quote, and followed by the end, a space, '=', or closing punctuation), so
# "non-integer", "x86-64", "-1", "a - b" and "->" do not count.
LONG_FLAG = re.compile(r"(?<![A-Za-z0-9_-])--[A-Za-z][A-Za-z0-9_-]*")
SHORT_FLAG = re.compile(r"(?:^|(?<=[\s(\[{'`]))-[A-Za-z][A-Za-z0-9]*(?=$|[\s=)\]},.;:'`])")
ENV_READ = re.compile(r"\b(?:secure_getenv|getenv|_?_?environ)\b")
RAW_OPEN = re.compile(r'(?:u8|u|U|L)?R"([^()\\\s]{0,16})\(')
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def lex(text):
    """Splits C/C++ source into code (comments and literals blanked, newlines kept) and the string
    literals with the line each starts on."""
    code, strings = [], []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            nl = text.count("\n", i, j)
            code.append("\n" * nl)
            line += nl
            i = j
            continue
        raw = RAW_OPEN.match(text, i) if c in "uULR" else None
        if raw and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = ")" + raw.group(1) + '"'
            start = raw.end()
            j = text.find(end, start)
            j = n if j < 0 else j
            strings.append((line, text[start:j]))
            nl = text.count("\n", i, j + len(end))
            code.append('""' + "\n" * nl)
            line += nl
            i = j + len(end)
            continue
        if c == '"' or (c == "'" and not digit_separator(text, i)):
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            if c == '"':
                strings.append((line, text[i + 1:j]))
            code.append(c + c)
            i = j + 1
            continue
        if c == "\n":
            line += 1
        code.append(c)
        i += 1
    return "".join(code), strings


def digit_separator(text, i):
    """C++14 1'000'000: a quote inside a number token is not a character literal."""
    j = i
    while j > 0 and (text[j - 1].isalnum() or text[j - 1] in "_.'"):
        j -= 1
    return j < i and text[j].isdigit()


def layer_of(rel):  # "src/model/forward.cpp" -> "model"
    parts = rel.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "src" else None


def is_tool(rel):  # src/cli/<tool>/...
    parts = rel.split("/")
    return len(parts) > 3 and parts[0] == "src" and parts[1] == "cli"


def resolve(rel_file, inc):
    """The repository-relative path an #include names, or None for a system/external header."""
    here = os.path.dirname(os.path.join(ROOT, rel_file))
    for base in (here, SRC, ROOT):
        p = os.path.normpath(os.path.join(base, inc))
        if os.path.isfile(p):
            return os.path.relpath(p, ROOT)
    first = inc.split("/")[0]
    if first in RANK:
        return "src/" + os.path.normpath(inc)  # a layer header that does not exist (yet): still ranked
    if first in ("tests", "bench"):
        return os.path.normpath(inc)
    return None


def check_include(rel, lineno, inc, out):
    target = resolve(rel, inc)
    if target is None:
        return
    where = f"{rel}:{lineno}"
    if target.split("/")[0] in ("tests", "bench"):
        out.append(f"{where}: includes {inc}: nothing in src/ may include tests/ or bench/")
        return
    if not target.startswith("src/"):
        return
    src_layer, dst_layer = layer_of(rel), layer_of(target)
    if src_layer not in RANK or dst_layer not in RANK:
        return
    if is_tool(rel):
        return  # a tool may include anything in src/
    if RANK[dst_layer] > RANK[src_layer]:
        out.append(f"{where}: includes {inc}: {src_layer} is below {dst_layer} "
                   f"({' < '.join(LAYERS)})")
    elif src_layer == "cli" and is_tool(target):
        out.append(f"{where}: includes {inc}: the shared front-end library (src/cli/*) is below the tools")


def check_file(rel, out):
    with open(os.path.join(ROOT, rel), encoding="utf-8", errors="replace") as f:
        text = f.read()
    code, strings = lex(text)
    for lineno, ln in enumerate(text.split("\n"), 1):
        m = INCLUDE.match(ln)
        if m:
            check_include(rel, lineno, m.group(2), out)
    if layer_of(rel) == "cli":
        return  # the front ends own flags and the environment
    lines = text.split("\n")
    for lineno, s in strings:
        ln = lines[lineno - 1].lstrip()
        if ln.startswith("#") or "_Pragma" in ln:
            continue  # an #include path, a #pragma's compiler flag ("-Wuninitialized")
        m = LONG_FLAG.search(s) or SHORT_FLAG.search(s)
        if m:
            out.append(f"{rel}:{lineno}: string names the command-line flag {m.group(0)}: library errors "
                       "set Error::option and the front end names its flag")
    for lineno, ln in enumerate(code.split("\n"), 1):
        m = ENV_READ.search(ln)
        if m:
            out.append(f"{rel}:{lineno}: {m.group(0)}: the library reads no environment variable; "
                       "the front end (src/cli) reads it and passes the value down")


def main():
    if not os.path.isdir(SRC):
        print(f"check-layers: no src/ under {ROOT}", file=sys.stderr)
        return 2
    out = []
    for dirpath, dirnames, filenames in os.walk(SRC):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(EXTS):
                rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
                layer = layer_of(rel)
                if layer is None:
                    continue
                if layer not in RANK:
                    out.append(f"{rel}:1: src/{layer}/ is not a known layer ({', '.join(LAYERS)}): "
                               "add it to scripts/check-layers.sh and the README")
                    continue
                check_file(rel, out)
    for line in out:
        print(line)
    sys.stdout.flush()  # the lines before the summary when both go to one terminal
    if out:
        print(f"check-layers: {len(out)} violation(s)", file=sys.stderr)
        return 1
    print("check-layers: ok")
    return 0


sys.exit(main())
PY
