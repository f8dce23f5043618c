"""qrun matches llama.cpp (llama-cpp-python) on the default model: the same prompt tokens, the same greedy
128-token continuations of varied prompts, the same top-10 at the last prompt position with max |Δ|
within 1% of llama.cpp's logit range (all with qrun --numerics llama.cpp, which computes llama.cpp's bits),
and a perplexity within 0.5% on a ~24k-token text (with the default, fast numerics).

Skips only when llama_cpp is not importable (scripts/compare-llamacpp.sh installs it, built from source).
The whole comparison runs once (llamacpp_compare.compare); each check is one test. With $QE_PARITY_TABLE
set, the Markdown table is written there (scripts/compare-llamacpp.sh prints it).
"""

from __future__ import annotations

import os
import pathlib

import pytest

pytest.importorskip("llama_cpp")

import llamacpp_compare as cmp  # noqa: E402

BIN = pathlib.Path(os.environ.get("QE_BIN", cmp.REPO / "build" / "bin"))


@pytest.fixture(scope="module")
def report(default_model):
    if not (BIN / "qrun").exists():
        pytest.fail(f"{BIN / 'qrun'} is not built (set QE_BIN)")
    rep = cmp.compare(default_model, BIN)
    table = rep.table()
    print("\n" + table)
    if os.environ.get("QE_PARITY_TABLE"):
        pathlib.Path(os.environ["QE_PARITY_TABLE"]).write_text(table)
    return rep


@pytest.mark.parametrize("name", cmp.check_names())
def test_parity(report, name):
    check = next(c for c in report.checks if c.name == name)
    assert check.ok, f"{name}: {check.detail}"
