// GGUF reader: one good file, then one hand-crafted corrupt file per failure class. Every error must
// name the file and the field (key, tensor, or offset) so a user can tell what is wrong.
#include "formats/gguf_reader.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <limits>
#include <string>

#include "gguf_test_bytes.h"

namespace qe {
namespace {

using test::Bytes;
using test::gguf_file;
using test::kv_str;
using test::kv_u32;
using test::TensorSpec;

constexpr const char* kName = "m.gguf";

Result<GgufFile> parse(const Bytes& f) {
  return GgufFile::parse(f.b, kName);
}

// Parsing fails, and the one-line message names the file and contains every piece of `parts`.
void expect_error(const Bytes& f, std::initializer_list<std::string_view> parts) {
  Result<GgufFile> r = parse(f);
  ASSERT_FALSE(r.ok()) << "parsed a corrupt file";
  const std::string msg = r.error().message();
  EXPECT_EQ(r.error().file, kName) << msg;
  EXPECT_FALSE(r.error().field.empty()) << msg;
  for (std::string_view p : parts)
    EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

// Two f32 tensors and a few keys; data section of 64 + 32 bytes.
Bytes good_file(uint32_t version = 3) {
  return gguf_file(
      {kv_str("general.architecture", "llama"), kv_u32("llama.block_count", 2),
       Bytes().str("tokenizer.ggml.scores").u32(test::kArr).u32(test::kF32).u64(2).put(0.5f).put(-1.0f)},
      {{"a.weight", {4, 4}, 0, 0}, {"b.weight", {8}, 0, 64}}, 96, version);
}

TEST(GgufReader, GoodFile) {
  const Bytes f = good_file();
  Result<GgufFile> r = parse(f);
  ASSERT_TRUE(r.ok()) << r.error().message();
  const GgufFile& g = *r;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.alignment(), 32u);
  ASSERT_EQ(g.metadata().size(), 3u);
  EXPECT_EQ(g.metadata()[0].key, "general.architecture");  // file order kept
  EXPECT_EQ(g.metadata()[2].key, "tokenizer.ggml.scores");
  EXPECT_EQ(g.get_string("general.architecture").value(), "llama");
  EXPECT_EQ(g.get_u32("llama.block_count").value(), 2u);
  EXPECT_EQ(g.get_int("llama.block_count").value(), 2);
  Result<std::span<const float>> scores = g.get_f32_array("tokenizer.ggml.scores");
  ASSERT_TRUE(scores.ok());
  ASSERT_EQ(scores->size(), 2u);
  EXPECT_EQ((*scores)[1], -1.0f);

  ASSERT_EQ(g.tensors().size(), 2u);
  const GgufTensorInfo& a = g.tensors()[0];
  EXPECT_EQ(a.name, "a.weight");
  EXPECT_EQ(a.type, GgmlType::F32);
  EXPECT_EQ(a.dims, (std::vector<uint64_t>{4, 4}));
  EXPECT_EQ(a.n_elements, 16u);
  EXPECT_EQ(a.n_rows(), 4u);
  EXPECT_EQ(a.n_bytes, 64u);
  EXPECT_EQ(a.file_offset % 32, 0u);
  EXPECT_EQ(a.file_offset, g.data_offset());
  EXPECT_EQ(a.data.data(), f.b.data() + a.file_offset);  // zero copy
  const GgufTensorInfo* b = g.find_tensor("b.weight");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->file_offset, g.data_offset() + 64);
  EXPECT_EQ(b->data.size(), 32u);
  EXPECT_EQ(b->data[0], f.b[b->file_offset]);
  EXPECT_EQ(g.find_tensor("nope"), nullptr);
}

TEST(GgufReader, EraseDropsOneKeyAndKeepsTheOthersFindable) {
  const Bytes f = good_file();
  Result<GgufFile> r = parse(f);
  ASSERT_TRUE(r.ok()) << r.error().message();
  GgufFile& g = *r;
  EXPECT_TRUE(g.erase("general.architecture"));
  EXPECT_FALSE(g.erase("general.architecture"));
  EXPECT_FALSE(g.has("general.architecture"));
  ASSERT_EQ(g.metadata().size(), 2u);
  EXPECT_EQ(g.metadata()[0].key, "llama.block_count");  // file order kept
  EXPECT_EQ(g.get_u32("llama.block_count").value(), 2u);  // the index moved with the entries
  EXPECT_EQ(g.get_f32_array("tokenizer.ggml.scores").value()[1], -1.0f);
  EXPECT_EQ(g.get_string("general.architecture").error().message(), "m.gguf: key general.architecture: missing");
  EXPECT_EQ(g.tensors().size(), 2u);
}

TEST(GgufReader, Version2) {
  Result<GgufFile> r = parse(good_file(2));
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->version(), 2u);
}

