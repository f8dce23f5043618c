// Drives the tokenizer for the Python interop tests (tests/python/test_tokenizer_hf.py).
//
//   tokenize_tool MODEL.gguf LINES.txt      one JSON array of ids per input line (the line without its
//                                           "\n"; add_special=false, parse_special=true)
//   tokenize_tool MODEL.gguf LINES.jsonl    the same, each input line being a JSON string (so a test
//                                           line may hold newlines)
//   tokenize_tool MODEL.gguf --detok IDS    IDS is a file of JSON arrays, one per line; prints each
//                                           detokenized (llama_detokenize(remove_special=false,
//                                           unparse_special=true)) as a JSON string, one per line
//   tokenize_tool MODEL.gguf --stream IDS   as --detok, but through token_to_piece + Utf8Stream
//   tokenize_tool MODEL.gguf --bench LINES.txt   tokenizes the whole file as one text, prints timing
//   tokenize_tool MODEL.gguf --info         special ids and flags as JSON
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats/gguf_reader.h"
#include "tokenizer/tokenizer.h"

namespace {

int fail(const std::string& msg) {
  std::fprintf(stderr, "tokenize_tool: %s\n", msg.c_str());
  return 1;
}

bool read_file(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t nl = s.find('\n', pos);
    if (nl == std::string::npos) nl = s.size();
    lines.push_back(s.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return lines;
}

// JSON needs valid UTF-8; invalid bytes (none expected) become U+FFFD instead of an exception.
std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    return fail("usage: tokenize_tool MODEL.gguf LINES.txt | --detok IDS | --stream IDS | --bench LINES | --info");
  }
  qe::Result<qe::GgufFile> gguf = qe::GgufFile::open(argv[1]);
  if (!gguf) return fail(gguf.error().message());
  qe::Result<qe::tokenizer::Tokenizer> tok = qe::tokenizer::Tokenizer::from_gguf(*gguf);
  if (!tok) return fail(tok.error().message());

  const std::string mode = argv[2];
  if (mode == "--info") {
    nlohmann::json j = {{"n_vocab", tok->n_vocab()}, {"bos", tok->bos()}, {"eos", tok->eos()},
                        {"eot", tok->eot()},         {"eom", tok->eom()}, {"unk", tok->unk()},
                        {"add_bos", tok->add_bos()}, {"add_eos", tok->add_eos()}, {"eog", tok->vocab().eog}};
    std::cout << dump(j) << "\n";
    return 0;
  }
  if (mode == "--detok" || mode == "--stream" || mode == "--bench") {
    if (argc < 4) return fail(mode + " needs a file");
  }
  std::string input;
  const std::string path = mode.starts_with("--") ? argv[3] : argv[2];
  if (!read_file(path, input)) return fail("cannot read " + path);

  if (mode == "--bench") {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tok->tokenize(input, false, true);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << dump({{"bytes", input.size()}, {"tokens", ids.size()}, {"seconds", s}}) << "\n";
    return 0;
  }

  const bool jsonl = path.ends_with(".jsonl");
  std::string out;
  for (std::string line : split_lines(input)) {
    if (jsonl) {
      try {
        line = nlohmann::json::parse(line).get<std::string>();
      } catch (const std::exception& e) {
        return fail(std::string("bad JSON line: ") + e.what());
      }
    }
    if (mode == "--detok" || mode == "--stream") {
      std::vector<int32_t> ids;
      try {
        ids = nlohmann::json::parse(line).get<std::vector<int32_t>>();
      } catch (const std::exception& e) {
        return fail(std::string("bad ids line: ") + e.what());
      }
      std::string text;
      if (mode == "--detok") {
        text = tok->detokenize(ids, false, true);
      } else {
        qe::tokenizer::Utf8Stream stream;
        for (int32_t id : ids) text += stream.push(tok->token_to_piece(id, true));
        text += stream.finish();
      }
      out += dump(nlohmann::json(text));
    } else {
      out += dump(nlohmann::json(tok->tokenize(line, false, true)));
    }
    out += '\n';
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}
