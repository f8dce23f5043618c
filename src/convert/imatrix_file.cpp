#include "convert/imatrix_file.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <utility>

#include "formats/ggml_type.h"
#include "formats/gguf_reader.h"
#include "formats/gguf_value.h"
#include "formats/gguf_writer.h"
#include "formats/mapped_file.h"

namespace qe::convert {
namespace {

constexpr char kGgufMagic[4] = {'G', 'G', 'U', 'F'};
constexpr char kSumsSuffix[] = ".in_sum2";
constexpr char kCountsSuffix[] = ".counts";

Error file_error(const std::string& path, std::string field, std::string reason) {
  return Error{path, std::move(field), std::move(reason)};
}

// Sums of squares and token counts are never negative, and a NaN or infinity would poison every
// quantization error llama-quantize minimizes with them: such a file is broken, not data.
std::optional<std::string> bad_value(std::span<const float> v, const char* what) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) return std::string(what) + "[" + std::to_string(i) + "] is not finite";
    if (v[i] < 0) return std::string(what) + "[" + std::to_string(i) + "] is negative";
  }
  return std::nullopt;
}

std::vector<float> copy_floats(std::span<const std::byte> bytes) {
  std::vector<float> out(bytes.size() / sizeof(float));
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));  // maps need not align
  return out;
}

// ---- GGUF

// ggml's ne[0..3]: dims as on disk, padded with 1 (ggml writes n_dims without trailing 1s).
std::array<uint64_t, 4> ne4(const GgufTensorInfo& t) {
  std::array<uint64_t, 4> ne = {1, 1, 1, 1};
  for (size_t i = 0; i < t.dims.size() && i < 4; ++i) ne[i] = t.dims[i];
  return ne;
}

Result<ImatrixEntry> read_gguf_entry(const GgufFile& f, const std::string& name, const GgufTensorInfo* sums,
                                     const GgufTensorInfo* counts) {
  if (sums == nullptr || counts == nullptr) {
    const std::string missing = name + (sums == nullptr ? kSumsSuffix : kCountsSuffix);
    return file_error(f.name(), "tensor " + missing, "missing (each weight needs both .in_sum2 and .counts)");
  }
  for (const GgufTensorInfo* t : {sums, counts})
    if (t->type != GgmlType::F32)
      return file_error(f.name(), "tensor " + t->name,
                        "type is " + std::string(ggml_type_name(t->type)) + ", expected f32");
  const std::array<uint64_t, 4> s = ne4(*sums), c = ne4(*counts);
  if (s[2] != 1 || s[3] != 1)
    return file_error(f.name(), "tensor " + sums->name, "has more than 2 dims (expected {n_cols, n_mat})");
  if (c[0] != 1 || c[2] != 1 || c[3] != 1 || c[1] != s[1])
    return file_error(
        f.name(), "tensor " + counts->name,
        "shape is not {1, " + std::to_string(s[1]) + "} (one count per matrix of " + sums->name + ")");
  ImatrixEntry e;
  e.name = name;
  e.in_sum2 = copy_floats(sums->data);
  e.counts = copy_floats(counts->data);
  if (std::optional<std::string> bad = bad_value(e.in_sum2, "value"))
    return file_error(f.name(), "tensor " + sums->name, *bad);
  if (std::optional<std::string> bad = bad_value(e.counts, "count"))
    return file_error(f.name(), "tensor " + counts->name, *bad);
  return e;
}

