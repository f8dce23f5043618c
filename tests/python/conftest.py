"""Shared helpers for the Python interop tests: where the repository, the built tools and the default
model are. Programs (qrun, qconvert) come from $QE_BIN (default <repo>/build/bin; scripts/sanitize.sh
points it at the ASan+UBSan build), test tools from $QE_TEST_BIN (default <repo>/build/tests), the
repository from $QE_SOURCE (default: two levels above this file)."""

from __future__ import annotations

import os
import pathlib
import subprocess
from types import ModuleType

import pytest

REPO = pathlib.Path(os.environ.get("QE_SOURCE", pathlib.Path(__file__).resolve().parents[2]))
TEST_BIN = pathlib.Path(os.environ.get("QE_TEST_BIN", REPO / "build" / "tests"))
BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))
DEFAULT_MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


# Optional references: not in requirements.txt, installed by a script of their own.
OPTIONAL_REFERENCES = {"llama_cpp": "scripts/compare-llamacpp.sh builds and installs it",
                       "llama-server": "scripts/build-llamacpp-tools.sh builds it"}
# pytest's exit code for a file whose every module was skipped for a missing optional reference (see
# pytest_sessionfinish); tests/CMakeLists.txt gives it to ctest as SKIP_RETURN_CODE.
EXIT_OPTIONAL_MISSING = 77
_optional_missing: list[str] = []


def synthetic_llama() -> ModuleType:
    """scripts/make-synthetic-llama.py as a module (write_model, SHAPES): llama-shaped GGUFs llama.cpp loads."""
    import importlib.util
    import sys
    spec = importlib.util.spec_from_file_location("make_synthetic_llama", REPO / "scripts" / "make-synthetic-llama.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up while it loads
    spec.loader.exec_module(mod)
    return mod


def optional_reference(name: str) -> ModuleType:
    """Imports an optional reference, or skips the calling test (or, at module level, the whole file) when
    it is not installed. Only ModuleNotFoundError skips: an installed package that fails to import (any
    other ImportError) fails, where a bare importorskip would skip it with only a warning (pytest >= 8.2)."""
    return pytest.importorskip(name, exc_type=ModuleNotFoundError,
                               reason=f"optional reference {name} is not installed ({OPTIONAL_REFERENCES[name]})")


def optional_program(path: pathlib.Path, name: str) -> pathlib.Path:
    """An optional reference that is a program (llama-server): at module level, skips the whole file when it
    is not built, as optional_reference does for a package."""
    if not path.exists():
        pytest.skip(f"optional reference {name} is not installed ({OPTIONAL_REFERENCES[name]}): {path}",
                    allow_module_level=True)
    return path


def pytest_collectreport(report):
    if report.skipped and "optional reference" in str(report.longrepr):
        _optional_missing.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """Nothing collected because a file's optional reference is missing: exit 77, which ctest reports as
    skipped. Nothing collected for any other reason stays pytest's 5, which ctest reports as a failure."""
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and _optional_missing:
        session.exitstatus = EXIT_OPTIONAL_MISSING


def _built(path: pathlib.Path, variable: str) -> pathlib.Path:
    if not path.exists():
        pytest.skip(f"{path} is not built (set {variable})")
    return path


def tool(name: str) -> pathlib.Path:
    """Path of a test tool built from tests/tools/<name>.cpp; skips the test when it is not built."""
    return _built(TEST_BIN / name, "QE_TEST_BIN")


def program(name: str) -> pathlib.Path:
    """Path of a program (qrun, qconvert) in $QE_BIN; skips the test when it is not built."""
    return _built(BIN / name, "QE_BIN")


# What AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer print at a finding.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def sanitizer_report(stderr: str) -> str | None:
    """The first sanitizer marker in a process's stderr, if any."""
    return next((m for m in SANITIZER_MARKERS if m in stderr), None)


def check_exit(proc: subprocess.CompletedProcess, expected: int, what: str) -> str:
    """The process exited with `expected` (not a signal, not a sanitizer's abort) and printed no sanitizer
    report; returns its stderr. A report fails the test even when the exit code happens to match."""
    err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode("utf-8", errors="replace")
    report = sanitizer_report(err)
    assert report is None, f"{what}: sanitizer report ({report!r}), exit {proc.returncode}:\n{err}"
    how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
    assert proc.returncode == expected, f"{what}: {how}, expected exit {expected}\nstderr:\n{err}"
    return err


OLD_MTIME_NS = 1_000_000_000 * 1_000_000_000  # 2001-09-09: a write would move it


def age(root: pathlib.Path):
    """Sets the modification time of `root` (a file, or every file under a directory) to OLD_MTIME_NS."""
    for p in [root] if root.is_file() else root.rglob("*"):
        if not p.is_symlink():
            os.utime(p, ns=(OLD_MTIME_NS, OLD_MTIME_NS))


def snapshot(root: pathlib.Path) -> dict:
    """Every file under `root` (or `root` itself): relative name -> (bytes, modification time in ns)."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())
    return {str(p.relative_to(root)) if p != root else p.name: (p.read_bytes() if p.exists() else None,
                                                                 p.lstat().st_mtime_ns) for p in files}


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
