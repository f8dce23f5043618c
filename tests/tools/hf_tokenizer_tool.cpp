// Drives the HF <-> GGUF tokenizer conversion for tests/python/test_hf_tokenizer_convert.py.
//
//   hf_tokenizer_tool import MODEL_DIR OUT.gguf      hf_tokenizer_to_gguf -> a GGUF holding the tokenizer
//                                                    keys, general.architecture/name and no tensors;
//                                                    warnings go to stderr
//   hf_tokenizer_tool export IN.gguf OUT_DIR         gguf_tokenizer_to_hf -> OUT_DIR/tokenizer.json and
//                                                    OUT_DIR/tokenizer_config.json
//   hf_tokenizer_tool tokenize IN.gguf LINES.jsonl   one JSON array of ids per JSON-string line, with
//                                                    add_special=true, parse_special=true (tokenize_tool
//                                                    covers add_special=false)
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats/gguf_reader.h"
#include "formats/gguf_writer.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace {

int fail(const std::string& msg) {
  std::fprintf(stderr, "hf_tokenizer_tool: %s\n", msg.c_str());
  return 1;
}

bool write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  return static_cast<bool>(out);
}

int do_import(const std::string& dir, const std::string& out) {
  std::vector<std::string> warnings;
  qe::Result<std::vector<qe::GgufKv>> kvs = qe::tokenizer::hf_tokenizer_to_gguf(dir, warnings);
  for (const std::string& w : warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  if (!kvs) return fail(kvs.error().message());
  qe::GgufWriter w;
  for (auto [k, v] : {std::pair<const char*, const char*>{"general.architecture", "llama"}, {"general.name", "tokenizer"}}) {
    if (qe::Status s = w.set(k, qe::GgufValue::str(v)); !s) return fail(s.error().message());
  }
  for (qe::GgufKv& kv : *kvs) {
    if (qe::Status s = w.set(std::move(kv.key), std::move(kv.value)); !s) return fail(s.error().message());
  }
  if (qe::Status s = w.open(out, true); !s) return fail(s.error().message());
  if (qe::Status s = w.finish(); !s) return fail(s.error().message());
  return 0;
}

int do_export(const std::string& in, const std::string& dir) {
  qe::Result<qe::GgufFile> gguf = qe::GgufFile::open(in);
  if (!gguf) return fail(gguf.error().message());
  qe::Result<qe::tokenizer::HfTokenizerFiles> files = qe::tokenizer::gguf_tokenizer_to_hf(*gguf);
  if (!files) return fail(files.error().message());
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail(dir + ": " + ec.message());
  if (!write_text(dir + "/tokenizer.json", files->tokenizer_json.dump(2)) ||
      !write_text(dir + "/tokenizer_config.json", files->tokenizer_config_json.dump(2))) {
    return fail(dir + ": cannot write the tokenizer files");
  }
  return 0;
}

int do_tokenize(const std::string& in, const std::string& lines_path) {
  qe::Result<qe::GgufFile> gguf = qe::GgufFile::open(in);
  if (!gguf) return fail(gguf.error().message());
  qe::Result<qe::tokenizer::Tokenizer> tok = qe::tokenizer::Tokenizer::from_gguf(*gguf);
  if (!tok) return fail(tok.error().message());
  std::ifstream f(lines_path, std::ios::binary);
  if (!f) return fail("cannot read " + lines_path);
  std::string line, out;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    std::string text;
    try {
      text = nlohmann::json::parse(line).get<std::string>();
    } catch (const std::exception& e) {
      return fail(std::string("bad JSON line: ") + e.what());
    }
    out += nlohmann::json(tok->tokenize(text, true, true)).dump() + "\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) return fail("usage: hf_tokenizer_tool import MODEL_DIR OUT.gguf | export IN.gguf OUT_DIR | tokenize IN.gguf LINES.jsonl");
  const std::string mode = argv[1];
  if (mode == "import") return do_import(argv[2], argv[3]);
  if (mode == "export") return do_export(argv[2], argv[3]);
  if (mode == "tokenize") return do_tokenize(argv[2], argv[3]);
  return fail("unknown mode " + mode);
}
