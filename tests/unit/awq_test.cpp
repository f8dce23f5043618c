// The AWQ calibrator (convert/awq*.h) end to end on tiny llama models (tiny_model.h) and on its parts:
// the calibration text's checks and window choice, the search's guarantees (never worse than plain
// round-to-nearest, the same loss the written file has), and the folding, which must leave the model's
// function unchanged. SmolLM2's every-layer check and the comparison with llama.cpp are in
// tests/python/test_awq.py.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "convert/awq_capture.h"
#include "convert/awq_gptq.h"
#include "convert/awq_search.h"
#include "convert/run.h"
#include "formats/blocks.h"
#include "formats/blocks_weighted.h"
#include "formats/gguf_reader.h"
#include "model/context.h"
#include "model/model.h"
#include "tiny_model.h"

namespace qe::convert {
namespace {

std::string tmp(const std::string& name) {
  return std::string(QE_TEST_TMPDIR) + "/awq_" + std::to_string(::getpid()) + "_" + name;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// English-like text of n bytes from a fixed seed: words of a small vocabulary.
std::string some_text(size_t n, uint32_t seed) {
  static const char* words[] = {"the", "model", "weights", "are", "quantized", "into", "blocks", "of",
                                "thirty-two", "values", "with", "one", "scale", "each", "and", "a", "code"};
  std::mt19937 rng(seed);
  std::string s;
  while (s.size() < n) {
    s += words[rng() % (sizeof(words) / sizeof(words[0]))];
    s += rng() % 9 == 0 ? ".\n" : " ";
  }
  s.resize(n);
  return s;
}

struct TinyModelFile {
  std::string path = tmp("tiny.gguf");
  explicit TinyModelFile(testing::TinySpec spec = {}) { testing::write_tiny_model(path, spec); }
  ~TinyModelFile() { ::unlink(path.c_str()); }
};

std::unique_ptr<model::Model> open(const std::string& path) {
  model::ModelOptions o;
  o.n_threads = 2;
  o.cache_type = GgmlType::F32;
  Result<std::unique_ptr<model::Model>> m = model::open_model(path, o);
  EXPECT_TRUE(m.ok()) << m.error().message();
  return m.ok() ? std::move(*m) : nullptr;
}

// ---- The calibration text

class CalibrationText : public ::testing::Test {
 protected:
  void SetUp() override { model_ = open(file_.path); }
  Result<CalibrationWindows> windows(const std::string& text, int64_t samples, int64_t ctx, uint64_t seed = 0) {
    write_file(path_, text);
    warnings_.clear();
    return calibration_windows(model_->tok, path_, samples, ctx, seed, warnings_);
  }
  TinyModelFile file_;
  std::unique_ptr<model::Model> model_;
  std::string path_ = tmp("calib.txt");
  std::vector<std::string> warnings_;
};

TEST_F(CalibrationText, RefusesWhatIsNotUsableText) {
  for (const auto& [text, why] : std::vector<std::pair<std::string, std::string>>{
           {"", "empty"},
           {std::string("abc\0def", 7) + some_text(500, 1), "byte 3 is NUL"},
           {some_text(100, 1) + "\xff\xfe" + some_text(500, 2), "byte 100 is not valid UTF-8"},
           {"short text", "10 tokens; one window needs 64"}}) {
    Result<CalibrationWindows> w = windows(text, 4, 64);
    ASSERT_FALSE(w.ok()) << why;
    EXPECT_NE(w.error().message().find(why), std::string::npos) << w.error().message();
    EXPECT_NE(w.error().message().find(path_), std::string::npos) << w.error().message();
    EXPECT_EQ(w.error().message().find('\n'), std::string::npos);
  }
  ::unlink(path_.c_str());
  Result<CalibrationWindows> missing = calibration_windows(model_->tok, path_, 4, 64, 0, warnings_);
  ASSERT_FALSE(missing.ok());
}

TEST_F(CalibrationText, TakesWhatTheTextHoldsAndWarnsWhenShort) {
  Result<CalibrationWindows> w = windows(some_text(64 * 3 + 10, 7), 8, 64);
  ASSERT_TRUE(w.ok()) << w.error().message();
  EXPECT_EQ(w->windows.size(), 3u);
  EXPECT_EQ(w->n_available, 3);
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_NE(warnings_[0].find("fewer than the 8 samples"), std::string::npos) << warnings_[0];
  for (const auto& win : w->windows) EXPECT_EQ(win.size(), 64u);
}

TEST_F(CalibrationText, ALongTextGivesSeededWindowsInTextOrder) {
  const std::string text = some_text(64 * 50, 3);
  Result<CalibrationWindows> a = windows(text, 5, 64, 1), b = windows(text, 5, 64, 1), c = windows(text, 5, 64, 2);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_TRUE(warnings_.empty());
  EXPECT_EQ(a->n_available, 50);
  ASSERT_EQ(a->windows.size(), 5u);
  EXPECT_EQ(a->windows, b->windows);
  EXPECT_NE(a->windows, c->windows);
  // Every window is a run of the text's tokens (byte tokens: token i is byte i), in text order.
  size_t last = 0;
  for (const auto& win : a->windows) {
    std::string bytes(win.begin(), win.end());
    const size_t at = text.find(bytes);
    ASSERT_NE(at, std::string::npos);
    EXPECT_EQ(at % 64, 0u);
    EXPECT_GE(at, last);
    last = at;
  }
}

// ---- The search on random matrices with correlated, uneven inputs (a few salient channels)

struct RandomGroup {
  AwqGroupInput in;
  std::vector<float> w;
  AwqTensor t;
  RandomGroup(int64_t rows, int64_t cols, uint32_t seed, GgmlType type) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> n01(0.0f, 1.0f);
    const int64_t n = 512;
    std::vector<float> x(static_cast<size_t>(n * cols));
    std::vector<float> gain(static_cast<size_t>(cols));
    for (int64_t j = 0; j < cols; ++j) gain[j] = j % 17 == 0 ? 8.0f : 0.5f + 0.5f * static_cast<float>(rng() % 100) / 100;
    for (int64_t t0 = 0; t0 < n; ++t0) {
      const float shared = n01(rng);
      for (int64_t j = 0; j < cols; ++j) x[t0 * cols + j] = gain[j] * (n01(rng) + 0.3f * shared);
    }
    in.cols = cols;
    in.mean_abs.assign(cols, 0.0f);
    in.importance.assign(cols, 0.0f);
    in.gram.assign(cols * cols, 0.0f);
    for (int64_t t0 = 0; t0 < n; ++t0)
      for (int64_t j = 0; j < cols; ++j) {
        const float v = x[t0 * cols + j];
        in.mean_abs[j] += std::fabs(v) / n;
        in.importance[j] += v * v / n;
        for (int64_t k = 0; k < cols; ++k) in.gram[j * cols + k] += v * x[t0 * cols + k] / n;
      }
    w.resize(rows * cols);
    for (float& v : w) v = n01(rng) * 0.05f;
    w[3] = 0.9f;  // an outlier weight for the clipping to consider
    t.name = "w";
    t.type = type;
    t.rows = rows;
    t.cols = cols;
    t.w = w.data();
  }
};

TEST(AwqSearch, NeverWorseThanRoundToNearestAndBetterOnSalientInputs) {
  for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0}) {
    RandomGroup g(48, 128, 11, type);
    std::vector<AwqTensor> ts{g.t};
    AlphaSearch a = search_alpha(ts, g.in, 20, 2);
    ASSERT_EQ(a.losses.size(), 20u);
    EXPECT_DOUBLE_EQ(a.losses[0], ts[0].loss_rtn);
    for (double l : a.losses) EXPECT_GE(l, a.losses[static_cast<size_t>(std::lround(a.alpha * 20))]);
    finish_tensor(ts[0], a.scale, g.in, /*clip=*/true, 2);
    EXPECT_LE(ts[0].loss, ts[0].loss_rtn) << ggml_type_name(type);
    EXPECT_LT(ts[0].loss, 0.9 * ts[0].loss_rtn) << ggml_type_name(type) << ": salient channels should gain";
    EXPECT_GT(a.alpha, 0.0f) << ggml_type_name(type);
  }
}

