// GGUF writer: write -> read round trips of every value type and several tensor types, and the
// promise that a failed or abandoned write leaves no file behind.
#include "formats/gguf_writer.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdio>
#include <limits>
#include <string>

#include "formats/gguf_reader.h"

namespace qe {
namespace {

std::string tmp_path(const std::string& name) {
  return std::string(QE_TEST_TMPDIR) + "/" + name;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// Temporary files AtomicFile left in the test directory for `name` (".name.tmp-XXXXXX").
int leftover_temps(const std::string& name) {
  int n = 0;
  DIR* d = ::opendir(QE_TEST_TMPDIR);
  if (d == nullptr) return -1;
  const std::string prefix = "." + name + ".tmp-";
  while (dirent* e = ::readdir(d))
    if (std::string(e->d_name).rfind(prefix, 0) == 0) ++n;
  ::closedir(d);
  return n;
}

std::vector<std::byte> pattern(uint64_t n, uint64_t seed) {
  std::vector<std::byte> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 131 + seed * 17 + 7) & 0xff);
  return v;
}

std::vector<GgufKv> all_value_types() {
  using S = std::vector<std::string>;
  return {
      {"u8", GgufValue::u8(255)},
      {"i8", GgufValue::i8(-128)},
      {"u16", GgufValue::u16(65535)},
      {"i16", GgufValue::i16(-32768)},
      {"u32", GgufValue::u32(4294967295u)},
      {"i32", GgufValue::i32(std::numeric_limits<int32_t>::min())},
      {"f32", GgufValue::f32(0.1f)},
      {"bool", GgufValue::boolean(true)},
      {"string", GgufValue::str("h\xc3\xa9llo")},
      {"string_empty", GgufValue::str("")},
      {"u64", GgufValue::u64(std::numeric_limits<uint64_t>::max())},
      {"i64", GgufValue::i64(std::numeric_limits<int64_t>::min())},
      {"f64", GgufValue::f64(-2.5e-300)},
      {"arr_u8", GgufValue::array(std::vector<uint8_t>{0, 255})},
      {"arr_i8", GgufValue::array(std::vector<int8_t>{-128, 127})},
      {"arr_u16", GgufValue::array(std::vector<uint16_t>{1, 65535})},
      {"arr_i16", GgufValue::array(std::vector<int16_t>{-32768, 2})},
      {"arr_u32", GgufValue::array(std::vector<uint32_t>{3, 4294967295u})},
      {"arr_i32", GgufValue::array(std::vector<int32_t>{-5, 6})},
      {"arr_f32", GgufValue::array(std::vector<float>{0.5f, -1e-30f})},
      {"arr_bool", GgufValue::array(std::vector<bool>{false, true, true})},
      {"arr_string", GgufValue::array(S{"", "a", "\xf0\x9f\xa6\x99"})},
      {"arr_u64", GgufValue::array(std::vector<uint64_t>{std::numeric_limits<uint64_t>::max()})},
      {"arr_i64", GgufValue::array(std::vector<int64_t>{std::numeric_limits<int64_t>::min()})},
      {"arr_f64", GgufValue::array(std::vector<double>{1e300, 0.1})},
      {"arr_empty", GgufValue::array(GgufArray::empty(GgufType::FLOAT64))},
      {"nested", GgufValue::array(std::vector<GgufArray>{GgufArray(std::vector<int32_t>{1, 2}),
                                                         GgufArray::empty(GgufType::INT32),
                                                         GgufArray(S{"mixed", "inner types"})})},
      {"nested_deep", GgufValue::array(std::vector<GgufArray>{
                          GgufArray(std::vector<GgufArray>{GgufArray(std::vector<uint16_t>{9})})})},
  };
}

struct TensorDecl {
  std::string name;
  GgmlType type;
  std::vector<uint64_t> dims;
};

const std::vector<TensorDecl> kTensors = {
    {"f32", GgmlType::F32, {3, 5}},      {"f16", GgmlType::F16, {7}},
    {"bf16", GgmlType::BF16, {2, 2, 2}}, {"q4_0", GgmlType::Q4_0, {64, 3}},
    {"q4_1", GgmlType::Q4_1, {32}},      {"q8_0", GgmlType::Q8_0, {32, 1, 1, 2}},
    {"q6_K", GgmlType::Q6_K, {256, 2}},
};

// Writes the given metadata and kTensors (pattern bytes), then reads the file back and checks it.
void round_trip(const std::string& name, const std::vector<GgufKv>& kvs, uint64_t alignment, bool chunked) {
  const std::string path = tmp_path(name);
  std::remove(path.c_str());
  GgufWriter w;
  for (const GgufKv& kv : kvs) ASSERT_TRUE(w.set(kv.key, kv.value).ok()) << kv.key;
  for (const TensorDecl& t : kTensors) ASSERT_TRUE(w.add_tensor(t.name, t.type, t.dims).ok()) << t.name;
  ASSERT_TRUE(w.open(path, false).ok());
  EXPECT_FALSE(exists(path)) << "output visible before finish()";
  for (size_t i = 0; i < w.tensors().size(); ++i) {
    const std::vector<std::byte> bytes = pattern(w.tensors()[i].n_bytes, i);
    if (chunked) {  // odd-sized pieces
      for (size_t at = 0; at < bytes.size(); at += 7) {
        const size_t n = std::min<size_t>(7, bytes.size() - at);
        ASSERT_TRUE(w.write_tensor_chunk(kTensors[i].name, std::span(bytes).subspan(at, n)).ok());
      }
    } else {
      Status s = w.write_tensor(kTensors[i].name, bytes);
      ASSERT_TRUE(s.ok()) << s.error().message();
    }
  }
  Status fin = w.finish();
  ASSERT_TRUE(fin.ok()) << fin.error().message();
  EXPECT_EQ(leftover_temps(name), 0);

  Result<GgufFile> r = GgufFile::open(path);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->version(), 3u);
  EXPECT_EQ(r->alignment(), alignment);
  ASSERT_EQ(r->metadata().size(), kvs.size());
  for (size_t i = 0; i < kvs.size(); ++i) {
    EXPECT_EQ(r->metadata()[i].key, kvs[i].key);
    EXPECT_EQ(r->metadata()[i].value.type_name(), kvs[i].value.type_name()) << kvs[i].key;
    EXPECT_TRUE(r->metadata()[i].value == kvs[i].value) << kvs[i].key;
  }
  ASSERT_EQ(r->tensors().size(), kTensors.size());
  for (size_t i = 0; i < kTensors.size(); ++i) {
    const GgufTensorInfo& t = r->tensors()[i];
    EXPECT_EQ(t.name, kTensors[i].name);
    EXPECT_EQ(t.type, kTensors[i].type);
    EXPECT_EQ(t.dims, kTensors[i].dims);
    EXPECT_EQ(t.file_offset % alignment, 0u);
    EXPECT_EQ(t.offset, w.tensors()[i].offset);
    const std::vector<std::byte> want = pattern(t.n_bytes, i);
    ASSERT_EQ(t.data.size(), want.size());
    EXPECT_TRUE(std::equal(want.begin(), want.end(), t.data.begin())) << t.name;
  }
  // Padded to the alignment at the end, as ggml does.
  EXPECT_EQ(r->bytes().size() % alignment, 0u);
  std::remove(path.c_str());
}