Result<ImatrixData> read_gguf(const std::string& path, std::span<const std::byte> bytes) {
  Result<GgufFile> opened = GgufFile::parse(bytes, path);
  if (!opened) return opened.error();
  const GgufFile& f = *opened;
  ImatrixData d;
  d.format = ImatrixFormat::kGguf;
  // llama.cpp never checks general.type, but a model or any other GGUF passed by mistake says what it
  // is here, and "not an imatrix" beats "key imatrix.datasets: missing".
  if (f.has("general.type")) {
    Result<std::string> type = f.get_string("general.type");
    if (!type) return type.error();
    if (*type != "imatrix")
      return file_error(path, "key general.type", "is \"" + *type + "\", expected \"imatrix\"");
  }
  // llama-quantize refuses a file without these three and aborts on any other type (ggml asserts).
  Result<std::span<const std::string>> datasets = f.get_string_array("imatrix.datasets");
  if (!datasets) return datasets.error();
  d.datasets.assign(datasets->begin(), datasets->end());
  Result<uint32_t> chunk_count = f.get_u32("imatrix.chunk_count");
  if (!chunk_count) return chunk_count.error();
  Result<uint32_t> chunk_size = f.get_u32("imatrix.chunk_size");
  if (!chunk_size) return chunk_size.error();
  d.chunk_count = *chunk_count;
  d.chunk_size = *chunk_size;

  // Other tensors are ignored, as llama.cpp does; the map sorts by name as llama.cpp's does.
  std::map<std::string, std::pair<const GgufTensorInfo*, const GgufTensorInfo*>> pairs;
  for (const GgufTensorInfo& t : f.tensors()) {
    const std::string_view n = t.name;
    if (n.ends_with(kSumsSuffix))
      pairs[std::string(n.substr(0, n.size() - std::strlen(kSumsSuffix)))].first = &t;
    else if (n.ends_with(kCountsSuffix))
      pairs[std::string(n.substr(0, n.size() - std::strlen(kCountsSuffix)))].second = &t;
  }
  if (pairs.empty()) return file_error(path, "tensors", "no .in_sum2/.counts tensors (no data)");
  for (const auto& [name, p] : pairs) {
    if (name.empty()) {
      const GgufTensorInfo* t = p.first != nullptr ? p.first : p.second;
      return file_error(path, "tensor " + t->name, "names no weight (empty name before the suffix)");
    }
    Result<ImatrixEntry> e = read_gguf_entry(f, name, p.first, p.second);
    if (!e) return e.error();
    d.entries.push_back(std::move(*e));
  }
  return d;
}

// ---- Legacy .dat

class LegacyCursor {
 public:
  LegacyCursor(std::span<const std::byte> bytes, const std::string& path) : b_(bytes), path_(path) {}

  uint64_t left() const { return b_.size() - pos_; }
  uint64_t pos() const { return pos_; }

