// llama.cpp imatrix files (convert/imatrix_file.h): the GGUF writer's layout and a round trip,
// hand-made legacy .dat bytes, importance() as llama-quantize derives it, and one corrupt file per
// failure in each format, each refused with one line that names the file and the part.
#include "convert/imatrix_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "formats/gguf_reader.h"
#include "formats/gguf_writer.h"

namespace qe::convert {
namespace {

std::string tmp_path(const std::string& name) {
  return std::string(QE_TEST_TMPDIR) + "/imatrix_" + name + "_" + std::to_string(::getpid());
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Expects read_imatrix(path) to fail with one line naming the file, `field` and `reason`.
void expect_read_error(const std::string& path, const std::string& field, const std::string& reason) {
  Result<ImatrixData> r = read_imatrix(path);
  ASSERT_FALSE(r.ok()) << path;
  const std::string msg = r.error().message();
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find(field), std::string::npos) << "field '" << field << "' not in: " << msg;
  EXPECT_NE(msg.find(reason), std::string::npos) << "reason '" << reason << "' not in: " << msg;
}

ImatrixData sample() {
  ImatrixData d;
  d.datasets = {"wiki.train.raw", "code.txt"};
  d.chunk_count = 12;
  d.chunk_size = 512;
  // Out of name order on purpose: the writer sorts, as llama-imatrix does.
  d.entries.push_back({"blk.0.ffn_up_exps.weight",
                       {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},  // 3 experts x 4 columns
                       {4, 0, 2}});                              // expert 1 never routed to
  d.entries.push_back({"blk.0.attn_q.weight", {0.5f, 1.5f, 2.5f, 0, 1e-30f}, {6144}});
  return d;
}

// ------------------------------------------------------------------------------------------- GGUF

TEST(ImatrixGguf, RoundTripAndLlamaImatrixLayout) {
  const std::string path = tmp_path("rt.gguf");
  std::filesystem::remove(path);
  const ImatrixData d = sample();
  ASSERT_TRUE(write_imatrix_gguf(path, d, false).ok());

  // The layout, read with the plain GGUF reader: keys in llama-imatrix's order and types, tensors
  // sorted by weight name, in_sum2 before counts, ggml's trimmed dims.
  Result<GgufFile> f = GgufFile::open(path);
  ASSERT_TRUE(f.ok()) << f.error().message();
  ASSERT_EQ(f->metadata().size(), 4u);
  EXPECT_EQ(f->metadata()[0].key, "general.type");
  EXPECT_EQ(*f->get_string("general.type"), "imatrix");
  EXPECT_EQ(f->metadata()[1].key, "imatrix.datasets");
  ASSERT_EQ(f->get_string_array("imatrix.datasets")->size(), 2u);
  EXPECT_EQ(f->metadata()[2].key, "imatrix.chunk_count");
  EXPECT_EQ(*f->get_u32("imatrix.chunk_count"), 12u);
  EXPECT_EQ(f->metadata()[3].key, "imatrix.chunk_size");
  EXPECT_EQ(*f->get_u32("imatrix.chunk_size"), 512u);
  ASSERT_EQ(f->tensors().size(), 4u);
  const std::vector<std::pair<std::string, std::vector<uint64_t>>> want = {
      {"blk.0.attn_q.weight.in_sum2", {5}},
      {"blk.0.attn_q.weight.counts", {1}},
      {"blk.0.ffn_up_exps.weight.in_sum2", {4, 3}},
      {"blk.0.ffn_up_exps.weight.counts", {1, 3}},
  };
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(f->tensors()[i].name, want[i].first);
    EXPECT_EQ(f->tensors()[i].dims, want[i].second) << want[i].first;
    EXPECT_EQ(f->tensors()[i].type, GgmlType::F32);
  }

  Result<ImatrixData> r = read_imatrix(path);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->format, ImatrixFormat::kGguf);
  EXPECT_EQ(r->datasets, d.datasets);
  EXPECT_EQ(r->chunk_count, 12);
  EXPECT_EQ(r->chunk_size, 512);
  ASSERT_EQ(r->entries.size(), 2u);
  EXPECT_EQ(r->entries[0].name, d.entries[1].name);
  EXPECT_EQ(r->entries[0].in_sum2, d.entries[1].in_sum2);
  EXPECT_EQ(r->entries[0].counts, d.entries[1].counts);
  EXPECT_EQ(r->entries[1].name, d.entries[0].name);
  EXPECT_EQ(r->entries[1].in_sum2, d.entries[0].in_sum2);
  EXPECT_EQ(r->entries[1].counts, d.entries[0].counts);
  EXPECT_EQ(r->entries[1].n_mat(), 3);
  EXPECT_EQ(r->entries[1].n_cols(), 4);

