"""qrun's perplexity and KL divergence against llama.cpp (llama-cpp-python, built for the AVX2 level) on
the default model (SmolLM2-135M-Instruct Q4_1), on a ~24k-token text at -c 512. With the default, fast
numerics, judged statistically: perplexity within 0.5% of llama.cpp's, and on the scored positions of the
first 20 chunks a mean KL divergence from llama.cpp's logits <= 0.005 with the same top-1 token at >= 95%
of them. With qrun --numerics llama.cpp, the 512 positions of the text's first chunk in one batch: logits
with llama.cpp's float32 bits (Δ = 0).

A file of its own, beside test_llamacpp_parity.py (the prompts, k-quant types, sampler and grammar), so
that ctest runs the two at once: this one is the longest test of the suite.
Skips only when llama_cpp is not importable (scripts/compare-llamacpp.sh installs it, built from source).
The comparison runs once (llamacpp_compare.compare); each check is one test. The Markdown table is written
to $QE_PARITY_TABLES/llamacpp-perplexity.md (scripts/compare-llamacpp.sh prints it), else to
build/llamacpp-perplexity.md.
"""

from __future__ import annotations

import pytest

from conftest import optional_reference

optional_reference("llama_cpp")

import llamacpp_compare as cmp  # noqa: E402


@pytest.fixture(scope="module")
def report(default_model):
    return cmp.compare_and_keep_table(default_model, cmp.DEFAULT_BIN, "llamacpp-perplexity.md", prompts=[], ppl=True)


@pytest.mark.parametrize("name", cmp.check_names(n_prompts=0, ppl=True))
def test_perplexity(report, name):
    check = report.check(name)
    assert check.ok, f"{name}: {check.detail}"