  Result<int32_t> i32(const std::string& field) {
    if (left() < 4) return truncated(field, 4);
    int32_t v = 0;
    std::memcpy(&v, b_.data() + pos_, 4);
    pos_ += 4;
    return v;
  }
  // `n` bytes as a string; the caller has checked n >= 0.
  Result<std::string> bytes(const std::string& field, uint64_t n) {
    if (left() < n) return truncated(field, n);
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  Result<std::vector<float>> floats(const std::string& field, uint64_t n) {
    if (left() / sizeof(float) < n) return truncated(field, n * sizeof(float));  // before allocating
    std::vector<float> v = copy_floats(b_.subspan(pos_, n * sizeof(float)));
    pos_ += n * sizeof(float);
    return v;
  }
  Error error(const std::string& field, std::string reason) const {
    return file_error(path_, field, std::move(reason));
  }

 private:
  Error truncated(const std::string& field, uint64_t need) const {
    return error(field, "truncated: needs " + std::to_string(need) + " bytes at offset " +
                            std::to_string(pos_) + ", " + std::to_string(left()) + " left");
  }

  std::span<const std::byte> b_;
  const std::string& path_;
  uint64_t pos_ = 0;
};

Result<ImatrixEntry> read_legacy_entry(LegacyCursor& in, int32_t index) {
  const std::string at = "entry " + std::to_string(index);
  Result<int32_t> len = in.i32(at + " name length");
  if (!len) return len.error();
  if (*len < 1) return in.error(at + " name length", "is " + std::to_string(*len) + ", expected >= 1");
  Result<std::string> name = in.bytes(at + " name", static_cast<uint64_t>(*len));
  if (!name) return name.error();
  // llama.cpp would cut the name at a NUL; no weight name holds one, so the file is broken.
  if (name->find('\0') != std::string::npos) return in.error(at + " name", "contains a NUL byte");
  const std::string field = "entry " + std::to_string(index) + " (" + *name + ")";
  Result<int32_t> ncall = in.i32(field + " ncall");
  if (!ncall) return ncall.error();
  // llama-imatrix writes ncall = ceil(max count / chunk_size) and skips entries without data, so it is
  // >= 1; for 0, llama-quantize uses the values undivided but llama-imatrix reads "no data": the two
  // disagree, so such a file is refused rather than guessed at.
  if (*ncall < 1) return in.error(field + " ncall", "is " + std::to_string(*ncall) + ", expected >= 1");
  Result<int32_t> nval = in.i32(field + " nval");
  if (!nval) return nval.error();
  if (*nval < 1) return in.error(field + " nval", "is " + std::to_string(*nval) + ", expected >= 1");
  Result<std::vector<float>> values = in.floats(field + " values", static_cast<uint64_t>(*nval));
  if (!values) return values.error();
  if (std::optional<std::string> bad = bad_value(*values, "value")) return in.error(field, *bad);
  ImatrixEntry e;
  e.name = std::move(*name);
  e.in_sum2 = std::move(*values);
  // values / ncall is what llama-quantize uses: count ncall gives importance() exactly that.
  e.counts = {static_cast<float>(*ncall)};
  return e;
}

Result<ImatrixData> read_legacy(const std::string& path, std::span<const std::byte> bytes) {
  LegacyCursor in(bytes, path);
  ImatrixData d;
  d.format = ImatrixFormat::kLegacy;
  Result<int32_t> n_entries = in.i32("n_entries");
  if (!n_entries) return n_entries.error();
  if (*n_entries < 1)
    return in.error("n_entries", "is " + std::to_string(*n_entries) + ", expected >= 1 (no data)");
  // The smallest entry is 17 bytes (len, 1-byte name, ncall, nval, one value): a count the file
  // cannot hold is refused before any entry is read.
  if (static_cast<uint64_t>(*n_entries) > in.left() / 17)
    return in.error("n_entries", "is " + std::to_string(*n_entries) + " but only " +
                                     std::to_string(in.left()) +
                                     " bytes follow (not a legacy imatrix file?)");
  std::map<std::string, size_t> seen;
  for (int32_t i = 0; i < *n_entries; ++i) {
    Result<ImatrixEntry> e = read_legacy_entry(in, i);
    if (!e) return e.error();
    // llama-quantize keeps the last of two same-named entries, llama-imatrix adds them: ambiguous.
    if (!seen.emplace(e->name, i).second)
      return in.error("entry " + std::to_string(i) + " (" + e->name + ")",
                      "duplicates entry " + std::to_string(seen[e->name]));
    d.entries.push_back(std::move(*e));
  }
  // Later versions append the chunk count and the dataset's name; older files end here.
  if (in.left() > 0) {
    Result<int32_t> last = in.i32("last_chunk");
    if (!last) return last.error();
    if (*last < 0) return in.error("last_chunk", "is " + std::to_string(*last) + ", expected >= 0");
    d.chunk_count = *last;
    if (in.left() > 0) {
      Result<int32_t> len = in.i32("dataset name length");
      if (!len) return len.error();
      if (*len < 0) return in.error("dataset name length", "is " + std::to_string(*len) + ", expected >= 0");
      Result<std::string> name = in.bytes("dataset name", static_cast<uint64_t>(*len));
      if (!name) return name.error();
      d.datasets.push_back(std::move(*name));
    }
    if (in.left() > 0)
      return in.error("offset " + std::to_string(in.pos()),
                      std::to_string(in.left()) + " unexpected bytes after the dataset name");
  }
  std::sort(d.entries.begin(), d.entries.end(),
            [](const ImatrixEntry& a, const ImatrixEntry& b) { return a.name < b.name; });
  return d;
}

// ---- Writing

Status check_for_write(const std::string& path, const ImatrixData& data) {
  auto err = [&](std::string field, std::string reason) { return Status(file_error(path, field, reason)); };
  if (data.entries.empty()) return err("entries", "none (llama-quantize refuses a file without data)");
  if (data.datasets.empty())
    return err("imatrix.datasets", "empty (llama-quantize reads the first dataset's name unchecked)");
  constexpr int64_t kU32Max = std::numeric_limits<uint32_t>::max();
  if (data.chunk_count < 0 || data.chunk_count > kU32Max)
    return err("imatrix.chunk_count", std::to_string(data.chunk_count) + " does not fit in uint32");
  if (data.chunk_size < 0 || data.chunk_size > kU32Max)
    return err("imatrix.chunk_size", std::to_string(data.chunk_size) + " does not fit in uint32");
  std::map<std::string_view, size_t> seen;
  for (size_t i = 0; i < data.entries.size(); ++i) {
    const ImatrixEntry& e = data.entries[i];
    const std::string field = "entry " + std::to_string(i) + " (" + e.name + ")";
    if (e.name.empty()) return err(field, "empty name");
    // ggml's GGML_MAX_NAME (64, the NUL included) holds "<name>.in_sum2": checked here so that the
    // error names this file and entry, not only the writer's tensor.
    if (e.name.size() + std::strlen(kSumsSuffix) >= 64)
      return err(field, "name is " + std::to_string(e.name.size()) +
                            " bytes; with \".in_sum2\" llama.cpp allows " +
                            std::to_string(63 - std::strlen(kSumsSuffix)));
    if (!seen.emplace(e.name, i).second)
      return err(field, "duplicates entry " + std::to_string(seen[e.name]));
    if (e.counts.empty()) return err(field, "no counts (one per matrix)");
    if (e.in_sum2.empty() || e.in_sum2.size() % e.counts.size() != 0)
      return err(field, std::to_string(e.in_sum2.size()) + " in_sum2 values are not " +
                            std::to_string(e.counts.size()) + " matrices of n_cols >= 1");
    if (std::optional<std::string> bad = bad_value(e.in_sum2, "in_sum2")) return err(field, *bad);
    if (std::optional<std::string> bad = bad_value(e.counts, "counts")) return err(field, *bad);
  }
  return {};
}

}  // namespace

