// grammar_mask_tool: the tokens our grammar matcher refuses, for tests/python/test_llamacpp_parity.py
// and bench/grammar-vs-llamacpp.py.
//   grammar_mask_tool MODEL.gguf GRAMMAR_FILE [ID,ID,...] [REPEAT]
// Accepts the ids (generated tokens, in order) and prints the ids mask() sets to -inf on a row of zeros,
// space-separated, on one line (exit 0); a token the grammar refuses on the way: exit 1, naming it.
// With REPEAT, also times mask() REPEAT times and prints "mask_ms MEDIAN" on stderr.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "model/grammar.h"
#include "model/model.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: grammar_mask_tool MODEL.gguf GRAMMAR_FILE [ID,ID,...]\n");
    return 2;
  }
  qe::Result<std::unique_ptr<qe::model::Model>> m = qe::model::open_model(argv[1], {});
  if (!m) {
    std::fprintf(stderr, "%s\n", m.error().message().c_str());
    return 2;
  }
  std::ifstream in(argv[2], std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  qe::Result<std::shared_ptr<const qe::model::Grammar>> g = qe::model::Grammar::parse(text.str());
  if (!g) {
    std::fprintf(stderr, "%s\n", g.error().message().c_str());
    return 2;
  }
  qe::model::GrammarMatcher matcher(*g, std::make_shared<const qe::model::GrammarVocab>((*m)->tok));
  std::stringstream ids(argc > 3 ? argv[3] : "");
  for (std::string id; std::getline(ids, id, ',');) {
    if (id.empty()) continue;
    if (!matcher.allows(std::stoi(id)) || !matcher.accept(std::stoi(id))) {
      std::fprintf(stderr, "the grammar refuses token %s\n", id.c_str());
      return 1;
    }
  }
  std::vector<float> row(static_cast<size_t>((*m)->config.n_vocab), 0.0f);
  matcher.mask(row);
  if (argc > 4) {
    std::vector<double> ms;
    for (int r = std::max(1, std::atoi(argv[4])); r > 0; --r) {
      std::fill(row.begin(), row.end(), 0.0f);
      const auto t0 = std::chrono::steady_clock::now();
      matcher.mask(row);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    std::fprintf(stderr, "mask_ms %.3f\n", ms[ms.size() / 2]);
  }
  std::string out;
  for (size_t i = 0; i < row.size(); ++i)
    if (row[i] == -INFINITY) out += (out.empty() ? "" : " ") + std::to_string(i);
  std::printf("%s\n", out.c_str());
  return 0;
}
