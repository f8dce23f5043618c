"""Shared helpers for the Python interop tests: where the repository, the built tools and the default
model are. Tools come from $QE_TEST_BIN (default <repo>/build/tests), the repository from $QE_SOURCE
(default: two levels above this file)."""

import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(os.environ.get("QE_SOURCE", pathlib.Path(__file__).resolve().parents[2]))
TEST_BIN = pathlib.Path(os.environ.get("QE_TEST_BIN", REPO / "build" / "tests"))
DEFAULT_MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def tool(name: str) -> pathlib.Path:
    """Path of a test tool built from tests/tools/<name>.cpp; skips the test when it is not built."""
    path = TEST_BIN / name
    if not path.exists():
        pytest.skip(f"{path} is not built (set QE_TEST_BIN)")
    return path


def run_tool(name: str, *args, timeout: float = 300) -> str:
    """Runs a test tool and returns its stdout; a non-zero exit fails the test with its stderr."""
    proc = subprocess.run([str(tool(name)), *map(str, args)], capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{name} {' '.join(map(str, args))} exited {proc.returncode}: "
                    f"{proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode("utf-8")


@pytest.fixture(scope="session")
def default_model() -> pathlib.Path:
    """models/SmolLM2-135M-Instruct.Q4_1.gguf, fetched by scripts/get-model.sh when missing."""
    if not DEFAULT_MODEL.exists():
        proc = subprocess.run(["bash", str(REPO / "scripts" / "get-model.sh")], capture_output=True,
                              timeout=900)
        if proc.returncode != 0 or not DEFAULT_MODEL.exists():
            pytest.skip("scripts/get-model.sh could not fetch the default model: "
                        + proc.stderr.decode(errors="replace")[-500:])
    return DEFAULT_MODEL
