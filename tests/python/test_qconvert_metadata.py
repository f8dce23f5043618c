"""What a model is survives qconvert: the general.* keys through GGUF -> HF -> GGUF (byte for byte, in
order), README.md's front matter as HF and llama.cpp's convert_hf_to_gguf.py (gguf-py's Metadata, the
witness) read it, the model card (name, licence, architecture, usage, conversion, no absolute paths),
the report's warnings, and one unit convention (MiB sizes, MB/s rates, "Nx smaller/larger")."""

import json
import os
import pathlib
import re
import subprocess

import numpy as np
import pytest
import yaml

import gguf
from gguf.metadata import Metadata

from conftest import REPO
from make_tiny_hf_model import make_tiny_hf_model

BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))


def qconvert(*args, expect=0, timeout=600):
    exe = BIN / "qconvert"
    if not exe.exists():
        pytest.fail(f"{exe} is not built (set QE_BIN)")
    p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert p.returncode == expect, f"qconvert {' '.join(map(str, args))} exited {p.returncode}: {p.stderr}"
    return p


def general_fields(path) -> list[tuple[str, list[bytes]]]:
    """Each general.* key with the raw bytes of its on-disk parts (key, type, value), in file order."""
    r = gguf.GGUFReader(str(path))
    return [(k, [bytes(np.asarray(p).tobytes()) for p in f.parts]) for k, f in r.fields.items()
            if k.startswith("general.")]


