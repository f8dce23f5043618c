// The sampling flags qrun and qserve share (cli/sampling_flags.h): llama-cli's TOKEN_ID(+/-)BIAS for
// --logit-bias, every flag into SamplerParams, and the vocabulary check. What the bias and the
// penalties do against llama.cpp's own samplers: tests/python/test_llamacpp_parity.py.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "cli/sampling_flags.h"

namespace qe::cli {
namespace {

TEST(LogitBiasFlag, ReadsLlamaClisForms) {
  const struct {
    const char* text;
    int32_t id;
    float bias;
  } good[] = {{"15043+1", 15043, 1.0f}, {"15043-1", 15043, -1.0f}, {"0+0.25", 0, 0.25f},
              {"7-2.5e-1", 7, -0.25f},  {"12-inf", 12, -INFINITY}, {"3+0", 3, 0.0f}};
  for (const auto& g : good) {
    Result<model::LogitBias> b = parse_logit_bias(g.text);
    ASSERT_TRUE(b.ok()) << g.text << ": " << b.error().message();
    EXPECT_EQ(b->id, g.id) << g.text;
    EXPECT_EQ(b->bias, g.bias) << g.text;
  }
}

TEST(LogitBiasFlag, RefusesWhatIsNotTokenSignNumber) {
  for (const char* bad : {"", "+1", "-5+1", "12", "12*1", "12+", "12-", "12+abc", "12--1", "12+-1", "12++1",
                          "12+nan", "12+1e40", "12+1 ", " 12+1", "99999999999+1", "12-infinity", "12+inf"}) {
    Result<model::LogitBias> b = parse_logit_bias(bad);
    ASSERT_FALSE(b.ok()) << "'" << bad << "'";
    EXPECT_NE(b.error().message().find("--logit-bias"), std::string::npos) << b.error().message();
  }
}

TEST(SamplingFlags, FillTheParamsAndCheckTheVocabulary) {
  model::SamplerParams p;
  CLI::App app;
  add_sampling_options(app, p, "Sampling");
  std::vector<std::string> args = {"-l",
                                   "5+1",
                                   "--logit-bias",
                                   "6-inf",
                                   "--frequency-penalty",
                                   "0.5",
                                   "--presence-penalty",
                                   "-0.25",
                                   "--repeat-penalty",
                                   "1.1",
                                   "--repeat-last-n",
                                   "-1",
                                   "--temp",
                                   "0"};
  std::vector<const char*> argv = {"test"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  app.parse(static_cast<int>(argv.size()), argv.data());
  ASSERT_EQ(p.logit_bias.size(), 2u);
  EXPECT_EQ(p.logit_bias[0].id, 5);
  EXPECT_EQ(p.logit_bias[0].bias, 1.0f);
  EXPECT_EQ(p.logit_bias[1].id, 6);
  EXPECT_EQ(p.logit_bias[1].bias, -INFINITY);
  EXPECT_EQ(p.frequency_penalty, 0.5f);
  EXPECT_EQ(p.presence_penalty, -0.25f);
  EXPECT_EQ(p.repeat_penalty, 1.1f);
  EXPECT_EQ(p.repeat_last_n, -1);
  EXPECT_EQ(p.temp, 0.0f);
  EXPECT_TRUE(p.penalized());
  EXPECT_TRUE(check_logit_bias(p, 7, "m.gguf").ok());
  Status st = check_logit_bias(p, 6, "m.gguf");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().message(),
            "m.gguf: --logit-bias: token id 6 is outside the model's vocabulary of 6 tokens");

  const char* bad[] = {"test", "-l", "5*1"};
  EXPECT_THROW(app.parse(3, bad), CLI::ValidationError);
}

}  // namespace
}  // namespace qe::cli
