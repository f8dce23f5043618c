// The front ends' kernel-level choice: --isa, else QE_ISA, else the best level; a bad QE_ISA is reported
// and ignored, a bad --isa is an error naming the flag.
#include <gtest/gtest.h>

#include <cstdlib>

#include "cli/isa_choice.h"
#include "kernels/kernel_table.h"

namespace qe::cli {
namespace {

TEST(IsaChoice, BadEnvironmentOverrideIsIgnoredNotFatal) {
  setenv("QE_ISA", "no-such-isa", 1);
  ASSERT_TRUE(choose_isa("").ok());
  EXPECT_EQ(kernels::kernels().isa, kernels::best_isa());
  EXPECT_NE(kernels::describe_isa().find("ignored"), std::string::npos) << kernels::describe_isa();
  unsetenv("QE_ISA");
}

TEST(IsaChoice, EnvironmentPicksASupportedLevel) {
  setenv("QE_ISA", "ref", 1);
  ASSERT_TRUE(choose_isa("").ok());
  EXPECT_EQ(kernels::kernels().isa, kernels::Isa::ref);
  EXPECT_NE(kernels::describe_isa().find("via QE_ISA"), std::string::npos) << kernels::describe_isa();
  unsetenv("QE_ISA");
  ASSERT_TRUE(kernels::select_isa(kernels::best_isa()).ok());
}

TEST(IsaChoice, FlagWinsOverEnvironmentAndBadFlagNamesIt) {
  setenv("QE_ISA", "no-such-isa", 1);
  ASSERT_TRUE(choose_isa("ref").ok());
  EXPECT_EQ(kernels::kernels().isa, kernels::Isa::ref);
  const Status bad = choose_isa("sse9");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("--isa"), std::string::npos) << bad.error().message();
  unsetenv("QE_ISA");
  ASSERT_TRUE(kernels::select_isa(kernels::best_isa()).ok());
}

}  // namespace
}  // namespace qe::cli
