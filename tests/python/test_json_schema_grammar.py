"""JSON schema -> GBNF (src/model/json_schema_grammar.cpp) against llama.cpp's own converter: the grammar
text of tests/tools/json_schema_tool must be what llama.cpp's examples/json_schema_to_grammar.py (the Python
twin that llama.cpp's tests hold to its C++ converter, the one llama-server and llama-cli -j run) writes for
the same schema, rule for rule; schemas llama.cpp refuses are refused too. With the grammar engine's own
witness (test_llamacpp_parity.py::test_llamacpp_grammar) this makes a schema constrain generation as it does
in llama.cpp.

The converter comes from the llama-cpp-python sdist that scripts/build-llamacpp-tools.sh unpacks
($QE_LLAMACPP_TOOLS, default <repo>/.venv/llama.cpp-tools); each test skips, saying so, when it is not there.
The schemas avoid two places where llama.cpp's Python twin and its C++ converter write different text (a
constant's JSON spelling beyond ASCII strings, integers, true and null; `minimum` without "type":
"integer"), and the Python twin's pattern literals are merged as the C++ converter merges them ("ab" "c" ->
"abc", the same language), since the C++ one is what this project follows."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from conftest import REPO, tool

SOURCES = pathlib.Path(os.environ.get("QE_LLAMACPP_TOOLS", REPO / ".venv" / "llama.cpp-tools")) / "src"

SCHEMAS = {
    "empty": {},
    "object": {"type": "object"},
    "string": {"type": "string"},
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "null": {"type": "null"},
    "person": {"type": "object",
               "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                              "tags": {"type": "array", "items": {"type": "string"}}},
               "required": ["name", "age"]},
    "all_optional": {"properties": {"a": {"type": "string"}, "b": {"type": "number"}, "c": {"type": "boolean"}}},
    "closed": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"],
               "additionalProperties": False},
    "additional_schema": {"type": "object", "properties": {"x": {"type": "integer"}, "xy": {"type": "null"}},
                          "required": ["x"], "additionalProperties": {"type": "number"}},
    "additional_true": {"type": "object", "properties": {"and": {"type": "string"}, "also": {"type": "string"}},
                        "additionalProperties": True},
    "map": {"type": "object", "additionalProperties": {"type": "string"}},
    "enum": {"enum": ["red", "green", 1, True, None]},
    "const": {"const": "fixed"},
    "any_of": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    "one_of": {"oneOf": [{"type": "object", "properties": {"k": {"const": 1}}, "required": ["k"]},
                         {"type": "array", "items": {"type": "boolean"}}]},
    "type_list": {"type": ["string", "null"], "maxLength": 3},
    "array_bounds": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4},
    "array_min": {"items": {"type": "number"}, "minItems": 1},
    "array_max": {"type": "array", "items": {"type": "string"}, "maxItems": 1},
    "tuple": {"prefixItems": [{"type": "string"}, {"type": "integer"}, {"enum": ["a", "b"]}]},
    "string_len": {"type": "string", "minLength": 2, "maxLength": 5},
    "string_min": {"type": "string", "minLength": 1},
    "formats": {"type": "object", "properties": {f: {"type": "string", "format": f}
                                                 for f in ("date", "time", "date-time", "uuid", "uuid4")}},
    "pattern_code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2,4}$"},
    "pattern_groups": {"type": "string", "pattern": "^(abc|de)+x?\\.y(z{2}|q*)$"},
    "pattern_dot_quote": {"type": "string", "pattern": "^a.b\"q\"[^a-z]*[0-9]{1,}$"},
    "int_min0": {"type": "integer", "minimum": 0},
    "int_range": {"type": "integer", "minimum": -5, "maximum": 300},
    "int_exclusive": {"type": "integer", "exclusiveMinimum": 10, "exclusiveMaximum": 1000},
    "int_max": {"type": "integer", "maximum": 99},
    "int_min_big": {"type": "integer", "minimum": 1234},
    "int_min_neg": {"type": "integer", "minimum": -1234},
    "int_max_neg": {"type": "integer", "maximum": -20},
    "int_neg_range": {"type": "integer", "minimum": -20, "maximum": -3},
    "int_min_7": {"type": "integer", "minimum": 7},
    # (Not a "$ref" at the root: llama.cpp's Python twin, given a file, cannot then resolve the refs inside.)
    "recursive_ref": {"type": "object", "properties": {"head": {"$ref": "#/$defs/node"}}, "required": ["head"],
                      "$defs": {"node": {"type": "object",
                                         "properties": {"v": {"type": "integer"},
                                                        "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}},
                                         "required": ["v"]}}},
    "definitions_ref": {"type": "object", "properties": {"p": {"$ref": "#/definitions/point"},
                                                         "q": {"$ref": "#/definitions/point"}},
                        "definitions": {"point": {"type": "array", "items": {"type": "number"},
                                                  "minItems": 2, "maxItems": 2}}},
    "all_of": {"allOf": [{"properties": {"a": {"type": "string"}}}, {"$ref": "#/$defs/b"},
                         {"anyOf": [{"properties": {"c": {"type": "integer"}}}]}],
               "$defs": {"b": {"properties": {"b": {"type": "boolean"}}}}},
    "reserved_names": {"properties": {"string": {"type": "string"}, "root": {"type": "integer"},
                                      "value": {"type": "object"}}},
    "odd_names": {"properties": {"first name": {"type": "string"}, "a.b": {"const": 1}, "x--y": {"const": 2}}},
    "name_clash": {"properties": {"a-b": {"enum": ["x"]}, "a": {"properties": {"b": {"enum": ["y"]}}}}},
    "nested": {"type": "object", "properties": {
        "items": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer", "minimum": 1}, "label": {"type": "string", "maxLength": 20},
            "kind": {"enum": ["a", "b"]}}, "required": ["id", "kind"]}}}, "required": ["items"]},
}

# Schemas llama.cpp's converter refuses (an exception in Python, an error in C++).
REFUSED = {
    "unknown_type": {"type": "unknown"},
    "bad_pattern": {"type": "string", "pattern": "abc"},
    "missing_ref": {"$ref": "#/$defs/nope"},
    "relative_ref": {"$ref": "other.json#/a"},
}


def _llama_converter() -> pathlib.Path:
    found = sorted(SOURCES.glob("llama_cpp_python-*/vendor/llama.cpp/examples/json_schema_to_grammar.py"))
    if not found:
        pytest.skip(f"llama.cpp's json_schema_to_grammar.py is not under {SOURCES} (scripts/build-llamacpp-tools.sh "
                    "unpacks it)")
    return found[-1]


def _llama(schema, tmp_path: pathlib.Path) -> subprocess.CompletedProcess:
    f = tmp_path / "schema.json"
    f.write_text(json.dumps(schema))
    return subprocess.run([sys.executable, str(_llama_converter()), str(f)], capture_output=True, text=True,
                          timeout=60)


def _ours(schema) -> subprocess.CompletedProcess:
    return subprocess.run([str(tool("json_schema_tool"))], input=json.dumps(schema), capture_output=True,
                          text=True, timeout=60)


# A quoted GBNF literal not followed by a repetition operator, then one space and another such literal.
_ADJACENT_LITERALS = re.compile(r'"((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"(?![*+?{])')


def _merge_literals(line: str) -> str:
    """Adjacent pattern literals joined, as llama.cpp's C++ converter joins them (its Python twin does not)."""
    while True:
        merged = _ADJACENT_LITERALS.sub(lambda m: f'"{m.group(1)}{m.group(2)}"', line)
        if merged == line:
            return line
        line = merged


@pytest.mark.parametrize("name", SCHEMAS)
def test_grammar_text_is_llamacpps(name, tmp_path):
    want = _llama(SCHEMAS[name], tmp_path)
    assert want.returncode == 0, f"llama.cpp's converter refuses the schema: {want.stderr[-1000:]}"
    got = _ours(SCHEMAS[name])
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip().split("\n") == [_merge_literals(r) for r in want.stdout.strip().split("\n")]


@pytest.mark.parametrize("name", REFUSED)
def test_refused_as_llamacpp_refuses(name, tmp_path):
    want = _llama(REFUSED[name], tmp_path)
    assert want.returncode != 0, f"llama.cpp's converter takes it: {want.stdout}"
    got = _ours(REFUSED[name])
    assert got.returncode == 1, (got.returncode, got.stdout, got.stderr)
    assert got.stderr.startswith("JSON schema conversion failed: ") and got.stderr.count("\n") == 1, got.stderr
