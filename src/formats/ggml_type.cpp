#include "formats/ggml_type.h"

#include <array>
#include <cctype>
#include <string>

#include "formats/error.h"

namespace qe {
namespace {

constexpr uint32_t QK_K = 256;  // super-block size of the k-quants and i-quants

// Indexed by id; empty name = not a type (never existed or removed). Sizes are ggml's type_traits
// (note q8_1 is 36 bytes: fp16 d and fp16 s; the gguf Python package still says 40, from before ggml
// packed them as half2).
constexpr std::array<GgmlTypeInfo, kGgmlTypeCount> kTypes = [] {
  std::array<GgmlTypeInfo, kGgmlTypeCount> t{};
  t[0] = {"f32", 1, 4};
  t[1] = {"f16", 1, 2};
  t[2] = {"q4_0", 32, 2 + 16};
  t[3] = {"q4_1", 32, 2 + 2 + 16};
  t[6] = {"q5_0", 32, 2 + 4 + 16};
  t[7] = {"q5_1", 32, 2 + 2 + 4 + 16};
  t[8] = {"q8_0", 32, 2 + 32};
  t[9] = {"q8_1", 32, 2 + 2 + 32};
  t[10] = {"q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4};
  t[11] = {"q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12};
  t[12] = {"q4_K", QK_K, 2 + 2 + QK_K / 2 + 12};
  t[13] = {"q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12};
  t[14] = {"q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16};
  t[15] = {"q8_K", QK_K, 4 + QK_K + QK_K / 8};
  t[16] = {"iq2_xxs", QK_K, 2 + QK_K / 4};
  t[17] = {"iq2_xs", QK_K, 2 + QK_K / 4 + QK_K / 32};
  t[18] = {"iq3_xxs", QK_K, 2 + QK_K / 4 + QK_K / 8};
  t[19] = {"iq1_s", QK_K, 2 + QK_K / 8 + QK_K / 16};
  t[20] = {"iq4_nl", 32, 2 + 16};
  t[21] = {"iq3_s", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4};
  t[22] = {"iq2_s", QK_K, 2 + QK_K / 4 + QK_K / 16};
  t[23] = {"iq4_xs", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64};
  t[24] = {"i8", 1, 1};
  t[25] = {"i16", 1, 2};
  t[26] = {"i32", 1, 4};
  t[27] = {"i64", 1, 8};
  t[28] = {"f64", 1, 8};
  t[29] = {"iq1_m", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32};
  t[30] = {"bf16", 1, 2};
  t[34] = {"tq1_0", QK_K, 2 + 4 * 13};
  t[35] = {"tq2_0", QK_K, 2 + 64};
  t[39] = {"mxfp4", 32, 1 + 16};
  t[40] = {"nvfp4", 64, 4 + 32};
  t[41] = {"q1_0", 128, 2 + 16};
  return t;
}();

}  // namespace

std::optional<GgmlTypeInfo> ggml_type_info(uint32_t id) {
  if (id >= kGgmlTypeCount || kTypes[id].name.empty()) return std::nullopt;
  return kTypes[id];
}

GgmlTypeInfo ggml_type_info(GgmlType type) {
  auto info = ggml_type_info(static_cast<uint32_t>(type));
  QE_CHECK(info.has_value());
  return *info;
}

std::string_view ggml_type_name(GgmlType type) { return ggml_type_info(type).name; }

std::optional<GgmlType> ggml_type_from_name(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (uint32_t id = 0; id < kGgmlTypeCount; ++id) {
    std::string known(kTypes[id].name);
    for (char& c : known) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!known.empty() && known == lower) return static_cast<GgmlType>(id);
  }
  return std::nullopt;
}

uint64_t ggml_row_bytes(GgmlType type, uint64_t n) {
  const GgmlTypeInfo info = ggml_type_info(type);
  QE_CHECK(n % info.block_size == 0);
  return n / info.block_size * info.type_size;
}

}  // namespace qe