TEST(GgufWriter, RoundTripEveryValueType) {
  round_trip("gguf_rt_all.gguf", all_value_types(), 32, false);
}

TEST(GgufWriter, RoundTripCustomAlignmentChunked) {
  std::vector<GgufKv> kvs = all_value_types();
  kvs.insert(kvs.begin(), {"general.alignment", GgufValue::u32(64)});
  round_trip("gguf_rt_align64.gguf", kvs, 64, true);
}

TEST(GgufWriter, RoundTripAlignmentOne) {
  round_trip("gguf_rt_align1.gguf", {{"general.alignment", GgufValue::u32(1)}}, 1, false);
}

TEST(GgufWriter, MetadataOnly) {
  const std::string path = tmp_path("gguf_meta_only.gguf");
  std::remove(path.c_str());
  GgufWriter w;
  ASSERT_TRUE(w.set("general.architecture", GgufValue::str("llama")).ok());
  ASSERT_TRUE(w.open(path, false).ok());
  ASSERT_TRUE(w.finish().ok());
  Result<GgufFile> r = GgufFile::open(path);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->get_string("general.architecture").value(), "llama");
  std::remove(path.c_str());
}

TEST(GgufWriter, DeclarationErrors) {
  GgufWriter w;
  EXPECT_TRUE(w.set("a", GgufValue::u32(1)).ok());
  EXPECT_EQ(w.set("a", GgufValue::u8(1)).error().message(), "<gguf writer>: key a: duplicate key");
  EXPECT_FALSE(w.set("", GgufValue::u8(1)).ok());
  EXPECT_NE(
      w.set("general.alignment", GgufValue::u32(48)).error().message().find("not a non-zero power of two"),
      std::string::npos);
  EXPECT_NE(
      w.set("general.alignment", GgufValue::u32(0)).error().message().find("not a non-zero power of two"),
      std::string::npos);
  EXPECT_NE(w.set("general.alignment", GgufValue::u64(32))
                .error()
                .message()
                .find("type is uint64, expected uint32"),
            std::string::npos);
  GgufArray deep(std::vector<uint8_t>{1});
  for (int i = 1; i <= kGgufMaxArrayDepth; ++i) deep = GgufArray(std::vector<GgufArray>{deep});
  EXPECT_NE(w.set("deep", GgufValue::array(deep)).error().message().find("nested 9 deep"), std::string::npos);

  EXPECT_TRUE(w.add_tensor("t", GgmlType::F32, {4}).ok());
  EXPECT_NE(w.add_tensor("t", GgmlType::F32, {4}).error().message().find("tensor t: duplicate tensor name"),
            std::string::npos);
  EXPECT_FALSE(w.add_tensor("", GgmlType::F32, {4}).ok());
  EXPECT_FALSE(w.add_tensor(std::string(64, 'n'), GgmlType::F32, {4}).ok());
  EXPECT_TRUE(w.add_tensor(std::string(63, 'n'), GgmlType::F32, {4}).ok());
  EXPECT_NE(w.add_tensor("z", GgmlType::F32, {}).error().message().find("0 dims"), std::string::npos);
  EXPECT_NE(w.add_tensor("z", GgmlType::F32, {1, 1, 1, 1, 1}).error().message().find("5 dims"),
            std::string::npos);
  EXPECT_NE(w.add_tensor("z", GgmlType::F32, {4, 0}).error().message().find("dim 1 is 0"), std::string::npos);
  EXPECT_NE(w.add_tensor("z", GgmlType::Q4_0, {48}).error().message().find("row length 48"),
            std::string::npos);
  EXPECT_NE(w.add_tensor("z", GgmlType::F32, {uint64_t{1} << 40, uint64_t{1} << 40})
                .error()
                .message()
                .find("element count overflows"),
            std::string::npos);
  EXPECT_FALSE(w.add_tensor("z", static_cast<GgmlType>(4), {32}).ok());  // removed type
  EXPECT_FALSE(w.finish().ok());                                         // before open()
  EXPECT_FALSE(w.write_tensor("t", {}).ok());                            // before open()
}