  // Writing what was read gives the same bytes.
  const std::string again = tmp_path("rt2.gguf");
  std::filesystem::remove(again);
  ASSERT_TRUE(write_imatrix_gguf(again, *r, false).ok());
  EXPECT_EQ(read_bytes(again), read_bytes(path));
  std::filesystem::remove(path);
  std::filesystem::remove(again);
}

TEST(ImatrixImportance, DividesByCountAndGivesOneWithoutData) {
  const ImatrixData d = sample();
  const std::vector<float> moe = importance(d.entries[0]);
  const std::vector<float> want = {0.25f, 0.5f, 0.75f, 1, 1, 1, 1, 1, 4.5f, 5, 5.5f, 6};
  EXPECT_EQ(moe, want);
  const std::vector<float> q = importance(d.entries[1]);
  ASSERT_EQ(q.size(), 5u);
  for (size_t i = 0; i < q.size(); ++i) EXPECT_EQ(q[i], d.entries[1].in_sum2[i] / 6144.0f);
}

TEST(ImatrixGguf, RefusesExistingFileUnlessOverwrite) {
  const std::string path = tmp_path("exists.gguf");
  write_bytes(path, {'x'});
  Status s = write_imatrix_gguf(path, sample(), false);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().option, "overwrite");
  EXPECT_EQ(read_bytes(path), std::vector<uint8_t>{'x'});
  ASSERT_TRUE(write_imatrix_gguf(path, sample(), true).ok());
  EXPECT_TRUE(read_imatrix(path).ok());
  std::filesystem::remove(path);
}

TEST(ImatrixGguf, WriterRefusesWhatLlamaQuantizeCannotRead) {
  const std::string path = tmp_path("refused.gguf");
  std::filesystem::remove(path);
  const std::vector<std::pair<std::function<void(ImatrixData&)>, std::string>> cases = {
      {[](ImatrixData& d) { d.entries.clear(); }, "entries"},
      {[](ImatrixData& d) { d.datasets.clear(); }, "imatrix.datasets"},
      {[](ImatrixData& d) { d.chunk_count = int64_t{1} << 32; }, "imatrix.chunk_count"},
      {[](ImatrixData& d) { d.chunk_size = -1; }, "imatrix.chunk_size"},
      {[](ImatrixData& d) { d.entries[1].name = d.entries[0].name; }, "duplicates entry 0"},
      {[](ImatrixData& d) { d.entries[0].name.clear(); }, "empty name"},
      {[](ImatrixData& d) { d.entries[0].counts.clear(); }, "no counts"},
      {[](ImatrixData& d) { d.entries[0].in_sum2.pop_back(); }, "are not 3 matrices"},
      {[](ImatrixData& d) { d.entries[1].in_sum2[2] = std::nanf(""); }, "in_sum2[2] is not finite"},
      {[](ImatrixData& d) { d.entries[0].counts[1] = -1; }, "counts[1] is negative"},
      {[](ImatrixData& d) { d.entries[0].name = std::string(60, 'w'); },
       "llama.cpp allows 55"},  // GGML_MAX_NAME
  };
  for (const auto& [mutate, reason] : cases) {
    ImatrixData d = sample();
    mutate(d);
    Status s = write_imatrix_gguf(path, d, false);
    ASSERT_FALSE(s.ok()) << reason;
    EXPECT_NE(s.error().message().find(reason), std::string::npos) << s.error().message();
    EXPECT_FALSE(std::filesystem::exists(path)) << reason;
  }
}

// A GGUF built key by key and tensor by tensor, to break one thing at a time.
struct GgufSpec {
  std::vector<std::pair<std::string, GgufValue>> kvs = {
      {"general.type", GgufValue::str("imatrix")},
      {"imatrix.datasets", GgufValue::array(std::vector<std::string>{"d.txt"})},
      {"imatrix.chunk_count", GgufValue::u32(3)},
      {"imatrix.chunk_size", GgufValue::u32(512)},
  };
  struct T {
    std::string name;
    GgmlType type;
    std::vector<uint64_t> dims;
    std::vector<float> values;  // F32 bytes; other types get zero bytes
  };
  std::vector<T> tensors = {
      {"a.weight.in_sum2", GgmlType::F32, {4, 2}, {1, 2, 3, 4, 5, 6, 7, 8}},
      {"a.weight.counts", GgmlType::F32, {1, 2}, {2, 4}},
  };

