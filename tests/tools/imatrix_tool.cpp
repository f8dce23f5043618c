// Test driver for convert/imatrix_file.h, used by tests/python/test_imatrix_interop.py:
//   imatrix_tool dump FILE                 read_imatrix(FILE) as JSON (with each entry's importance)
//   imatrix_tool write-gguf JSON OUT [--force]   write_imatrix_gguf from JSON of the dump's shape
// JSON: {"format": "gguf" | "legacy", "datasets": [...], "chunk_count", "chunk_size",
//        "entries": [{"name", "n_mat", "n_cols", "in_sum2": [...], "counts": [...], "importance": [...]}]}
// (write-gguf reads only datasets, chunk_count, chunk_size and each entry's name, in_sum2, counts).
// An error prints "error: <message>" (plus " [option <name>]" when it names a setting) and exits 1.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "convert/imatrix_file.h"

namespace {

using qe::convert::ImatrixData;
using qe::convert::ImatrixEntry;

int usage() {
  std::fprintf(stderr,
               "usage: imatrix_tool dump FILE\n"
               "       imatrix_tool write-gguf JSON OUT [--force]\n");
  return 2;
}

int fail(const qe::Error& e) {
  std::string line = "error: " + e.message();
  if (!e.option.empty()) line += " [option " + e.option + "]";
  std::fprintf(stderr, "%s\n", line.c_str());
  return 1;
}

int dump(const std::string& path) {
  qe::Result<ImatrixData> d = qe::convert::read_imatrix(path);
  if (!d) return fail(d.error());
  nlohmann::json entries = nlohmann::json::array();
  for (const ImatrixEntry& e : d->entries) {
    entries.push_back({{"name", e.name},
                       {"n_mat", e.n_mat()},
                       {"n_cols", e.n_cols()},
                       {"in_sum2", e.in_sum2},
                       {"counts", e.counts},
                       {"importance", qe::convert::importance(e)}});
  }
  const nlohmann::json j = {{"format", d->format == qe::convert::ImatrixFormat::kGguf ? "gguf" : "legacy"},
                            {"datasets", d->datasets},
                            {"chunk_count", d->chunk_count},
                            {"chunk_size", d->chunk_size},
                            {"entries", entries}};
  const std::string text = j.dump(1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  return 0;
}

int write_gguf(const std::string& json_path, const std::string& out, bool force) {
  std::ifstream in(json_path);
  if (!in) return fail(qe::Error{json_path, "", "cannot open"});
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail(qe::Error{json_path, "", "not JSON"});
  ImatrixData d;
  try {
    d.datasets = j.at("datasets").get<std::vector<std::string>>();
    d.chunk_count = j.at("chunk_count").get<int64_t>();
    d.chunk_size = j.at("chunk_size").get<int64_t>();
    for (const nlohmann::json& e : j.at("entries"))
      d.entries.push_back({e.at("name").get<std::string>(), e.at("in_sum2").get<std::vector<float>>(),
                           e.at("counts").get<std::vector<float>>()});
  } catch (const nlohmann::json::exception& ex) {
    return fail(qe::Error{json_path, "", ex.what()});
  }
  if (qe::Status s = qe::convert::write_imatrix_gguf(out, d, force); !s) return fail(s.error());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 2 && args[0] == "dump") return dump(args[1]);
  if ((args.size() == 3 || (args.size() == 4 && args[3] == "--force")) && args[0] == "write-gguf")
    return write_gguf(args[1], args[2], args.size() == 4);
  return usage();
}
