// safetensors reader and writer: one hand-crafted corrupt file per failure class (each rejected with one
// line naming the file and the field), and round trips through the writer.
#include "formats/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "formats/safetensors_json.h"
#include "formats/safetensors_writer.h"

namespace qe {
namespace {

constexpr const char* kName = "t.safetensors";

// 8-byte little-endian length + header + data.
std::string st_bytes(const std::string& header, const std::string& data = "", uint64_t n_override = ~0ull) {
  uint64_t n = n_override == ~0ull ? header.size() : n_override;
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + header + data;
}

std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

Result<SafetensorsFile> parse(const std::string& bytes) {
  return SafetensorsFile::parse(as_bytes(bytes), kName);
}

// The parse fails with an Error naming the file and `field`, whose reason contains `reason_part`.
void expect_rejected(const std::string& bytes, const std::string& field, const std::string& reason_part) {
  auto f = parse(bytes);
  ASSERT_FALSE(f.ok()) << "accepted; expected " << field << ": " << reason_part;
  const Error& e = f.error();
  EXPECT_EQ(e.file, kName);
  EXPECT_EQ(e.field, field) << e.message();
  EXPECT_NE(e.reason.find(reason_part), std::string::npos) << e.message();
  EXPECT_EQ(e.message().find('\n'), std::string::npos);
}

std::string tmp_dir(const std::string& name) {
  auto dir = std::filesystem::path(QE_TEST_TMPDIR) / ("st_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

template <class T>
std::span<const std::byte> raw(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

// ---- good files -------------------------------------------------------------------------------------

TEST(SafetensorsRead, MinimalAndEmpty) {
  auto f = parse(st_bytes("{}"));
  ASSERT_TRUE(f.ok()) << f.error().message();
  EXPECT_TRUE(f->tensors().empty());
  EXPECT_EQ(f->data_offset(), 10u);
  // The reference writer's empty file: "{}" padded with 6 spaces.
  ASSERT_TRUE(parse(st_bytes("{}      ")).ok());
  // __metadata__ only, and __metadata__ null (the reference reads null as absent).
  auto m = parse(st_bytes(R"({"__metadata__":{"format":"pt","b":""}})"));
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->metadata().at("format"), "pt");
  EXPECT_EQ(m->metadata().at("b"), "");
  ASSERT_TRUE(parse(st_bytes(R"({"__metadata__":null})")).ok());
}

TEST(SafetensorsRead, TensorsInDataOrderWithAbsoluteOffsets) {
  // Header order differs from data order; zero-size tensors and a scalar; several dtype sizes. Order is
  // by (begin, end), as the reference's offset_keys(): the empty "z" [4, 4] comes before "b" [4, 20].
  std::string header = R"({"b":{"dtype":"I64","shape":[2],"data_offsets":[4,20]},)"
                       R"("z":{"dtype":"F32","shape":[0,7],"data_offsets":[4,4]},)"
                       R"("s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                       R"("h":{"dtype":"BF16","shape":[1,1,3],"data_offsets":[20,26]},)"
                       R"("q":{"dtype":"F4","shape":[4],"data_offsets":[26,28]},)"
                       R"("e":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[28,30],"extra":"ignored"}})";
  std::string data;
  for (int i = 0; i < 30; ++i) data.push_back(static_cast<char>(i));
  std::string bytes = st_bytes(header + "  ", data);
  auto f = parse(bytes);
  ASSERT_TRUE(f.ok()) << f.error().message();
  const auto& t = f->tensors();
  ASSERT_EQ(t.size(), 6u);
  std::vector<std::string> names;
  for (const auto& x : t) names.push_back(x.name);
  EXPECT_EQ(names, (std::vector<std::string>{"s", "z", "b", "h", "q", "e"}));
  const uint64_t data_start = 8 + header.size() + 2;
  EXPECT_EQ(f->data_offset(), data_start);
  EXPECT_EQ(t[0].shape.size(), 0u);
  EXPECT_EQ(t[0].offset, data_start);
  EXPECT_EQ(t[1].size, 0u);
  EXPECT_EQ(t[1].shape, (std::vector<uint64_t>{0, 7}));
  EXPECT_EQ(t[2].offset, data_start + 4);
  EXPECT_EQ(t[2].size, 16u);
  EXPECT_EQ(t[2].dtype, "I64");
  EXPECT_FALSE(t[2].float_type.has_value());
  EXPECT_EQ(t[3].float_type, SafetensorsFloatType::BF16);
  EXPECT_EQ(t[3].shape, (std::vector<uint64_t>{1, 1, 3}));
  for (const auto& x : t) {
    EXPECT_EQ(x.data.data(), reinterpret_cast<const std::byte*>(bytes.data()) + x.offset) << x.name;
    EXPECT_EQ(x.data.size(), x.size);
  }
  ASSERT_NE(f->find("h"), nullptr);
  EXPECT_EQ(f->find("h")->data[0], std::byte{20});
  EXPECT_EQ(f->find("nope"), nullptr);
}

TEST(SafetensorsRead, EveryReferenceDtypeIsKnown) {
  for (const char* d :
       {"BOOL",    "F4",          "F6_E2M3",     "F6_E3M2", "U8",  "I8",  "F8_E5M2", "F8_E4M3",
        "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16",     "U16", "F16", "BF16",    "I32",
        "U32",     "F32",         "C64",         "F64",     "I64", "U64"})
    EXPECT_TRUE(safetensors_dtype_bits(d).has_value()) << d;
  EXPECT_EQ(safetensors_dtype_bits("BF16"), 16u);
  EXPECT_EQ(safetensors_dtype_bits("F4"), 4u);
  EXPECT_FALSE(safetensors_dtype_bits("f32").has_value());
  EXPECT_FALSE(safetensors_dtype_bits("float32").has_value());
}

TEST(SafetensorsRead, UnconvertibleDtypeIsReportedByName) {
  auto f = parse(st_bytes(R"({"x":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", std::string(8, '\0')));
  ASSERT_TRUE(f.ok()) << f.error().message();
  auto v = f->float_tensor("x");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().message(), "t.safetensors: tensor x: dtype I64 is not supported (F32, F16, BF16 are)");
  auto missing = f->float_tensor("y");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message(), "t.safetensors: tensor y: not in the file");
}

TEST(SafetensorsRead, OpenReportsMissingFile) {
  auto f = SafetensorsFile::open(std::string(QE_TEST_TMPDIR) + "/no/such.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message().find("no/such.safetensors"), std::string::npos);
}

// ---- corrupt files: one per failure class -----------------------------------------------------------

TEST(SafetensorsCorrupt, FileShorterThanLength) {
  expect_rejected("abc", "header", "too short");
}

TEST(SafetensorsCorrupt, HeaderLengthAboveCap) {
  expect_rejected(st_bytes("{}", "", 100'000'001), "header", "above the 100000000-byte limit");
  expect_rejected(st_bytes("{}", "", ~0ull - 1), "header", "limit");
}

TEST(SafetensorsCorrupt, HeaderLengthPastEndOfFile) {
  expect_rejected(st_bytes("{}", "", 3), "header", "runs past the end");
}

TEST(SafetensorsCorrupt, HeaderNotStartingWithBrace) {
  expect_rejected(st_bytes(" {}"), "header", "does not start with '{'");
  expect_rejected(st_bytes("[]"), "header", "does not start with '{'");
  expect_rejected(st_bytes(""), "header", "does not start with '{'");
}

TEST(SafetensorsCorrupt, InvalidJson) {
  expect_rejected(st_bytes(R"({"a":)"), "header", "invalid JSON");
  expect_rejected(st_bytes(R"({} x)"), "header", "invalid JSON");
  // nlohmann alone would stop at a NUL and accept this; the reference rejects it.
  expect_rejected(st_bytes(std::string("{}\0\0", 4)), "header", "NUL byte at offset 2");
  expect_rejected(st_bytes(std::string("{\"a\0\":1}", 9)), "header", "NUL byte at offset 3");
}

TEST(SafetensorsCorrupt, InvalidUtf8InName) {
  expect_rejected(st_bytes("{\"\xff\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", "abcd"),
                  "header", "invalid JSON");
}

TEST(SafetensorsCorrupt, DuplicateTensorName) {
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                           R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                           "xy"),
                  "header", "duplicate key \"a\"");
}

TEST(SafetensorsCorrupt, DuplicateFieldInEntry) {
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}})", "x"),
                  "header", "duplicate key \"a.dtype\"");
}