def front_matter(readme: pathlib.Path) -> dict:
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.fixture(scope="module")
def smollm2_roundtrip(default_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("meta")
    qconvert(default_model, "--to-hf", d / "hf", "--type", "f16", "-t", 2)
    qconvert(d / "hf", "-o", d / "back.gguf", "--type", "q4_1", "-t", 2)
    return d


def test_gguf_hf_gguf_keeps_every_general_key_byte_for_byte(default_model, smollm2_roundtrip):
    src, back = general_fields(default_model), general_fields(smollm2_roundtrip / "back.gguf")
    assert [k for k, _ in back] == [k for k, _ in src]
    for (k, a), (_, b) in zip(src, back):
        assert a == b, k
    assert {k for k, _ in src} >= {"general.name", "general.organization", "general.finetune", "general.basename",
                                   "general.size_label", "general.license", "general.languages"}


def test_export_front_matter_is_read_back_by_gguf_py(default_model, smollm2_roundtrip):
    """convert_hf_to_gguf.py's own reader of model cards recovers the same general.* values from our export."""
    hf = smollm2_roundtrip / "hf"
    card = front_matter(hf / "README.md")
    assert card["license"] == "apache-2.0" and card["language"] == ["en"]
    src = gguf.GGUFReader(str(default_model))

    def value(key):
        return src.fields[key].contents()

    m = Metadata.load(None, hf, None, 0)
    assert m.name == value("general.name")
    assert m.organization == value("general.organization")
    assert m.finetune == value("general.finetune")
    assert m.basename == value("general.basename")
    assert m.size_label == value("general.size_label")
    assert m.license == value("general.license")
    assert m.languages == value("general.languages")
    assert m.tags is None  # no pipeline_tag: gguf-py would add it to the tags


def tiny_gguf_with(tmp_path, name: str, extra: list, sub: dict | None = None) -> pathlib.Path:
    """A tiny f32 GGUF (from our HF converter) rewritten by gguf-py with the keys `extra` ((key, value,
    type) triples; `sub`: array element types) in place of any of the same name."""
    make_tiny_hf_model(tmp_path / "tiny", dtype="f32")
    qconvert(tmp_path / "tiny", "-o", tmp_path / "plain.gguf", "--type", "f32")
    r = gguf.GGUFReader(str(tmp_path / "plain.gguf"))
    w = gguf.GGUFWriter(str(tmp_path / name), "llama")
    names = {k for k, _, _ in extra}
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture" or k in names:
            continue
        w.add_key_value(k, f.contents(), gguf.GGUFValueType(f.types[0]),
                        sub_type=gguf.GGUFValueType(f.types[-1]) if len(f.types) > 1 else None)
    for k, v, t in extra:
        w.add_key_value(k, v, t, sub_type=(sub or {}).get(k))
    for t in r.tensors:
        w.add_tensor(t.name, np.array(t.data), raw_shape=list(reversed([int(x) for x in t.shape])))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tmp_path / name


def typed_source(tmp_path) -> pathlib.Path:
    """A tiny f32 GGUF rewritten by gguf-py with general.* keys of every type."""
    extra = [
        ("general.name", "Tiny \"quoted\" name: with a colon, a # hash\nand a newline — ünïcode", gguf.GGUFValueType.STRING),
        ("general.organization", "  leading spaces", gguf.GGUFValueType.STRING),
        ("general.version", "1.0", gguf.GGUFValueType.STRING),
        # An apostrophe, then more brackets than the reader's nesting guard allows: the written front
        # matter's comment ("the GGUF file's keys") once opened a quote there for the guard, which then
        # counted these brackets and dropped the whole front matter as too deeply nested.
        ("general.description", "it's " + "[" * 70, gguf.GGUFValueType.STRING),
        ("general.size_label", "123", gguf.GGUFValueType.STRING),  # a string that reads as a number
        ("general.tags", ["yes", "no", "null", "text-generation"], gguf.GGUFValueType.ARRAY),
        ("general.languages", ["en"], gguf.GGUFValueType.ARRAY),
        ("general.base_model.count", 1, gguf.GGUFValueType.UINT32),
        ("general.base_model.0.name", "Base", gguf.GGUFValueType.STRING),
        ("general.base_model.0.repo_url", "https://huggingface.co/org/base", gguf.GGUFValueType.STRING),
        ("general.x.u8", 255, gguf.GGUFValueType.UINT8),
        ("general.x.i8", -128, gguf.GGUFValueType.INT8),
        ("general.x.u16", 65535, gguf.GGUFValueType.UINT16),
        ("general.x.i16", -32768, gguf.GGUFValueType.INT16),
        ("general.x.i32", -7, gguf.GGUFValueType.INT32),
        ("general.x.u64", 2**64 - 1, gguf.GGUFValueType.UINT64),
        ("general.x.i64", -(2**63), gguf.GGUFValueType.INT64),
        ("general.x.f32", 0.1, gguf.GGUFValueType.FLOAT32),
        ("general.x.f64", 1e-300, gguf.GGUFValueType.FLOAT64),
        ("general.x.bool", False, gguf.GGUFValueType.BOOL),
        ("general.x.ints", [1, -2, 3], gguf.GGUFValueType.ARRAY),
        ("general.x.floats", [0.5, -1.25], gguf.GGUFValueType.ARRAY),
    ]
    sub = {"general.tags": gguf.GGUFValueType.STRING, "general.languages": gguf.GGUFValueType.STRING,
           "general.x.ints": gguf.GGUFValueType.INT32, "general.x.floats": gguf.GGUFValueType.FLOAT32}
    return tiny_gguf_with(tmp_path, "typed.gguf", extra, sub)


def test_every_gguf_value_type_survives_the_hf_front_matter(tmp_path):
    src = typed_source(tmp_path)
    p = qconvert(src, "--to-hf", tmp_path / "hf")
    assert "warning" not in p.stderr
    card = front_matter(tmp_path / "hf" / "README.md")  # PyYAML reads what we wrote
    assert card["gguf"]["general.x.i64"] == {"type": "int64", "value": -(2**63)}
    assert card["gguf"]["general.size_label"] == "123"
    qconvert(tmp_path / "hf", "-o", tmp_path / "back.gguf", "--type", "f32")
    want = [(k, v) for k, v in general_fields(src) if k not in ("general.file_type", "general.quantization_version")]
    got = [(k, v) for k, v in general_fields(tmp_path / "back.gguf")
           if k not in ("general.file_type", "general.quantization_version")]
    assert [k for k, _ in got] == [k for k, _ in want]
    for (k, a), (_, b) in zip(want, got):
        assert a == b, k


def write_card(d: pathlib.Path, front: str):
    (d / "README.md").write_text("---\n" + front + "---\n# A model\n", encoding="utf-8")


def test_a_hub_card_reads_as_gguf_py_reads_it(tmp_path):
    d = tmp_path / "My-Model-7B"
    make_tiny_hf_model(d)
    write_card(d, "license: mit\nlicense_name: MIT\nlanguage:\n- en\n- fr\ntags: [chat, llama]\n"
                  "pipeline_tag: text-generation\nbase_model:\n- meta-llama/llama-3.1-8b\n"
                  "- https://example.com/other\ndatasets: HuggingFaceTB/smoltalk\nmodel_name: My Model\n"
                  "organization: acme\nfinetune: instruct\nbasename: my-model\nsize_label: 7B\n")
    qconvert(d, "-o", tmp_path / "m.gguf")
    r = gguf.GGUFReader(str(tmp_path / "m.gguf"))
    ours = {k: f.contents() for k, f in r.fields.items() if k.startswith("general.")}
    m = Metadata.load(None, d, None, 0)
    assert ours["general.name"] == m.name == "My Model"
    assert ours["general.organization"] == m.organization
    assert ours["general.finetune"] == m.finetune
    assert ours["general.basename"] == m.basename
    assert ours["general.size_label"] == m.size_label
    assert ours["general.license"] == m.license == "mit"
    assert ours["general.license.name"] == m.license_name
    assert ours["general.tags"] == m.tags == ["chat", "llama", "text-generation"]
    assert ours["general.languages"] == m.languages == ["en", "fr"]
    assert ours["general.base_model.count"] == len(m.base_models) == 2
    for i, b in enumerate(m.base_models):
        for field in ("name", "organization", "repo_url"):
            if field in b:
                assert ours[f"general.base_model.{i}.{field}"] == b[field], (i, field)
    assert ours["general.dataset.count"] == len(m.datasets) == 1
    assert ours["general.dataset.0.repo_url"] == m.datasets[0]["repo_url"]


def test_no_card_names_the_model_after_its_folder(tmp_path):
    d = tmp_path / "folder-name"
    make_tiny_hf_model(d)
    (d / "README.md").unlink()
    qconvert(d, "-o", tmp_path / "m.gguf")
    r = gguf.GGUFReader(str(tmp_path / "m.gguf"))
    assert r.fields["general.name"].contents() == "folder-name"
    assert "general.license" not in r.fields


@pytest.mark.parametrize("front,why", [
    ("license: [unclosed\n", "not YAML"),
    ("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
     "not YAML"),
    ("- a list\n", "not a mapping"),
    ("tags: {a: 1}\n", "tags: not a string or a list"),
])
def test_an_odd_hub_card_is_a_warning(tmp_path, front, why):
    d = tmp_path / "m"
    make_tiny_hf_model(d)
    write_card(d, front)
    p = qconvert(d, "-o", tmp_path / "m.gguf", "--report", tmp_path / "r.json")
    warnings = [line[len("qconvert: warning: "):] for line in p.stderr.splitlines()
                if line.startswith("qconvert: warning:")]
    card = [w for w in warnings if "README.md" in w]  # (the tiny tokenizer has its own warning)
    assert len(card) == 1 and why in card[0], p.stderr
    assert json.loads((tmp_path / "r.json").read_text())["warnings"] == warnings


@pytest.mark.parametrize("block,key", [
    ("  general.x: {type: int8, value: 300}\n", "gguf.general.x"),
    ("  general.x: {type: nosuch, value: 1}\n", "gguf.general.x"),
    ("  general.x: [1, 2]\n", "gguf.general.x"),
    ("  llama.block_count: 3\n", "gguf.llama.block_count"),
    ("  general.x: \"a\"\n  general.x: \"b\"\n", "gguf"),
])
def test_a_broken_gguf_block_is_refused(tmp_path, block, key):
    d = tmp_path / "m"
    make_tiny_hf_model(d)
    write_card(d, "gguf:\n" + block)
    out = tmp_path / "out"
    out.mkdir()
    p = qconvert(d, "-o", out / "m.gguf", expect=1)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "README.md" in lines[0] and key in lines[0], p.stderr
    assert os.listdir(out) == []


@pytest.fixture(scope="module")
def card(default_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("card")
    p = qconvert(default_model, "-o", d / "smol-q8_0.gguf", "--type", "q8_0", "--allow-requantize", "--card",
                 "--report", d / "r.json", "-t", 2)
    return d, (d / "smol-q8_0.md").read_text(encoding="utf-8"), json.loads((d / "r.json").read_text()), p.stderr


def test_the_card_says_what_the_model_is_and_how_to_run_it(card):
    d, md, report, _ = card
    assert md.startswith("# Smollm2 135M 8k Lc100K Mix1 Ep2\n")
    assert "| Licence | apache-2.0 |" in md and "| Organization | HuggingFaceTB |" in md
    assert "file type MOSTLY_Q8_0" in md
    for row in ("| layers | 30 |", "| embedding length | 576 |", "| attention heads | 9 |", "| KV heads | 3 |",
                "| context length (training) | 8192 |", "| vocabulary | 49152 |"):
        assert row in md
    assert "qrun -m smol-q8_0.gguf" in md and "llama-cli -m smol-q8_0.gguf" in md
    assert re.search(r"\| q8_0 \| \d+ \| [\d.]+ MiB \| [\d.]+% \|", md)
    assert re.search(r"\(\d+\.\d\dx larger\)", md) and "MB/s" in md  # q4_1 -> q8_0 grows


def test_the_card_has_no_absolute_paths(card):
    d, md, _, _ = card
    assert str(d) not in md and str(REPO) not in md
    assert "qconvert SmolLM2-135M-Instruct.Q4_1.gguf -o smol-q8_0.gguf" in md


def test_printed_warnings_are_the_reports_and_the_cards(default_model, tmp_path):
    p = qconvert(default_model, "-o", tmp_path / "o.gguf", "--type", "q6_k", "--allow-requantize", "--card",
                 "--report", tmp_path / "r.json", "-t", 2)
    printed = [line[len("qconvert: warning: "):] for line in p.stderr.splitlines()
               if line.startswith("qconvert: warning: ")]
    assert printed, p.stderr  # row length 576 is no multiple of q6_K's 256: a fallback
    assert json.loads((tmp_path / "r.json").read_text())["warnings"] == printed
    md = (tmp_path / "o.md").read_text(encoding="utf-8")
    for w in printed:
        assert f"- {w}\n" in md


def test_to_hf_readme_is_the_card_after_the_front_matter(default_model, tmp_path):
    qconvert(default_model, "--to-hf", tmp_path / "hf", "--card", "-t", 2)
    text = (tmp_path / "hf" / "README.md").read_text(encoding="utf-8")
    assert front_matter(tmp_path / "hf" / "README.md")["model_name"] == "Smollm2 135M 8k Lc100K Mix1 Ep2"
    body = text.split("---\n", 2)[2]
    assert body.lstrip().startswith("# Smollm2 135M 8k Lc100K Mix1 Ep2")
    assert "## Architecture" in body and "AutoModelForCausalLM.from_pretrained(\"hf\")" in body
    assert str(tmp_path) not in text


def test_sizes_in_binary_units_and_honest_ratios(default_model, tmp_path):
    p = qconvert(default_model, "--to-hf", tmp_path / "hf", "-t", 2)
    assert re.search(r"source [\d.]+ MiB -> output [\d.]+ MiB \(file [\d.]+ MiB\), [\d.]+x larger, ", p.stderr)
    assert " MB " not in p.stderr and "ratio" not in p.stderr
    info = qconvert("--info", default_model).stdout
    assert re.search(r"general\.file_type\s+uint32\s+3 \(MOSTLY_Q4_1\)", info)


def test_a_key_the_front_matter_cannot_hold_is_a_warning(tmp_path):
    """GGUF keys are printable ASCII; one with a control byte (or past 256 bytes: YAML caps an implicit key
    at 1024 characters, and a control byte takes six) is left out of README.md with a warning."""
    odd = tiny_gguf_with(tmp_path, "odd.gguf", [("general.bad\x00" + "\x01" * 200, "x", gguf.GGUFValueType.STRING),
                                                ("general.x" * 40, "long", gguf.GGUFValueType.STRING)])
    p = qconvert(odd, "--to-hf", tmp_path / "hf")
    assert p.stderr.count("not printable ASCII of at most 256 bytes; not carried") == 2, p.stderr
    qconvert(tmp_path / "hf", "-o", tmp_path / "back.gguf", "--type", "f32")
    back = {k for k, _ in general_fields(tmp_path / "back.gguf")}
    assert "general.name" in back and not any(k.startswith("general.bad") or k.startswith("general.xgeneral") for k in back)