TEST(AwqSearch, TheReportedLossIsTheWrittenMatricesOutputError) {
  // loss = E|x W^T - x W'^T|^2 with W' the dequantized output, computed here directly from the Gram.
  RandomGroup g(32, 64, 5, GgmlType::Q4_0);
  std::vector<AwqTensor> ts{g.t};
  AlphaSearch a = search_alpha(ts, g.in, 10, 1);
  finish_tensor(ts[0], a.scale, g.in, true, 1);
  const BlockTraits* q = block_traits(GgmlType::Q4_0);
  std::vector<BlockQ4_0> blocks(2);
  std::vector<float> deq(64);
  double loss = 0.0;
  const std::vector<float> imp = scaled_importance(g.in, a.scale);
  for (int64_t r = 0; r < 32; ++r) {
    const float* row = ts[0].out.data() + r * 64;
    if (ts[0].weighted)
      quantize_row_q4_0_weighted(row, blocks.data(), 64, imp.data());
    else
      q->from_float(row, blocks.data(), 64);
    q->to_float(blocks.data(), deq.data(), 64);
    std::vector<double> d(64);
    for (int j = 0; j < 64; ++j) d[j] = g.w[r * 64 + j] - deq[j] / a.scale[j];
    for (int j = 0; j < 64; ++j)
      for (int k = 0; k < 64; ++k) loss += d[j] * g.in.gram[j * 64 + k] * d[k];
  }
  EXPECT_NEAR(ts[0].loss, loss, 1e-4 * loss);
}