TEST(SafetensorsCorrupt, NestingTooDeep) {
  std::string deep = "{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}";
  expect_rejected(st_bytes(deep), "header", "nested deeper");
}

TEST(SafetensorsCorrupt, EntryNotAnObject) {
  expect_rejected(st_bytes(R"({"a":[1,2]})"), "tensor a", "entry must be an object, got array");
}

TEST(SafetensorsCorrupt, MissingFields) {
  expect_rejected(st_bytes(R"({"a":{"shape":[1],"data_offsets":[0,1]}})", "x"), "tensor a",
                  "missing \"dtype\"");
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","data_offsets":[0,1]}})", "x"), "tensor a",
                  "missing \"shape\"");
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[1]}})", "x"), "tensor a",
                  "missing \"data_offsets\"");
}

TEST(SafetensorsCorrupt, DtypeNotAString) {
  expect_rejected(st_bytes(R"({"a":{"dtype":4,"shape":[1],"data_offsets":[0,1]}})", "x"), "tensor a",
                  "\"dtype\" must be a string");
}

TEST(SafetensorsCorrupt, UnknownDtype) {
  expect_rejected(st_bytes(R"({"a":{"dtype":"float32","shape":[1],"data_offsets":[0,4]}})", "xxxx"),
                  "tensor a", "unknown dtype \"float32\"");
}

