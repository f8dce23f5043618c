// Importance weights and extra metadata in run_convert (ConvertJob::imatrix / ::importance /
// ::extra_metadata), the parts the calibrator drives through the library rather than the command line:
// job.importance wins over the imatrix file for the names it has, a row that does not fit is an Error
// with option "importance", weighted q4_0 / q4_1 rows are ggml's weighted quantizer's bytes, and extra
// keys replace an input key in place or go after the input's keys. (The bytes against ggml itself, and
// the imatrix file path: tests/python/test_qconvert_imatrix.py.)
#include <gtest/gtest.h>

#include <algorithm>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "convert/imatrix_file.h"
#include "convert/importance.h"
#include "convert/run.h"
#include "formats/blocks_weighted.h"
#include "formats/gguf_writer.h"

namespace qe::convert {
namespace {

constexpr uint32_t kSeed = 20240613;
constexpr int64_t kCols = 64, kRows = 6;

std::string tmp(const std::string& name) {
  return std::string(QE_TEST_TMPDIR) + "/importance_" + name + "_" + std::to_string(::getpid());
}

// One 2-D f32 weight and one 1-D norm, with two metadata keys.
std::vector<float> write_input(const std::string& path) {
  std::mt19937 rng(kSeed);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  std::vector<float> w(kRows * kCols);
  for (float& x : w) x = nd(rng);
  std::vector<float> norm(kCols, 1.0f);
  GgufWriter g;
  EXPECT_TRUE(g.set("general.architecture", GgufValue::str("llama")));
  EXPECT_TRUE(g.set("general.name", GgufValue::str("tiny")));
  EXPECT_TRUE(g.add_tensor("blk.0.attn_q.weight", GgmlType::F32, {kCols, kRows}));
  EXPECT_TRUE(g.add_tensor("blk.0.attn_norm.weight", GgmlType::F32, {kCols}));
  EXPECT_TRUE(g.open(path, true));
  EXPECT_TRUE(g.write_tensor("blk.0.attn_q.weight", std::as_bytes(std::span<const float>(w))));
  EXPECT_TRUE(g.write_tensor("blk.0.attn_norm.weight", std::as_bytes(std::span<const float>(norm))));
  EXPECT_TRUE(g.finish());
  return w;
}

std::vector<float> ramp(float a, float b) {
  std::vector<float> v(kCols);
  for (int64_t i = 0; i < kCols; ++i) v[i] = a + b * static_cast<float>(i % 7);
  return v;
}

std::vector<std::byte> tensor_bytes(const std::string& path, const std::string& name) {
  Result<GgufFile> g = GgufFile::open(path);
  EXPECT_TRUE(g) << (g ? "" : g.error().message());
  const GgufTensorInfo* t = g->find_tensor(name);
  EXPECT_NE(t, nullptr);
  return {t->data.begin(), t->data.end()};
}

std::vector<std::byte> weighted_q4_0(const std::vector<float>& w, const std::vector<float>& imp) {
  std::vector<BlockQ4_0> out(kRows * kCols / 32);
  for (int64_t r = 0; r < kRows; ++r)
    quantize_row_q4_0_weighted(&w[r * kCols], &out[r * kCols / 32], kCols, imp.data());
  const auto* b = reinterpret_cast<const std::byte*>(out.data());
  return {b, b + out.size() * sizeof(BlockQ4_0)};
}

ConvertJob job_for(const std::string& in, const std::string& out) {
  ConvertJob job;
  job.input = in;
  job.output = out;
  job.overwrite = true;
  job.policy.target = GgmlType::Q4_0;
  job.policy.pure = true;
  job.n_threads = 2;
  return job;
}

TEST(ConvertImportance, JobImportanceWinsOverTheFile) {
  const std::string in = tmp("in.gguf"), out = tmp("out.gguf"), im = tmp("im.gguf");
  const std::vector<float> w = write_input(in);
  ImatrixData data;
  data.datasets = {"calib.txt"};
  data.chunk_count = 3;
  data.chunk_size = 16;
  data.entries.push_back({"blk.0.attn_q.weight", ramp(1.0f, 5.0f), {1.0f}});
  ASSERT_TRUE(write_imatrix_gguf(im, data, true));

  ConvertJob job = job_for(in, out);
  job.imatrix = im;
  Result<ConvertResult> from_file = run_convert(job, {});
  ASSERT_TRUE(from_file) << from_file.error().message();
  EXPECT_EQ(tensor_bytes(out, "blk.0.attn_q.weight"), weighted_q4_0(w, ramp(1.0f, 5.0f)));
  // The report follows the output's order, llama-quantize's (the layers' tensors by name).
  const auto report = [&](const std::string& name) {
    const auto it = std::find_if(from_file->tensors.begin(), from_file->tensors.end(),
                                 [&](const TensorReport& t) { return t.name == name; });
    EXPECT_NE(it, from_file->tensors.end()) << name;
    return it == from_file->tensors.end() ? TensorReport{} : *it;
  };
  EXPECT_TRUE(report("blk.0.attn_q.weight").weighted);
  EXPECT_FALSE(report("blk.0.attn_norm.weight").weighted);  // the norm stays f32

  auto imp = std::make_shared<std::map<std::string, std::vector<float>>>();
  (*imp)["blk.0.attn_q.weight"] = ramp(40.0f, -3.0f);
  (*imp)["blk.7.ffn_up.weight"] = ramp(1.0f, 1.0f);  // not in the output: ignored
  job.importance = imp;
  Result<ConvertResult> both = run_convert(job, {});
  ASSERT_TRUE(both) << both.error().message();
  const std::vector<std::byte> got = tensor_bytes(out, "blk.0.attn_q.weight");
  EXPECT_EQ(got, weighted_q4_0(w, ramp(40.0f, -3.0f)));
  EXPECT_NE(got, weighted_q4_0(w, ramp(1.0f, 5.0f)));  // guards the comparison: the two weightings differ

  std::filesystem::remove(in);
  std::filesystem::remove(out);
  std::filesystem::remove(im);
}

TEST(ConvertImportance, RowThatDoesNotFitIsAnError) {
  const std::string in = tmp("fit_in.gguf"), out = tmp("fit_out.gguf");
  write_input(in);
  std::filesystem::remove(out);
  ConvertJob job = job_for(in, out);
  auto imp = std::make_shared<std::map<std::string, std::vector<float>>>();
  (*imp)["blk.0.attn_q.weight"] = std::vector<float>(kCols - 32, 1.0f);
  job.importance = imp;
  Result<ConvertResult> r = run_convert(job, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().option, "importance");
  EXPECT_NE(r.error().message().find("blk.0.attn_q.weight"), std::string::npos) << r.error().message();
  EXPECT_FALSE(std::filesystem::exists(out));

  (*imp)["blk.0.attn_q.weight"] = std::vector<float>(kCols, 1.0f);
  (*imp)["blk.0.attn_q.weight"][5] = std::nanf("");
  r = run_convert(job, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().option, "importance");
  EXPECT_FALSE(std::filesystem::exists(out));
  std::filesystem::remove(in);
}

// llama-quantize's key order: the input's keys, then general.quantization_version and general.file_type,
// then the overrides, each set as ggml's gguf_set_val sets a key (removed, then appended).
TEST(ConvertImportance, MetadataInLlamaQuantizeOrder) {
  const std::string in = tmp("kv_in.gguf"), out = tmp("kv_out.gguf");
  write_input(in);
  ConvertJob job = job_for(in, out);
  job.extra_metadata = {{"general.name", GgufValue::str("renamed")},
                        {"quantize.awq.grid", GgufValue::u32(20)}};
  Result<ConvertResult> r = run_convert(job, {});
  ASSERT_TRUE(r) << r.error().message();
  Result<GgufFile> g = GgufFile::open(out);
  ASSERT_TRUE(g);
  std::vector<std::string> keys;
  for (const GgufKv& kv : g->metadata()) keys.push_back(kv.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"general.architecture", "general.quantization_version",
                                            "general.file_type", "general.name", "quantize.awq.grid"}));
  EXPECT_EQ(*g->get_string("general.name"), "renamed");
  ASSERT_NE(g->find("quantize.awq.grid"), nullptr);
  EXPECT_EQ(*g->find("quantize.awq.grid"), GgufValue::u32(20));
  std::filesystem::remove(in);
  std::filesystem::remove(out);
}

TEST(ConvertImportance, SetMetadata) {
  std::vector<GgufKv> kvs = {{"a", GgufValue::u32(1)}, {"b", GgufValue::str("x")}};
  const std::vector<GgufKv> extra = {{"c", GgufValue::u32(3)}, {"a", GgufValue::str("one")}};
  set_metadata(kvs, extra);  // as gguf_set_val: "a" is removed and appended again
  ASSERT_EQ(kvs.size(), 3u);
  EXPECT_EQ(kvs[0].key, "b");
  EXPECT_EQ(kvs[1].key, "c");
  EXPECT_EQ(kvs[2].key, "a");
  EXPECT_EQ(kvs[2].value, GgufValue::str("one"));
}

}  // namespace
}  // namespace qe::convert