TEST(AwqGptq, TheFactorIsTheCholeskyFactorOfTheDampedInverse) {
  RandomGroup g(8, 64, 21, GgmlType::Q4_0);
  std::vector<float> s(64);
  for (int j = 0; j < 64; ++j) s[j] = 0.5f + 0.03f * j;
  const std::vector<float> u = gptq_factor(g.in.gram, 64, s, 2);
  ASSERT_EQ(u.size(), 64u * 64u);
  // (H + damp I) U^T U = I, H = D^-1 G D^-1
  double mean_diag = 0.0;
  for (int i = 0; i < 64; ++i) mean_diag += g.in.gram[i * 64 + i] / (s[i] * s[i]) / 64;
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < i; ++j) ASSERT_EQ(u[i * 64 + j], 0.0f) << "not upper triangular";
  double worst = 0.0;
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 64; ++j) {
      double v = 0.0;
      for (int k = 0; k < 64; ++k) {
        double inv_kj = 0.0;  // (U^T U)[k][j]
        for (int m = 0; m <= std::min(k, j); ++m) inv_kj += double(u[m * 64 + k]) * u[m * 64 + j];
        const double h = g.in.gram[i * 64 + k] / (s[i] * s[k]) + (i == k ? 0.01 * mean_diag : 0.0);
        v += h * inv_kj;
      }
      worst = std::max(worst, std::fabs(v - (i == j ? 1.0 : 0.0)));
    }
  EXPECT_LT(worst, 1e-4);
  // Not positive definite (all zero): no factor.
  EXPECT_TRUE(gptq_factor(std::vector<float>(64 * 64, 0.0f), 64, {}, 1).empty());
}