TEST(SafetensorsCorrupt, ShapeNotAnArray) {
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":1,"data_offsets":[0,1]}})", "x"), "tensor a",
                  "\"shape\" must be an array");
}

TEST(SafetensorsCorrupt, ShapeDimsNotNonNegativeIntegers) {
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", "x"), "tensor a",
                  "shape[0] must be a non-negative integer, got -1");
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}})", "x"), "tensor a",
                  "shape[0] must be a non-negative integer");
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[1,"2"],"data_offsets":[0,2]}})", "xx"), "tensor a",
                  "shape[1] must be a non-negative integer, got string");
  // Above 2^64: nlohmann reads it as a float.
  expect_rejected(
      st_bytes(R"({"a":{"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,1]}})", "x"),
      "tensor a", "shape[0] must be a non-negative integer");
}

TEST(SafetensorsCorrupt, DataOffsetsMalformed) {
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", "x"), "tensor a",
                  "must be [begin, end]");
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}})", "x"), "tensor a",
                  "must be [begin, end]");
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":{"b":0}}})", "x"), "tensor a",
                  "must be [begin, end]");
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}})", "x"), "tensor a",
                  "two non-negative integers");
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,"1"]}})", "x"), "tensor a",
                  "two non-negative integers");
}

TEST(SafetensorsCorrupt, BeginAfterEnd) {
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}})", "x"), "tensor a",
                  "data_offsets [1, 0]: begin is after end");
}

TEST(SafetensorsCorrupt, SizeDoesNotMatchShape) {
  auto f = parse(st_bytes(R"({"model.norm.weight":{"dtype":"F32","shape":[576],"data_offsets":[0,10]}})",
                          std::string(10, '\0')));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(
      f.error().message(),
      "t.safetensors: tensor model.norm.weight: data_offsets [0, 10] do not match shape [576] x F32 (2304 "
      "bytes)");
}

TEST(SafetensorsCorrupt, ElementCountOverflow) {
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296,2],"data_offsets":[0,0]}})"),
                  "tensor a", "more than 2^64 elements");
  expect_rejected(st_bytes(R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})"),
                  "tensor a", "overflows 64 bits");
}

TEST(SafetensorsCorrupt, SubByteTensorNotWholeBytes) {
  expect_rejected(st_bytes(R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}})", "x"), "tensor a",
                  "not a whole number of bytes");
}

TEST(SafetensorsCorrupt, OffsetsPastDataSection) {
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", "xy"), "tensor a",
                  "run past the end of the data section (2 bytes)");
  expect_rejected(
      st_bytes(
          R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[18446744073709551615,18446744073709551615]}})"),
      "tensor a", "run past the end");
}

TEST(SafetensorsCorrupt, OverlappingTensors) {
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                           R"("b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                           "abcd"),
                  "tensor b", "overlap tensor a");
  // Two tensors on the same bytes (aliasing).
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                           R"("b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
                           "abcd"),
                  "tensor b", "overlap tensor a");
}