  void write(const std::string& path) const {
    GgufWriter w;
    for (const auto& [k, v] : kvs) ASSERT_TRUE(w.set(k, v).ok()) << k;
    for (const T& t : tensors) ASSERT_TRUE(w.add_tensor(t.name, t.type, t.dims).ok()) << t.name;
    ASSERT_TRUE(w.open(path, true).ok());
    for (size_t i = 0; i < tensors.size(); ++i) {
      std::vector<std::byte> b(w.tensors()[i].n_bytes);
      if (tensors[i].type == GgmlType::F32) std::memcpy(b.data(), tensors[i].values.data(), b.size());
      ASSERT_TRUE(w.write_tensor(tensors[i].name, b).ok());
    }
    ASSERT_TRUE(w.finish().ok());
  }
};

TEST(ImatrixGguf, ReadsGgufPyDimsAndIgnoresOtherTensors) {
  const std::string path = tmp_path("gguf_py.gguf");
  GgufSpec spec;
  // gguf-py keeps numpy's trailing 1s: (1, n_cols) -> {n_cols, 1}; no general.type is needed.
  spec.kvs.erase(spec.kvs.begin());
  spec.tensors = {{"b.weight.in_sum2", GgmlType::F32, {3, 1}, {3, 6, 9}},
                  {"b.weight.counts", GgmlType::F32, {1, 1}, {3}},
                  {"something.else", GgmlType::F32, {2}, {1, 1}}};
  spec.write(path);
  Result<ImatrixData> r = read_imatrix(path);
  ASSERT_TRUE(r.ok()) << r.error().message();
  ASSERT_EQ(r->entries.size(), 1u);
  EXPECT_EQ(r->entries[0].name, "b.weight");
  EXPECT_EQ(importance(r->entries[0]), (std::vector<float>{1, 2, 3}));
  std::filesystem::remove(path);
}

TEST(ImatrixGguf, EachCorruptFileIsRefused) {
  const std::string path = tmp_path("bad.gguf");
  struct Case {
    std::function<void(GgufSpec&)> mutate;
    std::string field, reason;
  };
  const std::vector<Case> cases = {
      {[](GgufSpec& s) { s.kvs[0].second = GgufValue::str("model"); }, "general.type",
       "expected \"imatrix\""},
      {[](GgufSpec& s) { s.kvs.erase(s.kvs.begin() + 1); }, "imatrix.datasets", "missing"},
      {[](GgufSpec& s) { s.kvs[1].second = GgufValue::array(std::vector<int32_t>{1}); }, "imatrix.datasets",
       "array[int32]"},
      {[](GgufSpec& s) { s.kvs.erase(s.kvs.begin() + 2); }, "imatrix.chunk_count", "missing"},
      {[](GgufSpec& s) { s.kvs[3].second = GgufValue::i32(512); }, "imatrix.chunk_size", "int32"},
      {[](GgufSpec& s) { s.tensors.pop_back(); }, "a.weight.counts", "missing"},
      {[](GgufSpec& s) { s.tensors.erase(s.tensors.begin()); }, "a.weight.in_sum2", "missing"},
      {[](GgufSpec& s) { s.tensors.clear(); }, "tensors", "no data"},
      {[](GgufSpec& s) { s.tensors[1].type = GgmlType::F16; }, "a.weight.counts", "expected f32"},
      {[](GgufSpec& s) {
         s.tensors[0].dims = {2, 2, 2};
       },
       "a.weight.in_sum2", "more than 2 dims"},
      {[](GgufSpec& s) { s.tensors[1].dims = {2}; }, "a.weight.counts", "shape is not {1, 2}"},
      {[](GgufSpec& s) {
         s.tensors[1] = {"a.weight.counts", GgmlType::F32, {1, 3}, {1, 1, 1}};
       },
       "a.weight.counts", "shape is not {1, 2}"},
      {[](GgufSpec& s) { s.tensors[0].values[5] = std::numeric_limits<float>::infinity(); },
       "a.weight.in_sum2", "value[5] is not finite"},
      {[](GgufSpec& s) { s.tensors[0].values[0] = -1; }, "a.weight.in_sum2", "value[0] is negative"},
      {[](GgufSpec& s) { s.tensors[1].values[1] = std::nanf(""); }, "a.weight.counts",
       "count[1] is not finite"},
      {[](GgufSpec& s) {
         s.tensors[0].name = ".in_sum2";
         s.tensors[1].name = ".counts";
       },
       "tensor .in_sum2", "names no weight"},
  };
  for (const Case& c : cases) {
    GgufSpec spec;
    c.mutate(spec);
    spec.write(path);
    SCOPED_TRACE(c.reason);
    expect_read_error(path, c.field, c.reason);
  }

  // A GGUF cut short is reported by the GGUF reader, not retried as a legacy file.
  GgufSpec().write(path);
  std::vector<uint8_t> b = read_bytes(path);
  b.resize(b.size() / 2);
  write_bytes(path, b);
  Result<ImatrixData> r = read_imatrix(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find(path), std::string::npos);
  EXPECT_EQ(r.error().message().find("entry"), std::string::npos) << r.error().message();
  std::filesystem::remove(path);
}