TEST(AwqGptq, BlocksDecodeToWhatItScoredAndBeatPlainRounding) {
  for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0}) {
    RandomGroup g(16, 128, 8, type);
    const std::vector<float> u = gptq_factor(g.in.gram, 128, {}, 2);
    ASSERT_FALSE(u.empty());
    std::vector<float> deq;
    const std::vector<std::byte> bytes = gptq_round(type, g.w.data(), 16, 128, u, deq, 2);
    const BlockTraits* traits = block_traits(type);
    const size_t row_bytes = ggml_row_bytes(type, 128);
    ASSERT_EQ(bytes.size(), 16 * row_bytes);
    std::vector<float> back(128), plain(128);
    std::vector<std::byte> buf(row_bytes);
    double loss_gptq = 0.0, loss_plain = 0.0;
    auto out_error = [&](const float* w, const float* q) {
      double l = 0.0;
      for (int j = 0; j < 128; ++j)
        for (int k = 0; k < 128; ++k) l += (w[j] - q[j]) * double(g.in.gram[j * 128 + k]) * (w[k] - q[k]);
      return l;
    };
    for (int r = 0; r < 16; ++r) {
      traits->to_float(bytes.data() + r * row_bytes, back.data(), 128);
      for (int j = 0; j < 128; ++j) ASSERT_EQ(back[j], deq[r * 128 + j]) << ggml_type_name(type) << " row " << r;
      traits->from_float(g.w.data() + r * 128, buf.data(), 128);
      traits->to_float(buf.data(), plain.data(), 128);
      loss_gptq += out_error(g.w.data() + r * 128, back.data());
      loss_plain += out_error(g.w.data() + r * 128, plain.data());
    }
    EXPECT_LT(loss_gptq, loss_plain) << ggml_type_name(type);
  }
}

// ---- End to end through run_convert

struct Converted {
  Result<ConvertResult> res = Error{};
  std::string out;
};

// The output goes into a directory of its own, where the test looks for leftovers (other tests may be
// converting beside it at the same time).
Converted convert_tiny(const std::string& input, GgmlType type, AwqOptions o, const std::string& name) {
  Converted c;
  const std::string dir = tmp(name);
  std::filesystem::create_directories(dir);
  c.out = dir + "/out.gguf";
  ConvertJob job;
  job.input = input;
  job.output = c.out;
  job.policy.target = type;
  job.policy.pure = true;
  job.overwrite = true;
  job.n_threads = 2;
  job.awq = std::move(o);
  c.res = run_convert(job, {});
  return c;
}

std::vector<float> all_logits(const model::Model& m, const std::vector<int32_t>& tokens) {
  Result<model::Context> ctx = model::Context::create(m, {.n_ctx = 64, .n_batch = 64, .all_logits = true});
  EXPECT_TRUE(ctx.ok());
  std::vector<float> out;
  EXPECT_TRUE(ctx->eval(tokens, [&](std::span<const float> l) {
                    out.insert(out.end(), l.begin(), l.end());
                    return Status{};
                  }).ok());
  return out;
}

TEST(AwqConvert, FoldingTheScalesLeavesTheLogitsUnchanged) {
  TinyModelFile f;
  const std::string calib = tmp("fold.txt");
  write_file(calib, some_text(64 * 12, 9));
  AwqOptions o;
  o.calib_path = calib;
  o.n_samples = 8;
  o.n_ctx = 64;
  o.fixed_alpha = 0.5f;  // f32 output: the folded model, unquantized
  Converted c = convert_tiny(f.path, GgmlType::F32, o, "folded");
  ASSERT_TRUE(c.res.ok()) << c.res.error().message();
  ASSERT_TRUE(c.res->awq.has_value());
  for (const AwqLayerReport& l : c.res->awq->layers)
    for (const AwqGroupReport& g : l.groups) {
      EXPECT_FLOAT_EQ(g.alpha, 0.5f);
      EXPECT_EQ(g.clipped_rows, 0);  // f32 "quantizes" losslessly: no clip can help
      EXPECT_NEAR(g.loss_awq, 0.0, 1e-9);
    }

  std::unique_ptr<model::Model> a = open(f.path), b = open(c.out);
  ASSERT_TRUE(a && b);
  // The weights did change (else the test proves nothing): attn_norm took 1/s.
  const float* na = a->weights.layers[0].attn_norm;
  const float* nb = b->weights.layers[0].attn_norm;
  double moved = 0.0;
  for (int j = 0; j < 64; ++j) moved = std::max(moved, std::fabs(double(na[j]) - nb[j]) / std::fabs(na[j]));
  EXPECT_GT(moved, 0.05);

  std::vector<int32_t> tokens;
  for (char ch : some_text(60, 77)) tokens.push_back(static_cast<unsigned char>(ch));
  const std::vector<float> la = all_logits(*a, tokens), lb = all_logits(*b, tokens);
  ASSERT_EQ(la.size(), lb.size());
  double max_diff = 0.0, max_abs = 0.0;
  for (size_t i = 0; i < la.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(double(la[i]) - lb[i]));
    max_abs = std::max(max_abs, std::fabs(double(la[i])));
  }
  EXPECT_LT(max_diff, 1e-4 * max_abs) << "max |logit| " << max_abs;
  std::filesystem::remove_all(std::filesystem::path(c.out).parent_path());
  ::unlink(calib.c_str());
}

