// --override-kv KEY=TYPE:VALUE (cli/kv_override.h): llama.cpp's spelling, its 127-byte limits, and the
// types llama-quantize writes (int as u32 of the absolute value, float as f32). The bytes against
// llama-quantize itself: tests/python/test_qconvert_llamacpp_habits.py.
#include "cli/kv_override.h"

#include <gtest/gtest.h>

#include <string>

namespace qe::cli {
namespace {

GgufKv written(const std::string& spec) {
  Result<KvOverride> o = parse_kv_override(spec);
  EXPECT_TRUE(o.ok()) << spec << ": " << o.error().message();
  Result<GgufKv> kv = quantize_kv(*o);
  EXPECT_TRUE(kv.ok()) << spec << ": " << kv.error().message();
  return *kv;
}

TEST(KvOverride, EachTypeAsLlamaQuantizeWritesIt) {
  GgufKv kv = written("foo.n=int:7");
  EXPECT_EQ(kv.key, "foo.n");
  ASSERT_NE(kv.value.get<uint32_t>(), nullptr);
  EXPECT_EQ(*kv.value.get<uint32_t>(), 7u);
  EXPECT_EQ(*written("foo.n=int:-7").value.get<uint32_t>(), 7u);  // std::abs, as llama-quant.cpp
  EXPECT_EQ(*written("foo.n=int:4294967295").value.get<uint32_t>(), 4294967295u);
  ASSERT_NE(written("foo.f=float:0.5").value.get<float>(), nullptr);
  EXPECT_EQ(*written("foo.f=float:0.5").value.get<float>(), 0.5f);
  EXPECT_EQ(*written("foo.f=float:1e-3").value.get<float>(), 1e-3f);
  EXPECT_EQ(*written("foo.b=bool:true").value.get<bool>(), true);
  EXPECT_EQ(*written("foo.b=bool:false").value.get<bool>(), false);
  EXPECT_EQ(*written("general.name=str:a=b:c").value.get<std::string>(), "a=b:c");  // the first '=' splits
  EXPECT_EQ(*written("foo.s=str:").value.get<std::string>(), "");
  const std::string key127(127, 'k'), value127(127, 'v');
  kv = written(key127 + "=str:" + value127);
  EXPECT_EQ(kv.key, key127);
  EXPECT_EQ(*kv.value.get<std::string>(), value127);
}

TEST(KvOverride, MalformedSpecsAreOneErrorNamingThem) {
  const std::string bad[] = {"foo",          "foo=7",        "=int:1",          "foo=u8:1",
                             "foo=int:7x",   "foo=int:",     "foo=int: 7",      "foo=float:abc",
                             "foo=float:",   "foo=bool:yes", "foo=bool:True",   std::string(128, 'k') + "=int:1",
                             "foo=str:" + std::string(128, 'v')};
  for (const std::string& spec : bad) {
    Result<KvOverride> o = parse_kv_override(spec);
    ASSERT_FALSE(o.ok()) << spec;
    EXPECT_EQ(o.error().field, "--override-kv");
    if (spec.size() < 100) {
      EXPECT_NE(o.error().reason.find("'" + spec + "'"), std::string::npos) << o.error().reason;
    }
  }
  Result<KvOverride> big = parse_kv_override("foo=int:4294967296");
  ASSERT_TRUE(big.ok());
  EXPECT_FALSE(quantize_kv(*big).ok());  // llama-quantize would truncate it to 0
}

}  // namespace
}  // namespace qe::cli