TEST(GgufReader, TrailingGarbageTolerated) {
  Bytes f = good_file();
  f.zeros(100).u32(0xdeadbeef);
  EXPECT_TRUE(parse(f).ok());
}

TEST(GgufReader, NoTensorsNoPadding) {
  // A metadata-only file may end right after its last KV, before the data section's padding.
  const Bytes f = gguf_file({kv_str("x", "y")}, {}, 0, 3, /*alignment=*/1);
  ASSERT_NE(f.size() % 32, 0u);
  Result<GgufFile> r = parse(f);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_TRUE(r->tensors().empty());
}

TEST(GgufReader, GetterErrorsNameKeyAndTypes) {
  Result<GgufFile> r = parse(good_file());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->get_u32("llama.context_length").error().message(),
            "m.gguf: key llama.context_length: missing");
  EXPECT_EQ(r->get_u32("general.architecture").error().message(),
            "m.gguf: key general.architecture: type is string, expected uint32");
  EXPECT_EQ(r->get_string("llama.block_count").error().message(),
            "m.gguf: key llama.block_count: type is uint32, expected string");
  EXPECT_EQ(r->get_i32_array("tokenizer.ggml.scores").error().message(),
            "m.gguf: key tokenizer.ggml.scores: type is array[float32], expected array[int32]");
  EXPECT_EQ(r->get_string_array("llama.block_count").error().message(),
            "m.gguf: key llama.block_count: type is uint32, expected an array");
  EXPECT_EQ(r->get_int("general.architecture").error().message(),
            "m.gguf: key general.architecture: type is string, expected an integer");
  EXPECT_EQ(r->get_tensor("output.weight").error().message(), "m.gguf: tensor output.weight: missing");
  EXPECT_FALSE(r->get_f32("llama.block_count").ok());
  EXPECT_FALSE(r->get_bool("llama.block_count").ok());
}

TEST(GgufReader, GetIntRange) {
  Result<GgufFile> r = parse(gguf_file(
      {Bytes().str("big").u32(test::kU64).u64(~uint64_t{0}), Bytes().str("neg").u32(test::kI8).u8(0xff)}, {},
      0));
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->get_int("neg").value(), -1);
  ASSERT_FALSE(r->get_int("big").ok());
  EXPECT_NE(r->get_int("big").error().message().find("does not fit in int64"), std::string::npos);
}

TEST(GgufReader, OpenMissingFileNamesPath) {
  Result<GgufFile> r = GgufFile::open(QE_TEST_TMPDIR "/does-not-exist.gguf");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("does-not-exist.gguf"), std::string::npos);
}

TEST(GgufReader, OpenMapsFile) {
  const std::string path = QE_TEST_TMPDIR "/gguf_reader_open.gguf";
  const Bytes f = good_file();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(f.b.data()), static_cast<std::streamsize>(f.b.size()));
  }
  Result<GgufFile> r = GgufFile::open(path);
  ASSERT_TRUE(r.ok()) << r.error().message();
  GgufFile moved = std::move(*r);  // spans point into the mapping, which does not move
  EXPECT_EQ(moved.name(), path);
  EXPECT_EQ(std::memcmp(moved.tensors()[1].data.data(), f.b.data() + moved.tensors()[1].file_offset, 32), 0);
  std::remove(path.c_str());
}

// ---- Header.

TEST(GgufReaderCorrupt, BadMagic) {
  Bytes f = good_file();
  f.b[0] = std::byte{'X'};
  expect_error(f, {"header", "bad magic \"XGUF\""});
}