// --------------------------------------------------------------------------------------- legacy

struct Legacy {
  std::vector<uint8_t> b;
  Legacy& i32(int32_t v) {
    uint8_t x[4];
    std::memcpy(x, &v, 4);
    b.insert(b.end(), x, x + 4);
    return *this;
  }
  Legacy& f32(float v) {
    uint8_t x[4];
    std::memcpy(x, &v, 4);
    b.insert(b.end(), x, x + 4);
    return *this;
  }
  Legacy& str(const std::string& s) {
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  // One entry as save_imatrix_legacy writes it.
  Legacy& entry(const std::string& name, int32_t ncall, const std::vector<float>& values) {
    i32(static_cast<int32_t>(name.size())).str(name).i32(ncall).i32(static_cast<int32_t>(values.size()));
    for (float v : values) f32(v);
    return *this;
  }
};

// llama-imatrix's legacy output: entries sorted by name, then last_chunk and the dataset.
Legacy good_legacy() {
  Legacy l;
  l.i32(2).entry("blk.0.attn_k.weight", 4, {4, 8, 0.5f}).entry("blk.0.attn_q.weight", 2, {1, 3});
  l.i32(7).i32(8).str("wiki.raw");
  return l;
}

TEST(ImatrixLegacy, ReadsLlamaImatrixBytes) {
  const std::string path = tmp_path("good.dat");
  write_bytes(path, good_legacy().b);
  Result<ImatrixData> r = read_imatrix(path);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->format, ImatrixFormat::kLegacy);
  EXPECT_EQ(r->datasets, std::vector<std::string>{"wiki.raw"});
  EXPECT_EQ(r->chunk_count, 7);
  EXPECT_EQ(r->chunk_size, 0);
  ASSERT_EQ(r->entries.size(), 2u);
  EXPECT_EQ(r->entries[0].name, "blk.0.attn_k.weight");
  EXPECT_EQ(r->entries[0].in_sum2, (std::vector<float>{4, 8, 0.5f}));
  EXPECT_EQ(r->entries[0].counts, std::vector<float>{4});
  // llama-quantize: values / ncall.
  EXPECT_EQ(importance(r->entries[0]), (std::vector<float>{1, 2, 0.125f}));
  EXPECT_EQ(importance(r->entries[1]), (std::vector<float>{0.5f, 1.5f}));

  // Converting to GGUF and back keeps the importance.
  const std::string gguf = tmp_path("from_dat.gguf");
  std::filesystem::remove(gguf);
  ASSERT_TRUE(write_imatrix_gguf(gguf, *r, false).ok());
  Result<ImatrixData> g = read_imatrix(gguf);
  ASSERT_TRUE(g.ok()) << g.error().message();
  for (size_t i = 0; i < 2; ++i) EXPECT_EQ(importance(g->entries[i]), importance(r->entries[i]));
  std::filesystem::remove(gguf);
  std::filesystem::remove(path);
}

