// llama.cpp's flag habits in front of CLI11 (cli/llama_flags.h): renames, GPU-only flags dropped with
// a note, unknown dash-words named, and values passed on untouched even when they start with a dash.
#include "cli/llama_flags.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace qe::cli {
namespace {

struct Fixture {
  CLI::App app;
  int n = 0;
  bool chat = false;
  std::string prompt, type;
  LlamaFlags flags{{{"-cnv", "--conversation"}, {"-ctk", "--cache-type-k"}},
                   {{"-ngl", true}, {"-fa", false, {"on", "off", "auto"}}, {"--kv-unified", false}}};
  Fixture() {
    app.add_option("-n,--n-predict", n);
    app.add_option("-p,--prompt", prompt);
    app.add_flag("--conversation", chat);
    app.add_option("--cache-type-k", type);
  }
  Result<SortedArgs> sort(std::vector<const char*> args) {
    args.insert(args.begin(), "qrun");
    return sort_llama_flags(app, static_cast<int>(args.size()), args.data(), flags);
  }
};

using Args = std::vector<std::string>;

TEST(LlamaFlags, RenamesAndValues) {
  Fixture f;
  Result<SortedArgs> r = f.sort({"-cnv", "-ctk", "f32", "-p", "-ngl is a prompt here", "-n", "-1", "-n5"});
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->args, (Args{"qrun", "--conversation", "--cache-type-k", "f32", "-p", "-ngl is a prompt here", "-n",
                           "-1", "-n5"}));
  EXPECT_TRUE(r->notes.empty());
}

TEST(LlamaFlags, GpuFlagsAreDroppedWithTheirValuesAndANote) {
  Fixture f;
  Result<SortedArgs> r = f.sort({"-ngl", "99", "-fa", "on", "-n", "3", "-fa", "--kv-unified", "--prompt=x"});
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->args, (Args{"qrun", "-n", "3", "--prompt=x"}));
  ASSERT_EQ(r->notes.size(), 4u);
  EXPECT_EQ(r->notes[0], "-ngl does nothing on this CPU engine; ignored");
}

TEST(LlamaFlags, UnknownDashWordsAreNamedNeverMisread) {
  for (const char* bad : {"-ngx", "-xyz", "--nope", "--nope=3", "-st"}) {
    Fixture f;
    Result<SortedArgs> r = f.sort({"-n", "2", bad});
    ASSERT_FALSE(r.ok()) << bad;
    const std::string name = std::string(bad).substr(0, std::string(bad).find('='));
    EXPECT_EQ(r.error().reason, "unknown option " + name);
  }
}

TEST(LlamaFlags, UnknownSingleLettersAreNamedToo) {
  for (const char* bad : {"-i", "-r", "-e", "-r5"}) {  // llama-cli's -i, -r PROMPT, -e: not this tool's
    Fixture f;
    Result<SortedArgs> r = f.sort({"-n", "2", bad, "x"});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().reason, "unknown option " + std::string(bad).substr(0, 2));
  }
}

TEST(LlamaFlags, EverythingAfterDoubleDashIsPositional) {
  Fixture f;
  Result<SortedArgs> r = f.sort({"-n", "1", "--", "-ngl", "-xyz"});
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->args, (Args{"qrun", "-n", "1", "--", "-ngl", "-xyz"}));
}

}  // namespace
}  // namespace qe::cli