Result<ImatrixData> read_imatrix(const std::string& path) {
  Result<MappedFile> map = MappedFile::open(path);
  if (!map) return map.error();
  const std::span<const std::byte> bytes = map->bytes();
  if (bytes.size() >= 4 && std::memcmp(bytes.data(), kGgufMagic, 4) == 0) return read_gguf(path, bytes);
  return read_legacy(path, bytes);
}

Status write_imatrix_gguf(const std::string& path, const ImatrixData& data, bool overwrite) {
  if (Status s = check_for_write(path, data); !s) return s;
  GgufWriter w;
  // llama-imatrix's key order; values as it types them (u32 chunk numbers).
  for (auto& [key, value] : std::vector<std::pair<std::string, GgufValue>>{
           {"general.type", GgufValue::str("imatrix")},
           {"imatrix.datasets", GgufValue::array(data.datasets)},
           {"imatrix.chunk_count", GgufValue::u32(static_cast<uint32_t>(data.chunk_count))},
           {"imatrix.chunk_size", GgufValue::u32(static_cast<uint32_t>(data.chunk_size))},
       })
    if (Status s = w.set(key, std::move(value)); !s) return s;

  // llama-imatrix sorts by name and writes each weight's in_sum2 then counts; ggml stores n_dims
  // without trailing 1s, so a single matrix is {n_cols} and {1}.
  std::vector<const ImatrixEntry*> order;
  for (const ImatrixEntry& e : data.entries) order.push_back(&e);
  std::sort(order.begin(), order.end(),
            [](const ImatrixEntry* a, const ImatrixEntry* b) { return a->name < b->name; });
  for (const ImatrixEntry* e : order) {
    const auto n_mat = static_cast<uint64_t>(e->n_mat()), n_cols = static_cast<uint64_t>(e->n_cols());
    std::vector<uint64_t> sums_dims = {n_cols}, counts_dims = {1};
    if (n_mat > 1) {
      sums_dims.push_back(n_mat);
      counts_dims.push_back(n_mat);
    }
    if (Status s = w.add_tensor(e->name + kSumsSuffix, GgmlType::F32, sums_dims); !s) return s;
    if (Status s = w.add_tensor(e->name + kCountsSuffix, GgmlType::F32, counts_dims); !s) return s;
  }
  if (Status s = w.open(path, overwrite); !s) return s;
  for (const ImatrixEntry* e : order) {
    if (Status s = w.write_tensor(e->name + kSumsSuffix, std::as_bytes(std::span(e->in_sum2))); !s) return s;
    if (Status s = w.write_tensor(e->name + kCountsSuffix, std::as_bytes(std::span(e->counts))); !s) return s;
  }
  return w.finish();
}

std::vector<float> importance(const ImatrixEntry& entry) {
  QE_CHECK(!entry.counts.empty() && entry.in_sum2.size() % entry.counts.size() == 0);
  const size_t n_cols = entry.in_sum2.size() / entry.counts.size();
  std::vector<float> out(entry.in_sum2.size());
  for (size_t m = 0; m < entry.counts.size(); ++m) {
    const float count = entry.counts[m];
    for (size_t i = m * n_cols; i < (m + 1) * n_cols; ++i)
      out[i] = count > 0 ? entry.in_sum2[i] / count : 1.0f;
  }
  return out;
}

}  // namespace qe::convert
