// Detection and selection: the override may only pick a level the CPU runs; anything else is an Error.
#include <gtest/gtest.h>

#include "kernels/kernel_table.h"
#include "kernels/threads.h"

namespace qe::kernels {
namespace {

TEST(Dispatch, NamesRoundTrip) {
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512, Isa::neon}) EXPECT_EQ(isa_from_name(isa_name(isa)), isa);
  EXPECT_EQ(isa_from_name("AVX2"), Isa::avx2);
  EXPECT_FALSE(isa_from_name("sse9").has_value());
}

TEST(Dispatch, EveryLevelIsSelectableOrAClearError) {
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512, Isa::neon}) {
    const Status st = select_isa(isa);
    if (isa_supported(isa)) {
      ASSERT_TRUE(st.ok()) << st.error().message();
      EXPECT_EQ(kernels().isa, isa);
      EXPECT_EQ(active_isa(), isa);
      ASSERT_NE(kernel_table(isa), nullptr);
      // the numerics tables follow the selected level
      EXPECT_EQ(&kernels(Numerics::fast, 7), &kernels());
      EXPECT_EQ(&kernels(Numerics::llamacpp, 1), kernel_table(isa, Numerics::llamacpp, 1));
      EXPECT_EQ(&kernels(Numerics::llamacpp, 7), kernel_table(isa, Numerics::llamacpp, 7));
      EXPECT_EQ(kernels(Numerics::llamacpp, 7).isa, isa);
    } else {
      ASSERT_FALSE(st.ok()) << isa_name(isa) << " should be refused here";
      EXPECT_NE(st.error().message().find(std::string(isa_name(isa))), std::string::npos);
      EXPECT_EQ(kernel_table(isa), nullptr);
      EXPECT_EQ(kernel_table(isa, Numerics::llamacpp, 1), nullptr);
      std::printf("note: %s not available on this CPU, refused as expected\n", std::string(isa_name(isa)).c_str());
    }
  }
  EXPECT_FALSE(select_isa("bogus").ok());
  ASSERT_TRUE(select_isa(best_isa()).ok());
  std::printf("%s\n", describe_isa().c_str());
}

TEST(Dispatch, TablesAreComplete) {
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512, Isa::neon}) {
    const KernelTable* t = kernel_table(isa);
    if (!t) continue;
    EXPECT_EQ(t->isa, isa);
    EXPECT_EQ(t->numerics, Numerics::fast);
    for (const void* f : {(const void*)t->quantize_q8_0, (const void*)t->quantize_q8_1, (const void*)t->quantize_q8_K,
                          (const void*)t->tile_q4_0_q8_0, (const void*)t->tile_q4_1_q8_1, (const void*)t->tile_q8_0_q8_0,
                          (const void*)t->tile_q6_K_q8_K, (const void*)t->tile_q5_0_q8_0, (const void*)t->tile_q5_1_q8_1,
                          (const void*)t->tile_iq4_nl_q8_0, (const void*)t->tile_q2_K_q8_K, (const void*)t->tile_q3_K_q8_K,
                          (const void*)t->tile_q4_K_q8_K, (const void*)t->tile_q5_K_q8_K, (const void*)t->tile_iq4_xs_q8_K,
                          (const void*)t->tile_f16_f32, (const void*)t->tile_bf16_f32,
                          (const void*)t->tile_f32_f32, (const void*)t->rms_norm, (const void*)t->rope,
                          (const void*)t->softmax, (const void*)t->silu_mul, (const void*)t->add, (const void*)t->scale})
      EXPECT_NE(f, nullptr) << isa_name(isa);
  }
}

TEST(Dispatch, CpuFeaturesAreConsistent) {
  const CpuFeatures& f = cpu_features();
  EXPECT_FALSE(f.brand.empty());
  if (isa_supported(Isa::avx512)) {
    EXPECT_TRUE(isa_supported(Isa::avx2));
  }
  if (isa_supported(Isa::avx2)) {
    EXPECT_TRUE(f.os_ymm);
  }
}

TEST(Threads, DefaultIsPhysicalCoresWithinAffinity) {
  EXPECT_GE(physical_core_count(), 1);
  EXPECT_GE(default_thread_count(), 1);
  EXPECT_LE(default_thread_count(), physical_core_count());
  EXPECT_FALSE(pin_threads(physical_core_count() + 1).ok());
}

}  // namespace
}  // namespace qe::kernels