TEST(GgufReaderCorrupt, Version1) {
  expect_error(good_file(1), {"header", "version 1 is not supported"});
}

TEST(GgufReaderCorrupt, VersionTooNew) {
  expect_error(good_file(4), {"header", "version 4 is not supported"});
  expect_error(good_file(0), {"header", "version 0 is not supported"});
}

TEST(GgufReaderCorrupt, BigEndian) {
  Bytes f = good_file();
  f.b[4] = std::byte{0}, f.b[7] = std::byte{3};  // version 3 written big-endian
  expect_error(f, {"header", "big-endian"});
}

TEST(GgufReaderCorrupt, HugeKvCount) {
  Bytes f = good_file();
  const uint64_t huge = uint64_t{1} << 60;
  std::memcpy(f.b.data() + 16, &huge, 8);
  expect_error(f, {"header", "metadata count 1152921504606846976 cannot fit"});
}

TEST(GgufReaderCorrupt, HugeTensorCount) {
  Bytes f = good_file();
  const uint64_t huge = ~uint64_t{0};
  std::memcpy(f.b.data() + 8, &huge, 8);
  expect_error(f, {"tensor count 18446744073709551615 cannot fit"});
}

TEST(GgufReaderCorrupt, TruncatedEverywhere) {
  // Every proper prefix that cuts into the header, metadata, tensor infos or tensor data must fail
  // with a message naming the file; none may crash (ASan/UBSan builds check that too).
  const Bytes f = good_file();
  Result<GgufFile> whole = parse(f);
  ASSERT_TRUE(whole.ok());
  const uint64_t end = whole->tensors()[1].file_offset + whole->tensors()[1].n_bytes;
  for (uint64_t len = 0; len < end; ++len) {
    Bytes cut;
    cut.b.assign(f.b.begin(), f.b.begin() + static_cast<std::ptrdiff_t>(len));
    Result<GgufFile> r = parse(cut);
    ASSERT_FALSE(r.ok()) << "prefix of " << len << " bytes parsed";
    EXPECT_EQ(r.error().message().rfind("m.gguf: ", 0), 0u) << r.error().message();
  }
}

TEST(GgufReaderCorrupt, TruncatedInsideValueNamesKey) {
  Bytes f = gguf_file({kv_str("general.name", "a long enough name")}, {}, 0, 3, /*alignment=*/1);
  f.b.erase(f.b.end() - 5, f.b.end());  // cuts into the string
  expect_error(f, {"key general.name", "string length 18", "exceeds"});
}

TEST(GgufReaderCorrupt, TruncatedTensorDataNamesTensor) {
  Bytes f = good_file();
  f.b.pop_back();
  expect_error(f, {"tensor b.weight", "runs past the end of the file"});
}

// ---- Metadata.

TEST(GgufReaderCorrupt, HugeStringLength) {
  expect_error(gguf_file({Bytes().str("general.name").u32(test::kStr).u64(uint64_t{1} << 62)}, {}, 0),
               {"key general.name", "string length 4611686018427387904", "exceeds"});
}

TEST(GgufReaderCorrupt, HugeKeyLength) {
  expect_error(gguf_file({Bytes().u64(~uint64_t{0} - 3).zeros(32)}, {}, 0),
               {"offset 24", "metadata key 0 length"});
}

TEST(GgufReaderCorrupt, HugeArrayCount) {
  expect_error(
      gguf_file({Bytes().str("tokenizer.ggml.tokens").u32(test::kArr).u32(test::kStr).u64(~uint64_t{0})}, {},
                0),
      {"key tokenizer.ggml.tokens", "array[string] length 18446744073709551615 cannot fit"});
}

Bytes nested_arrays(int depth) {
  // depth levels of arrays, each holding one array, the innermost holding one u8.
  Bytes v = Bytes().str("deep").u32(test::kArr);
  for (int i = 1; i < depth; ++i) v.u32(test::kArr).u64(1);
  v.u32(test::kU8).u64(1).u8(42);
  return v;
}

