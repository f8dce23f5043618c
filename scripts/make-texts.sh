#!/usr/bin/env bash
# Two deterministic UTF-8 texts for calibration and evaluation, made from Python's standard library alone
# (no download), never overlapping:
#
#   calib.txt  the pydoc topics (pydoc_data.topics: the language reference sections help() shows),
#              keys sorted, joined by blank lines; ~465 kB, ~110k tokens.
#   eval.txt   held-out technical text: the docstrings of a fixed list of pure-Python library modules
#              (module, then every public function, class and method defined there, with signatures),
#              in a fixed order; no file paths, no memory addresses, no inherited members;
#              ~340 kB, ~90k tokens.
#
#   scripts/make-texts.sh OUTDIR [--python PYTHON]
#
# Python 3.11 is expected (another version gives other texts: a warning says so). eval.txt is the same
# on 3.11.2 and 3.11.7 (sha256 47eeedc6948cbd91...); calib.txt is not quite (each release regenerates
# the topics), which matters less for calibration. The sha256 of each file is printed so runs on two
# machines can be compared. Refuses to finish if any line of 80+ characters of eval.txt is also in
# calib.txt.
set -euo pipefail

PYTHON=python3
OUTDIR=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --python) PYTHON=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    -*) echo "make-texts.sh: unknown option $1" >&2; exit 2 ;;
    *) [[ -z $OUTDIR ]] || { echo "make-texts.sh: one OUTDIR only" >&2; exit 2; }; OUTDIR=$1; shift ;;
  esac
done
[[ -n $OUTDIR ]] || { echo "usage: scripts/make-texts.sh OUTDIR [--python PYTHON]" >&2; exit 2; }
command -v "$PYTHON" >/dev/null || { echo "make-texts.sh: $PYTHON not found" >&2; exit 1; }
mkdir -p "$OUTDIR"

# -I: isolated (no user site, no PYTHONPATH): only the standard library answers the imports.
"$PYTHON" -I - "$OUTDIR" <<'PY'
import hashlib, importlib, inspect, pathlib, re, sys

out = pathlib.Path(sys.argv[1])
if sys.version_info[:2] != (3, 11):
    print(f"make-texts.sh: warning: Python {sys.version.split()[0]}, not 3.11: the texts differ from "
          "those of Python 3.11", file=sys.stderr)

# ---- calib.txt: the pydoc topics.
import pydoc_data.topics as topics
calib = "\n\n".join(topics.topics[k].strip("\n") for k in sorted(topics.topics)) + "\n"

# ---- eval.txt: library docstrings. Pure-Python modules whose docstrings 3.11's maintenance releases
# leave alone (the same bytes on 3.11.2 and 3.11.7; left out because they changed in between or take
# security fixes: configparser, shutil, tarfile, zipfile, tempfile, ipaddress, email, urllib, http, the
# mail/ftp clients, enum, abc, plistlib, timeit, asyncio, unittest.mock). No builtins types: the topics
# describe str/dict/list methods.
MODULES = ["argparse", "textwrap", "difflib", "fractions", "statistics", "heapq", "bisect", "shlex",
           "csv", "calendar", "json", "json.decoder", "json.encoder", "dataclasses", "functools",
           "contextlib", "string", "secrets", "uuid", "base64", "gettext", "fnmatch", "filecmp",
           "queue", "sched", "threading", "logging", "pprint", "reprlib", "trace", "cmd", "code",
           "codeop", "pdb", "bdb", "pickletools", "ast", "tokenize", "inspect", "dis",
           "importlib.metadata", "zipimport", "selectors", "concurrent.futures._base", "unittest.case",
           "doctest"]

ADDR = re.compile(r" at 0x[0-9a-fA-F]+")

def sig(obj):
    try:
        s = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"
    return ADDR.sub("", s)

def doc(obj):
    d = obj.__doc__ if isinstance(getattr(obj, "__doc__", None), str) else None
    return inspect.cleandoc(d) if d else ""

seen = set()  # a docstring shared by several names is written once
def emit(parts, title, text):
    if not text or text in seen:
        return
    seen.add(text)
    parts.append(f"{title}\n{text}\n")

def public(mod, name):
    return not name.startswith("_") and (not hasattr(mod, "__all__") or name in mod.__all__)

parts = []
for mname in MODULES:
    mod = importlib.import_module(mname)
    parts.append(f"\n{'=' * 8} {mname} {'=' * 8}\n")
    emit(parts, f"Module {mname}", doc(mod))
    for name in sorted(vars(mod)):
        obj = vars(mod)[name]
        if not public(mod, name) or getattr(obj, "__module__", None) != mod.__name__:
            continue
        if inspect.isclass(obj):
            emit(parts, f"class {mname}.{name}{sig(obj)}", doc(obj))
            for mn in sorted(vars(obj)):
                m = vars(obj)[mn]
                if mn.startswith("_") and mn != "__init__":
                    continue
                if isinstance(m, (staticmethod, classmethod)):
                    m = m.__func__
                if isinstance(m, property):
                    emit(parts, f"property {name}.{mn}", doc(m))
                elif inspect.isfunction(m):
                    emit(parts, f"method {name}.{mn}{sig(m)}", doc(m))
        elif inspect.isfunction(obj):
            emit(parts, f"function {mname}.{name}{sig(obj)}", doc(obj))
evaltxt = "\n".join(parts).lstrip("\n")

# ---- Never overlapping: no long line of eval.txt is also in calib.txt.
calib_lines = {l.strip() for l in calib.splitlines()}
shared = [l.strip() for l in evaltxt.splitlines() if len(l.strip()) >= 80 and l.strip() in calib_lines]
if shared:
    sys.exit(f"make-texts.sh: {len(shared)} long line(s) of eval.txt are also in calib.txt, e.g.: {shared[0]!r}")

for name, text in (("calib.txt", calib), ("eval.txt", evaltxt)):
    data = text.encode("utf-8")
    (out / name).write_bytes(data)
    words = len(text.split())
    # ~4 bytes per token is what BPE tokenizers of English-trained models give on technical prose.
    print(f"{out / name}: {len(data)} bytes, {words} words, ~{len(data) // 4} tokens, "
          f"sha256 {hashlib.sha256(data).hexdigest()[:16]}")
PY
