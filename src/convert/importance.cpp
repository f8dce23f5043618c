#include "convert/importance.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>

#include "convert/imatrix_file.h"

namespace qe::convert {
namespace {

// llama-quantize copies these strings into a char[128] (llama_model_kv_override::val_str); we keep the
// same 127 bytes, backed off to a whole UTF-8 character so the value stays valid text.
std::string kv_override_string(const std::string& s) {
  constexpr size_t kMax = 127;
  if (s.size() <= kMax) return s;
  size_t n = kMax;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

constexpr std::string_view kImportanceSource = "<importance>";  // job.importance has no file

}  // namespace

Result<ImportanceSet> load_importance(const ConvertJob& job) {
  ImportanceSet set;
  if (!job.imatrix.empty()) {
    Result<ImatrixData> data = read_imatrix(job.imatrix);
    if (!data) {
      Error e = data.error();
      if (e.option.empty()) e.option = "imatrix";
      return e;
    }
    for (const ImatrixEntry& e : data->entries) set.rows[e.name] = {importance(e), e.n_mat(), true};
    set.metadata.push_back({"quantize.imatrix.file", GgufValue::str(kv_override_string(job.imatrix))});
    if (!data->datasets.empty())
      set.metadata.push_back(
          {"quantize.imatrix.dataset", GgufValue::str(kv_override_string(data->datasets[0]))});
    set.metadata.push_back(
        {"quantize.imatrix.entries_count", GgufValue::u32(static_cast<uint32_t>(data->entries.size()))});
    if (data->chunk_count > 0)
      set.metadata.push_back(
          {"quantize.imatrix.chunks_count", GgufValue::u32(static_cast<uint32_t>(data->chunk_count))});
  }
  if (job.importance)
    for (const auto& [name, w] : *job.importance) set.rows[name] = {w, 1, false};
  return set;
}

Status attach_importance(const ConvertJob& job, const ImportanceSet& set, std::vector<TensorPlan>& plans) {
  for (TensorPlan& p : plans) {
    auto it = set.rows.find(p.name);
    if (it == set.rows.end()) continue;
    const ImportanceSet::Row& row = it->second;
    const std::string file = row.from_file ? job.imatrix : std::string(kImportanceSource);
    const std::string option = row.from_file ? "imatrix" : "importance";
    const auto cols = static_cast<int64_t>(p.dims[0]);
    if (row.n_mat != 1)
      return Error{file, "entry " + p.name,
                   fmt::format("holds {} matrices (experts); the tensor is one matrix", row.n_mat), option};
    if (static_cast<int64_t>(row.weights.size()) != cols)
      return Error{
          file, "entry " + p.name,
          fmt::format("has {} columns, the tensor's rows have {} (an importance matrix of another model?)",
                      row.weights.size(), cols),
          option};
    if (!row.from_file)  // read_imatrix checked the file's values already
      for (float w : row.weights)
        if (!std::isfinite(w) || w < 0)
          return Error{file, "entry " + p.name, fmt::format("holds {}; weights must be finite and >= 0", w),
                       option};
    p.importance = row.weights;
  }
  return {};
}

void set_metadata(std::vector<GgufKv>& kvs, std::span<const GgufKv> extra) {
  // As ggml's gguf_set_val: an existing key is removed and the new value appended (llama-quantize's order).
  for (const GgufKv& kv : extra) {
    std::erase_if(kvs, [&](const GgufKv& x) { return x.key == kv.key; });
    kvs.push_back(kv);
  }
}

}  // namespace qe::convert