TEST(GgufWriter, RefusesExistingOutputUnlessOverwrite) {
  const std::string path = tmp_path("gguf_exists.gguf");
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("precious", f);
    std::fclose(f);
  }
  GgufWriter w;
  ASSERT_TRUE(w.set("k", GgufValue::u8(1)).ok());
  Status s = w.open(path, false);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("already exists"), std::string::npos);
  EXPECT_EQ(leftover_temps("gguf_exists.gguf"), 0);

  GgufWriter w2;
  ASSERT_TRUE(w2.set("k", GgufValue::u8(1)).ok());
  ASSERT_TRUE(w2.open(path, true).ok());
  ASSERT_TRUE(w2.finish().ok());
  Result<GgufFile> r = GgufFile::open(path);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->get_u8("k").value(), 1);
  std::remove(path.c_str());
}

// Declares two f32 tensors of 16 and 8 elements and opens `name` for writing.
void open_two(GgufWriter& w, const std::string& name) {
  std::remove(tmp_path(name).c_str());
  ASSERT_TRUE(w.add_tensor("a", GgmlType::F32, {16}).ok());
  ASSERT_TRUE(w.add_tensor("b", GgmlType::F32, {8}).ok());
  ASSERT_TRUE(w.open(tmp_path(name), false).ok());
}

void expect_no_output(const std::string& name) {
  EXPECT_FALSE(exists(tmp_path(name))) << name;
  EXPECT_EQ(leftover_temps(name), 0) << name;
}

TEST(GgufWriter, AbandonedWriterLeavesNothing) {
  const std::string name = "gguf_abandoned.gguf";
  {
    GgufWriter w;
    open_two(w, name);
    ASSERT_TRUE(w.write_tensor("a", pattern(64, 0)).ok());
    EXPECT_EQ(leftover_temps(name), 1);  // the temporary exists while writing
  }
  expect_no_output(name);
}