TEST(SafetensorsCorrupt, HoleBetweenTensors) {
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                           R"("b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                           "abcd"),
                  "tensor b", "hole: bytes [1, 2)");
}

TEST(SafetensorsCorrupt, HoleAtStart) {
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", "abcd"), "tensor a",
                  "hole: bytes [0, 2)");
}

TEST(SafetensorsCorrupt, TrailingBytesAfterLastTensor) {
  expect_rejected(st_bytes(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", "abcd"), "data",
                  "bytes [2, 4) at the end of the data section belong to no tensor");
  expect_rejected(st_bytes("{}", "polyglot"), "data", "belong to no tensor");
}

TEST(SafetensorsCorrupt, MetadataNotAnObject) {
  expect_rejected(st_bytes(R"({"__metadata__":["a"]})"), "__metadata__", "must be an object, got array");
}

TEST(SafetensorsCorrupt, MetadataValueNotAString) {
  expect_rejected(st_bytes(R"({"__metadata__":{"n":3}})"), "__metadata__.n", "must be a string, got number");
  expect_rejected(st_bytes(R"({"__metadata__":{"o":{"x":"y"}}})"), "__metadata__.o", "got object");
}

// ---- writer -----------------------------------------------------------------------------------------

TEST(SafetensorsWrite, RoundTripThroughReader) {
  const std::string dir = tmp_dir("roundtrip");
  const std::string path = dir + "/m.safetensors";
  std::vector<float> f32{1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, 7.0f};
  std::vector<uint16_t> f16{0x3c00, 0xc000, 0x3800};           // 1, -2, 0.5
  std::vector<uint16_t> bf16{0x3f80, 0x4000, 0xbf80, 0x0000};  // 1, 2, -1, 0
  std::vector<int64_t> i64{-1, 1ll << 40, 7};
  std::vector<float> scalar{42.0f};
  std::vector<SafetensorsDecl> decls{{"w.f32", "F32", {2, 3}},      {"w.f16", "F16", {3}},
                                     {"w.bf16", "BF16", {2, 1, 2}}, {"ids", "I64", {3}},
                                     {"empty", "F32", {0, 5}},      {"scalar", "F32", {}}};
  SafetensorsMetadata md{{"format", "pt"}, {"note", "héllo \"quoted\""}};
  auto w = SafetensorsWriter::create(path, decls, md);
  ASSERT_TRUE(w.ok()) << w.error().message();
  EXPECT_EQ(w->header_bytes() % 8, 0u);
  ASSERT_TRUE(w->write_tensor("w.f32", raw(f32)));
  // w.f16 in two chunks through the streaming interface.
  ASSERT_TRUE(w->write(raw(f16).first(2)));
  ASSERT_TRUE(w->write(raw(f16).subspan(2)));
  ASSERT_TRUE(w->write_tensor("w.bf16", raw(bf16)));
  ASSERT_TRUE(w->write_tensor("ids", raw(i64)));
  // "empty" is skipped: it has no bytes.
  ASSERT_TRUE(w->write_tensor("scalar", raw(scalar)));
  const uint64_t scalar_offset = w->tensor_offset(5);
  ASSERT_TRUE(w->commit());

  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.ok()) << f.error().message();
  EXPECT_EQ(f->metadata(), md);
  EXPECT_EQ(f->data_offset() % 8, 0u);
  ASSERT_EQ(f->tensors().size(), decls.size());
  for (size_t i = 0; i < decls.size(); ++i) {
    EXPECT_EQ(f->tensors()[i].name, decls[i].name);
    EXPECT_EQ(f->tensors()[i].dtype, decls[i].dtype);
    EXPECT_EQ(f->tensors()[i].shape, decls[i].shape);
  }
  auto v = f->float_tensor("w.f32");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->type, SafetensorsFloatType::F32);
  ASSERT_EQ(v->data.size(), f32.size() * 4);
  EXPECT_EQ(std::memcmp(v->data.data(), f32.data(), v->data.size()), 0);
  auto h = f->float_tensor("w.f16");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->type, SafetensorsFloatType::F16);
  EXPECT_EQ(std::memcmp(h->data.data(), f16.data(), 6), 0);
  auto b = f->float_tensor("w.bf16");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->type, SafetensorsFloatType::BF16);
  EXPECT_EQ((std::vector<uint64_t>(b->shape.begin(), b->shape.end())), (std::vector<uint64_t>{2, 1, 2}));
  EXPECT_EQ(std::memcmp(b->data.data(), bf16.data(), 8), 0);
  auto ids = f->float_tensor("ids");
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.error().reason, "dtype I64 is not supported (F32, F16, BF16 are)");
  EXPECT_EQ(std::memcmp(f->find("ids")->data.data(), i64.data(), 24), 0);
  EXPECT_EQ(f->find("scalar")->offset, scalar_offset);
  EXPECT_EQ(f->find("empty")->size, 0u);
  EXPECT_EQ(list_dir(dir).size(), 1u);  // no temporary left behind
}