TEST(ImatrixLegacy, ReadsOlderFilesWithoutTrailerAndSortsEntries) {
  const std::string path = tmp_path("old.dat");
  Legacy l;
  l.i32(2).entry("z.weight", 1, {2}).entry("a.weight", 1, {3});
  write_bytes(path, l.b);
  Result<ImatrixData> r = read_imatrix(path);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_TRUE(r->datasets.empty());
  EXPECT_EQ(r->chunk_count, 0);
  ASSERT_EQ(r->entries.size(), 2u);
  EXPECT_EQ(r->entries[0].name, "a.weight");
  EXPECT_EQ(r->entries[1].name, "z.weight");

  l.i32(5);  // last_chunk only
  write_bytes(path, l.b);
  r = read_imatrix(path);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->chunk_count, 5);
  EXPECT_TRUE(r->datasets.empty());
  std::filesystem::remove(path);
}

TEST(ImatrixLegacy, EachCorruptFileIsRefused) {
  const std::string path = tmp_path("bad.dat");
  const std::vector<uint8_t> good = good_legacy().b;
  // good: n_entries (4), entry 0 (43 bytes), entry 1 (39), last_chunk (4), name length (4), name (8).
  ASSERT_EQ(good.size(), 102u);
  const auto keep = [&](size_t n) {
    return std::vector<uint8_t>(good.begin(), good.begin() + static_cast<long>(n));
  };
  struct Case {
    std::vector<uint8_t> bytes;
    std::string field, reason;
  };
  const std::vector<Case> cases = {
      {{}, "n_entries", "truncated"},
      {{1, 0}, "n_entries", "truncated"},
      {Legacy().i32(0).b, "n_entries", "no data"},
      {Legacy().i32(-3).b, "n_entries", "expected >= 1"},
      {Legacy().i32(0x7fffffff).entry("a", 1, {1}).b, "n_entries", "bytes follow"},
      {Legacy().i32(1).i32(-5).str("abcdefghijklmnopqrst").b, "entry 0 name length", "expected >= 1"},
      {Legacy().i32(1).i32(1000).str("abcdefghijklmnopqrst").b, "entry 0 name", "truncated"},
      {Legacy().i32(1).i32(3).str(std::string("a\0b", 3)).i32(1).i32(1).f32(1).b, "entry 0 name", "NUL"},
      {Legacy().i32(1).entry("w", 0, {1, 2}).b, "entry 0 (w) ncall", "expected >= 1"},
      {Legacy().i32(1).entry("w", -2, {1, 2}).b, "entry 0 (w) ncall", "expected >= 1"},
      {Legacy().i32(1).i32(1).str("w").i32(1).i32(0).str("pad-pad-pad").b, "entry 0 (w) nval",
       "expected >= 1"},
      {Legacy().i32(1).i32(1).str("w").i32(1).i32(0x7fffffff).f32(1).f32(2).b, "entry 0 (w) values",
       "truncated"},
      {Legacy().i32(1).entry("w", 1, {1, std::nanf("")}).b, "entry 0 (w)", "value[1] is not finite"},
      {Legacy().i32(1).entry("w", 1, {-0.5f}).b, "entry 0 (w)", "value[0] is negative"},
      {Legacy().i32(2).entry("w", 1, {1}).entry("w", 1, {2}).b, "entry 1 (w)", "duplicates entry 0"},
      {keep(4 + 43 + 2), "entry 1 name length", "truncated"},
      {keep(86 + 2), "last_chunk", "truncated"},
      {keep(90 + 2), "dataset name length", "truncated"},
      {keep(99), "dataset name", "truncated"},
      {keep(82), "entry 1 (blk.0.attn_q.weight) values", "truncated"},
      {Legacy().i32(1).entry("w", 1, {1}).i32(1).i32(-1).b, "dataset name length", "expected >= 0"},
      {Legacy().i32(1).entry("w", 1, {1}).i32(-1).i32(0).b, "last_chunk", "expected >= 0"},
      {Legacy(good_legacy()).str("xy").b, "offset", "2 unexpected bytes"},
  };
  for (const Case& c : cases) {
    write_bytes(path, c.bytes);
    SCOPED_TRACE(c.field + ": " + c.reason);
    expect_read_error(path, c.field, c.reason);
  }
  std::filesystem::remove(path);
}

TEST(ImatrixFile, MissingFileIsAnError) {
  Result<ImatrixData> r = read_imatrix(tmp_path("does-not-exist"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("does-not-exist"), std::string::npos);
}

}  // namespace
}  // namespace qe::convert