TEST(GgufWriter, WrongByteCountRejected) {
  const std::string name = "gguf_wrong_count.gguf";
  GgufWriter w;
  open_two(w, name);
  Status s = w.write_tensor("a", pattern(60, 0));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message(), tmp_path(name) + ": tensor a: 60 bytes given, expected 64 (f32 16)");
  expect_no_output(name);
  EXPECT_FALSE(w.write_tensor("a", pattern(64, 0)).ok());  // poisoned
  EXPECT_FALSE(w.finish().ok());
  expect_no_output(name);
}

TEST(GgufWriter, TooManyChunkBytesRejected) {
  const std::string name = "gguf_chunk_over.gguf";
  GgufWriter w;
  open_two(w, name);
  ASSERT_TRUE(w.write_tensor_chunk("a", pattern(40, 0)).ok());
  Status s = w.write_tensor_chunk("a", pattern(40, 0));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("only 24 of its 64 bytes"), std::string::npos) << s.error().message();
  expect_no_output(name);
}

TEST(GgufWriter, ShortTensorRejectedAtNextTensor) {
  const std::string name = "gguf_chunk_short.gguf";
  GgufWriter w;
  open_two(w, name);
  ASSERT_TRUE(w.write_tensor_chunk("a", pattern(40, 0)).ok());
  Status s = w.write_tensor("b", pattern(32, 1));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("tensor a: only 40 of 64 bytes written before tensor b"),
            std::string::npos)
      << s.error().message();
  expect_no_output(name);
}

TEST(GgufWriter, MissingTensorRejectedAtFinish) {
  const std::string name = "gguf_missing.gguf";
  GgufWriter w;
  open_two(w, name);
  ASSERT_TRUE(w.write_tensor("a", pattern(64, 0)).ok());
  Status s = w.finish();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("tensor b: only 0 of 32 bytes written (1 of 2 tensors complete)"),
            std::string::npos)
      << s.error().message();
  expect_no_output(name);
}

TEST(GgufWriter, OutOfOrderRejected) {
  const std::string name = "gguf_order.gguf";
  GgufWriter w;
  open_two(w, name);
  Status s = w.write_tensor("b", pattern(32, 1));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("expected tensor a next"), std::string::npos) << s.error().message();
  expect_no_output(name);
}

TEST(GgufWriter, ExtraTensorDataRejected) {
  const std::string name = "gguf_extra.gguf";
  GgufWriter w;
  open_two(w, name);
  ASSERT_TRUE(w.write_tensor("a", pattern(64, 0)).ok());
  ASSERT_TRUE(w.write_tensor("b", pattern(32, 1)).ok());
  EXPECT_FALSE(w.write_tensor("b", pattern(32, 1)).ok());
  expect_no_output(name);
}

TEST(GgufWriter, FullDiskLeavesNothing) {
  // RLIMIT_FSIZE makes write() fail with EFBIG past the limit, as a full disk fails with ENOSPC:
  // the writer must report it and remove its temporary file.
  const std::string name = "gguf_full_disk.gguf";
  std::remove(tmp_path(name).c_str());
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  if (old.rlim_max != RLIM_INFINITY && old.rlim_max < (1u << 20)) GTEST_SKIP() << "RLIMIT_FSIZE already tiny";
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = 1u << 20;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);

  Status result;
  {
    GgufWriter w;
    const uint64_t n = 3u << 20;  // floats: 12 MiB, past the 4 MiB write buffer and the 1 MiB limit
    ASSERT_TRUE(w.add_tensor("big", GgmlType::F32, {n}).ok());
    ASSERT_TRUE(w.open(tmp_path(name), false).ok());
    result = w.write_tensor("big", pattern(n * 4, 0));
    if (result.ok()) result = w.finish();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.error().message().find("write failed"), std::string::npos) << result.error().message();
  expect_no_output(name);
}

TEST(GgufWriter, EncodeValueMatchesSpec) {
  // A few values encoded by hand from the spec: strings are u64 length + bytes; arrays are
  // element type u32 + count u64 + elements; bool is one byte.
  std::vector<std::byte> out;
  gguf_encode_value(GgufValue::str("ab"), out);
  gguf_encode_value(GgufValue::boolean(true), out);
  gguf_encode_value(GgufValue::array(std::vector<uint16_t>{0x0102}), out);
  const std::vector<uint8_t> want = {2, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', 1, 2, 0,
                                     0, 0, 1, 0, 0, 0, 0, 0, 0,   0,   2, 1};
  ASSERT_EQ(out.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(static_cast<uint8_t>(out[i]), want[i]) << i;
}

}  // namespace
}  // namespace qe