TEST(SafetensorsWrite, MatchesReferenceBytes) {
  // safetensors/src/tensor.rs test_serialization_forced_alignement: one F32 tensor "attn0" [1,1,2,3].
  const std::string dir = tmp_dir("refbytes");
  const std::string path = dir + "/a.safetensors";
  std::vector<float> x{0, 1, 2, 3, 4, 5};
  auto w = SafetensorsWriter::create(path, {{"attn0", "F32", {1, 1, 2, 3}}});
  ASSERT_TRUE(w.ok()) << w.error().message();
  ASSERT_TRUE(w->write_tensor("attn0", raw(x)));
  ASSERT_TRUE(w->commit());
  const std::string json = R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})";
  std::string padded = json + std::string((8 - json.size() % 8) % 8, ' ');
  std::string expect = st_bytes(padded, std::string(reinterpret_cast<const char*>(x.data()), 24));
  EXPECT_EQ(padded.size(), 72u);
  EXPECT_EQ(slurp(path), expect);
}

TEST(SafetensorsWrite, RefusesExistingOutputUnlessOverwrite) {
  const std::string dir = tmp_dir("exists");
  const std::string path = dir + "/x.safetensors";
  { std::ofstream(path) << "keep me"; }
  auto w = SafetensorsWriter::create(path, {});
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().message().find("already exists"), std::string::npos);
  EXPECT_EQ(slurp(path), "keep me");
  auto w2 = SafetensorsWriter::create(path, {}, {}, /*overwrite=*/true);
  ASSERT_TRUE(w2.ok()) << w2.error().message();
  ASSERT_TRUE(w2->commit());
  EXPECT_EQ(slurp(path), st_bytes("{}      "));
}

TEST(SafetensorsWrite, AbandonedWriterLeavesNoFile) {
  const std::string dir = tmp_dir("abandon");
  const std::string path = dir + "/x.safetensors";
  std::vector<float> x(4, 1.0f);
  {
    auto w = SafetensorsWriter::create(path, {{"a", "F32", {4}}, {"b", "F32", {4}}});
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->write_tensor("a", raw(x)));
    // Destroyed before "b" and commit.
  }
  EXPECT_TRUE(list_dir(dir).empty());
  {
    auto w = SafetensorsWriter::create(path, {{"a", "F32", {4}}});
    ASSERT_TRUE(w.ok());
    auto s = w->commit();  // nothing written
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().message().find("tensor a: only 0 of its 16 bytes"), std::string::npos);
  }
  EXPECT_TRUE(list_dir(dir).empty());
}

TEST(SafetensorsWrite, SizeAndOrderChecks) {
  const std::string dir = tmp_dir("checks");
  std::vector<float> x(4, 1.0f);
  auto make = [&] {
    return SafetensorsWriter::create(dir + "/x.safetensors", {{"a", "F32", {4}}, {"b", "F32", {2}}});
  };
  {
    auto w = make();
    auto s = w->write_tensor("a", raw(x).first(12));
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().reason, "got 12 bytes, shape [4] x F32 needs 16");
    EXPECT_TRUE(list_dir(dir).empty());  // the temporary goes at the first error
    EXPECT_FALSE(w->write_tensor("a", raw(x)).ok());
    EXPECT_FALSE(w->commit().ok());
  }
  {
    auto w = make();
    auto s = w->write_tensor("b", raw(x).first(8));
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().reason.find("out of order: tensor a is next"), std::string::npos);
  }
  {
    auto w = make();
    ASSERT_TRUE(w->write(raw(x).first(8)));
    auto s = w->write(raw(x).first(12));  // 8 left in "a"
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().field, "tensor a");
  }
  {
    auto w = make();
    ASSERT_TRUE(w->write(raw(x)));
    ASSERT_TRUE(w->write(raw(x).first(8)));
    EXPECT_FALSE(w->write(raw(x).first(1)).ok());  // past the last tensor
  }
  EXPECT_TRUE(list_dir(dir).empty());
}