TEST(GgufReaderCorrupt, NestingTooDeep) {
  Result<GgufFile> ok = parse(gguf_file({nested_arrays(kGgufMaxArrayDepth)}, {}, 0));
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  EXPECT_EQ(ok->find("deep")->get<GgufArray>()->depth(), kGgufMaxArrayDepth);
  expect_error(gguf_file({nested_arrays(kGgufMaxArrayDepth + 1)}, {}, 0),
               {"key deep", "nested deeper than 8"});
}

TEST(GgufReaderCorrupt, UnknownValueType) {
  expect_error(gguf_file({Bytes().str("x.y").u32(13).u32(0)}, {}, 0), {"key x.y", "unknown value type 13"});
}

TEST(GgufReaderCorrupt, UnknownArrayElementType) {
  expect_error(gguf_file({Bytes().str("x.y").u32(test::kArr).u32(0xffffffff).u64(0)}, {}, 0),
               {"key x.y", "unknown element type 4294967295"});
}

TEST(GgufReaderCorrupt, BoolNotZeroOrOne) {
  expect_error(gguf_file({Bytes().str("x.flag").u32(test::kBool).u8(2)}, {}, 0),
               {"key x.flag", "bool", "is 2"});
  expect_error(gguf_file({Bytes().str("x.flags").u32(test::kArr).u32(test::kBool).u64(2).u8(1).u8(7)}, {}, 0),
               {"key x.flags", "is 7"});
}

TEST(GgufReaderCorrupt, DuplicateKey) {
  expect_error(gguf_file({kv_u32("llama.block_count", 1), kv_u32("llama.block_count", 2)}, {}, 0),
               {"key llama.block_count", "duplicate key"});
}

TEST(GgufReaderCorrupt, EmptyKey) {
  expect_error(gguf_file({kv_u32("", 1)}, {}, 0), {"offset 24", "metadata key 0 is empty"});
}

TEST(GgufReaderCorrupt, AlignmentNotPowerOfTwo) {
  expect_error(gguf_file({kv_u32("general.alignment", 48)}, {}, 0),
               {"key general.alignment", "48 is not a non-zero power of two"});
}

TEST(GgufReaderCorrupt, AlignmentZero) {
  expect_error(gguf_file({kv_u32("general.alignment", 0)}, {}, 0),
               {"key general.alignment", "0 is not a non-zero power of two"});
}

TEST(GgufReaderCorrupt, AlignmentWrongType) {
  expect_error(gguf_file({Bytes().str("general.alignment").u32(test::kU64).u64(32)}, {}, 0),
               {"key general.alignment", "type is uint64, expected uint32"});
}

TEST(GgufReaderCorrupt, AlignmentHonoured) {
  // With general.alignment = 64 a 32-aligned offset is refused and a 64-aligned one accepted.
  const Bytes ok = gguf_file({kv_u32("general.alignment", 64)}, {{"t", {16}, 0, 64}}, 128, 3, 64);
  Result<GgufFile> r = parse(ok);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->alignment(), 64u);
  EXPECT_EQ(r->data_offset() % 64, 0u);
  expect_error(gguf_file({kv_u32("general.alignment", 64)}, {{"t", {16}, 0, 32}}, 128, 3, 64),
               {"tensor t", "offset 32 is not aligned to 64"});
}

// ---- Tensor infos.

TEST(GgufReaderCorrupt, DuplicateTensor) {
  expect_error(gguf_file({}, {{"w", {8}, 0, 0}, {"w", {8}, 0, 32}}, 64),
               {"tensor w", "duplicate tensor name"});
}

TEST(GgufReaderCorrupt, EmptyTensorName) {
  expect_error(gguf_file({}, {{"", {8}, 0, 0}}, 32), {"offset 24", "tensor 0 has an empty name"});
}

TEST(GgufReaderCorrupt, NDimsZero) {
  expect_error(gguf_file({}, {{"w", {}, 0, 0}}, 32), {"tensor w", "n_dims is 0, expected 1 to 4"});
}

TEST(GgufReaderCorrupt, NDimsFive) {
  expect_error(gguf_file({}, {{"w", {1, 1, 1, 1, 1}, 0, 0}}, 32), {"tensor w", "n_dims is 5"});
}

