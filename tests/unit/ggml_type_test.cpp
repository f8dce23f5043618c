#include "formats/ggml_type.h"

#include <gtest/gtest.h>

#include "formats/error.h"

namespace qe {
namespace {

TEST(GgmlType, SizesMatchGgml) {
  EXPECT_EQ(ggml_type_info(GgmlType::Q4_0).type_size, 18u);
  EXPECT_EQ(ggml_type_info(GgmlType::Q4_1).type_size, 20u);
  EXPECT_EQ(ggml_type_info(GgmlType::Q8_0).type_size, 34u);
  EXPECT_EQ(ggml_type_info(GgmlType::Q8_1).type_size, 36u);
  EXPECT_EQ(ggml_type_info(GgmlType::Q6_K).type_size, 210u);
  EXPECT_EQ(ggml_type_info(GgmlType::Q6_K).block_size, 256u);
  EXPECT_EQ(ggml_type_info(GgmlType::BF16).type_size, 2u);
  EXPECT_EQ(ggml_row_bytes(GgmlType::Q4_0, 64), 36u);
}

TEST(GgmlType, RemovedAndUnknownIdsAreRejected) {
  for (uint32_t id : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 42u, 1000u, 0xffffffffu})
    EXPECT_FALSE(ggml_type_info(id).has_value()) << id;
  EXPECT_TRUE(ggml_type_info(30u).has_value());
}

TEST(GgmlType, NamesRoundTrip) {
  for (uint32_t id = 0; id < kGgmlTypeCount; ++id) {
    auto info = ggml_type_info(id);
    if (!info) continue;
    auto back = ggml_type_from_name(info->name);
    ASSERT_TRUE(back.has_value()) << info->name;
    EXPECT_EQ(static_cast<uint32_t>(*back), id);
  }
  EXPECT_EQ(ggml_type_from_name("Q4_0"), GgmlType::Q4_0);
  EXPECT_FALSE(ggml_type_from_name("q4_2").has_value());
}

TEST(Error, MessageIsOneLineAndSkipsEmptyParts) {
  EXPECT_EQ((Error{"a.gguf", "llama.block_count", "missing key"}).message(), "a.gguf: llama.block_count: missing key");
  EXPECT_EQ((Error{"a.gguf", "", "is a directory"}).message(), "a.gguf: is a directory");
  EXPECT_EQ((Error{"a.gguf", "bad\nname", "x"}).message(), "a.gguf: bad name: x");
}

// A hostile name cannot drive the terminal: C0 and C1 controls, DEL and bytes that are not well-formed
// UTF-8 (a lone continuation, a truncated sequence, an overlong form, a surrogate) become \xNN; tabs and
// well-formed UTF-8 stay as they are.
TEST(Error, MessageEscapesControlsAndInvalidUtf8) {
  EXPECT_EQ((Error{"a.gguf", "\x1b]0;t\x07", "x"}).message(), "a.gguf: \\x1b]0;t\\x07: x");
  EXPECT_EQ(printable("\xc2\x9b[2J \x7f"), "\\xc2\\x9b[2J \\x7f");
  EXPECT_EQ(printable("\x80 \xe2\x82 \xc0\xaf \xed\xa0\x80"), "\\x80 \\xe2\\x82 \\xc0\\xaf \\xed\\xa0\\x80");
  EXPECT_EQ(printable("caf\xc3\xa9\t\xf0\x9f\xa6\x99 \xc2\xa0"), "caf\xc3\xa9\t\xf0\x9f\xa6\x99 \xc2\xa0");
}

}  // namespace
}  // namespace qe