TEST(SafetensorsWrite, RejectsBadDeclarations) {
  const std::string path = tmp_dir("decls") + "/x.safetensors";
  auto expect_bad = [&](std::vector<SafetensorsDecl> d, const std::string& part) {
    auto w = SafetensorsWriter::create(path, std::move(d));
    ASSERT_FALSE(w.ok()) << part;
    EXPECT_NE(w.error().message().find(part), std::string::npos) << w.error().message();
  };
  expect_bad({{"a", "F32", {1}}, {"a", "F32", {1}}}, "tensor a: declared twice");
  expect_bad({{"__metadata__", "F32", {1}}}, "reserved");
  expect_bad({{"a", "float32", {1}}}, "unknown dtype \"float32\"");
  expect_bad({{"a", "F4", {3}}}, "not a whole number of bytes");
  expect_bad({{"a", "U8", {1ull << 32, 1ull << 32, 2}}}, "more than 2^64 elements");
  expect_bad({{"a", "U8", {1ull << 63}}, {"b", "U8", {1ull << 63}}}, "overflows 64 bits");
  expect_bad({{"bad\xff", "U8", {1}}}, "not valid UTF-8");
  EXPECT_FALSE(std::filesystem::exists(path));
}

// ---- JSON description ---------------------------------------------------------------------------------

TEST(SafetensorsJson, DescribesTensorsAndHashes) {
  std::string data = "abcdefgh";
  auto f = parse(st_bytes(
      R"({"__metadata__":{"format":"pt"},"x":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}})", data));
  ASSERT_TRUE(f.ok()) << f.error().message();
  auto j = safetensors_to_json(*f, false);
  EXPECT_EQ(j["metadata"]["format"], "pt");
  ASSERT_EQ(j["tensors"].size(), 1u);
  const auto& t = j["tensors"][0];
  EXPECT_EQ(t["name"], "x");
  EXPECT_EQ(t["type"], "BF16");
  EXPECT_EQ(t["shape"], nlohmann::json::array({2, 2}));
  EXPECT_EQ(t["bytes"], 8);
  EXPECT_EQ(t["offset"], f->data_offset());
  EXPECT_FALSE(t.contains("xxh3"));
  EXPECT_FALSE(t.contains("file"));
  auto h = safetensors_to_json(*f, true);
  std::string hex = h["tensors"][0]["xxh3"];
  EXPECT_EQ(hex.size(), 16u);
  char expect[17];
  std::snprintf(expect, sizeof expect, "%016llx",
                static_cast<unsigned long long>(XXH3_64bits(data.data(), 8)));
  EXPECT_EQ(hex, expect);
  EXPECT_EQ(xxh3_hex({}), "2d06800538d394c2");  // XXH3-64 of nothing, from xxhash's test vectors
}

TEST(StrictJson, DuplicateKeysAndDepth) {
  EXPECT_TRUE(parse_json_strict(R"({"a":1,"b":{"a":2}})", "f.json", "").ok());
  auto dup = parse_json_strict(R"({"a":1,"b":{"c":2,"c":3}})", "f.json", "");
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().message(), "f.json: duplicate key \"b.c\" in the JSON");
  EXPECT_FALSE(parse_json_strict(std::string(300, '['), "f.json", "").ok());
  auto bad = parse_json_strict("{", "f.json", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message().rfind("f.json: invalid JSON: parse error", 0), 0u) << bad.error().message();
  auto ordered = parse_ordered_json_strict(R"({"z":1,"a":2})", "f.json", "");
  ASSERT_TRUE(ordered.ok());
  EXPECT_EQ(ordered->begin().key(), "z");
}

}  // namespace
}  // namespace qe