TEST(AwqConvert, Q4_0BeatsPlainOnEveryGroupAndRecordsItsProvenance) {
  TinyModelFile f;
  const std::string calib = tmp("q4.txt");
  write_file(calib, some_text(64 * 20, 4));
  AwqOptions o;
  o.calib_path = calib;
  o.n_samples = 16;
  o.n_ctx = 64;
  o.n_grid = 10;
  Converted c = convert_tiny(f.path, GgmlType::Q4_0, o, "q4_0");
  ASSERT_TRUE(c.res.ok()) << c.res.error().message();
  const AwqReport& r = *c.res->awq;
  EXPECT_EQ(r.n_samples, 16);
  EXPECT_EQ(r.n_tokens, 16 * 64);
  ASSERT_EQ(r.layers.size(), 2u);
  double rtn = 0.0, awq = 0.0;
  for (const AwqLayerReport& l : r.layers) {
    ASSERT_EQ(l.groups.size(), 4u);
    for (const AwqGroupReport& g : l.groups) {
      EXPECT_LE(g.loss_awq, g.loss_rtn * (1 + 1e-6)) << "layer " << l.layer << " " << g.name;
      EXPECT_GT(g.loss_rtn, 0.0);
      rtn += g.loss_rtn;
      awq += g.loss_awq;
    }
  }
  EXPECT_LT(awq, rtn);

  Result<GgufFile> g = GgufFile::open(c.out);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(*g->get_string("quantize.awq.file"), calib);
  EXPECT_EQ(*g->get_u32("quantize.awq.samples"), 16u);
  EXPECT_EQ(*g->get_u32("quantize.awq.grid"), 10u);
  EXPECT_EQ(*g->get_bool("quantize.awq.clip"), true);
  EXPECT_EQ((*g->get_tensor("blk.0.attn_q.weight"))->type, GgmlType::Q4_0);
  // No working copy is left beside the output.
  const std::filesystem::path dir = std::filesystem::path(c.out).parent_path();
  for (const auto& e : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".awq-f32-"), std::string::npos) << e.path();
  std::filesystem::remove_all(dir);
  ::unlink(calib.c_str());
}

TEST(AwqConvert, BadCalibrationTextIsOneErrorAndNoOutput) {
  TinyModelFile f;
  const std::string calib = tmp("bad.txt");
  write_file(calib, std::string("\0\1\2\3", 4));
  AwqOptions o;
  o.calib_path = calib;
  Converted c = convert_tiny(f.path, GgmlType::Q4_0, o, "bad");
  ASSERT_FALSE(c.res.ok());
  EXPECT_NE(c.res.error().message().find("not UTF-8 text"), std::string::npos) << c.res.error().message();
  EXPECT_FALSE(std::filesystem::exists(c.out));
  const std::filesystem::path dir = std::filesystem::path(c.out).parent_path();
  EXPECT_TRUE(std::filesystem::is_empty(dir)) << "a working copy was left in " << dir;
  std::filesystem::remove_all(dir);
  ::unlink(calib.c_str());
}

}  // namespace
}  // namespace qe::convert
