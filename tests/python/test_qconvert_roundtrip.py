"""SmolLM2 round trip through qconvert: GGUF (q4_1) -> --to-hf f32 -> GGUF q8_0 gives the same tensor
bytes (XXH3 per tensor, from `qconvert --info --json --hash`) as requantizing the GGUF to q8_0 directly;
the exported directory is a valid LlamaForCausalLM whose tokenizer.json gives the GGUF tokenizer's ids;
and the converted files still generate sensible text in qrun."""

import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

from conftest import REPO, TEST_BIN

BIN = pathlib.Path(os.environ.get("QE_BIN", REPO / "build" / "bin"))


def run(exe, *args, timeout=300):
    path = BIN / exe
    if not path.exists():
        pytest.skip(f"{path} is not built (set QE_BIN)")
    p = subprocess.run([str(path), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        pytest.fail(f"{exe} {' '.join(map(str, args))} exited {p.returncode}: {p.stderr}")
    return p


def hashes(path):
    info = json.loads(run("qconvert", "--info", path, "--json", "--hash").stdout)
    return {t["name"]: (t["type"], t["shape"], t["xxh3"]) for t in info["tensors"]}


@pytest.fixture(scope="module")
def exported(default_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("rt")
    run("qconvert", default_model, "--to-hf", d / "hf", "--type", "f32", "-t", 2)
    return d


def test_round_trip_q8_0_identical(default_model, exported):
    d = exported
    run("qconvert", d / "hf", "-o", d / "via-hf.gguf", "--type", "q8_0", "-t", 2)
    run("qconvert", default_model, "-o", d / "direct.gguf", "--type", "q8_0", "--allow-requantize", "-t", 2)
    a, b = hashes(d / "via-hf.gguf"), hashes(d / "direct.gguf")
    assert a.keys() == b.keys()
    bad = [n for n in a if a[n] != b[n]]
    assert not bad, f"{len(bad)} tensors differ, first {bad[0]}: {a[bad[0]]} vs {b[bad[0]]}"
    assert a["blk.0.attn_q.weight"][0] == "q8_0" and a["token_embd.weight"][0] == "q8_0"


def test_exported_config_and_files(default_model, exported):
    from gguf import GGUFReader
    hf = exported / "hf"
    assert sorted(p.name for p in hf.iterdir()) == ["README.md", "config.json", "generation_config.json", "model.safetensors",
                                                    "tokenizer.json", "tokenizer_config.json"]
    cfg = json.loads((hf / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["torch_dtype"] == "float32"
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
            cfg["intermediate_size"], cfg["vocab_size"], cfg["max_position_embeddings"]) == (576, 30, 9, 3, 1536, 49152, 8192)
    assert cfg["rms_norm_eps"] == 1e-05 and cfg["rope_theta"] == 100000.0 and cfg["tie_word_embeddings"] is True
    from safetensors.numpy import load_file
    st = load_file(hf / "model.safetensors")
    assert "lm_head.weight" not in st and st["model.embed_tokens.weight"].shape == (49152, 576)
    # q rows: un-permuting the export must give back the GGUF's row order (dequantized).
    from gguf import quants
    r = {t.name: t for t in GGUFReader(default_model).tensors}
    t = r["blk.3.attn_k.weight"]
    gg = quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(192, 576)
    hfk = st["model.layers.3.self_attn.k_proj.weight"]
    perm = hfk.reshape(3, 2, 32, 576).swapaxes(1, 2).reshape(192, 576)
    np.testing.assert_array_equal(perm, gg)


def test_exported_tokenizer_ids(default_model, exported):
    from tokenizers import Tokenizer
    tok_tool = TEST_BIN / "tokenize_tool"
    if not tok_tool.exists():
        pytest.skip(f"{tok_tool} is not built")
    lines = ["The capital of France is Paris.", "  spaces   and\ttabs\n", "12345 émigré 東京 🙂", "<|im_start|>user hi<|im_end|>"]
    corpus = exported / "lines.jsonl"
    corpus.write_text("".join(json.dumps(s) + "\n" for s in lines))
    ours = [json.loads(s) for s in subprocess.run([str(tok_tool), str(default_model), str(corpus)], capture_output=True,
                                                  text=True, check=True).stdout.split("\n") if s]
    hf = Tokenizer.from_file(str(exported / "hf" / "tokenizer.json"))
    want = [hf.encode(s, add_special_tokens=False).ids for s in lines]
    got = [x if isinstance(x, list) else x.get("ids", x) for x in ours]
    assert got == want


@pytest.mark.parametrize("type_name", ["q4_0", "q8_0"])
def test_qrun_generates_from_converted(exported, type_name):
    out = exported / f"smol-{type_name}.gguf"
    run("qconvert", exported / "hf", "-o", out, "--type", type_name, "-t", 2, "--force")
    if not (BIN / "qrun").exists():
        pytest.skip("qrun is not built")
    p = run("qrun", "-m", out, "-p", "The capital of France is", "-n", 16, "--temp", 0, timeout=600)
    assert p.stdout.startswith("The capital of France is"), p.stdout
    words = p.stdout[len("The capital of France is"):].split()
    assert len(words) >= 5 and sum(w.strip(".,!?").isalpha() for w in words) >= len(words) // 2, p.stdout
    if type_name == "q8_0":  # q4_0 of an already-q4_1 135M model is a second 4-bit rounding: coherent, not factual
        assert "Paris" in p.stdout, p.stdout