TEST(GgufReaderCorrupt, HugeNDims) {
  TensorSpec t{"w", {8}, 0, 0, 0xfffffff0};
  expect_error(gguf_file({}, {t}, 32), {"tensor w", "n_dims is 4294967280"});
}

TEST(GgufReaderCorrupt, DimZero) {
  expect_error(gguf_file({}, {{"w", {8, 0}, 0, 0}}, 32), {"tensor w", "dim 1 is 0"});
}

TEST(GgufReaderCorrupt, TypeOutOfRange) {
  expect_error(gguf_file({}, {{"w", {32}, kGgmlTypeCount, 0}}, 128), {"tensor w", "type 42 is out of range"});
  expect_error(gguf_file({}, {{"w", {32}, 0xffffffff, 0}}, 128),
               {"tensor w", "type 4294967295 is out of range"});
}

TEST(GgufReaderCorrupt, RemovedType) {
  expect_error(gguf_file({}, {{"w", {32}, 4, 0}}, 128), {"tensor w", "type 4 was removed"});    // Q4_2
  expect_error(gguf_file({}, {{"w", {32}, 31, 0}}, 128), {"tensor w", "type 31 was removed"});  // Q4_0_4_4
}

TEST(GgufReaderCorrupt, RowNotMultipleOfBlock) {
  expect_error(gguf_file({}, {{"w", {16, 2}, 2, 0}}, 64),
               {"tensor w", "row length 16 is not a multiple of the q4_0 block size 32"});
}

TEST(GgufReaderCorrupt, ElementCountOverflow) {
  expect_error(gguf_file({}, {{"w", {uint64_t{1} << 32, uint64_t{1} << 32}, 0, 0}}, 32),
               {"tensor w", "element count overflows"});
  // 2^63 elements fit in a u64 but not in ggml's int64 counts.
  expect_error(gguf_file({}, {{"w", {uint64_t{1} << 32, uint64_t{1} << 31}, 0, 0}}, 32),
               {"tensor w", "element count overflows"});
}

TEST(GgufReaderCorrupt, ByteCountOverflow) {
  expect_error(gguf_file({}, {{"w", {uint64_t{1} << 31, uint64_t{1} << 31}, 0, 0}}, 32),
               {"tensor w", "byte size overflows"});
}

TEST(GgufReaderCorrupt, OffsetUnaligned) {
  expect_error(gguf_file({}, {{"blk.0.attn_q.weight", {8}, 0, 96 + 8}}, 160),
               {"m.gguf: tensor blk.0.attn_q.weight: offset 104 is not aligned to 32"});
}

TEST(GgufReaderCorrupt, OffsetOutOfRange) {
  expect_error(gguf_file({}, {{"w", {8}, 0, 64}}, 64), {"tensor w", "runs past the end of the file"});
  // Offsets near 2^64 must not wrap around into the file.
  expect_error(gguf_file({}, {{"w", {8}, 0, ~uint64_t{31}}}, 64), {"tensor w", "runs past the end"});
}

TEST(GgufReaderCorrupt, OverlappingTensors) {
  // a: bytes 0..63; b at 32 overlaps it.
  expect_error(gguf_file({}, {{"a", {16}, 0, 0}, {"b", {8}, 0, 32}}, 96),
               {"tensor b", "overlaps tensor a (offset 0, 64 bytes)"});
  // Order in the file does not matter: b declared first.
  expect_error(gguf_file({}, {{"b", {8}, 0, 32}, {"a", {16}, 0, 0}}, 96), {"tensor b", "overlaps tensor a"});
}

TEST(GgufReaderCorrupt, SharedOffsetIsOverlap) {
  expect_error(gguf_file({}, {{"a", {8}, 0, 0}, {"b", {8}, 0, 0}}, 64), {"overlaps"});
}

TEST(GgufReaderCorrupt, HugeNameInErrorIsClipped) {
  const std::string name(10000, 'n');
  Result<GgufFile> r = parse(gguf_file({}, {{name, {8}, 0, 8}}, 64));
  ASSERT_FALSE(r.ok());
  EXPECT_LT(r.error().message().size(), 400u);
  EXPECT_NE(r.error().message().find("(10000 bytes)"), std::string::npos);
}

}  // namespace
}  // namespace qe
