#include "convert/types.h"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>

namespace qe::convert {
namespace {

constexpr GgmlType kWritable[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16,
                                  GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// Applies the block-size fallback to a preferred type.
TypeChoice fit_rows(TypeChoice c, std::span<const uint64_t> dims) {
  const uint64_t block = ggml_type_info(c.type).block_size;
  if (dims[0] % block == 0) return c;
  std::string why = fmt::format("row length {} is not a multiple of {}'s block of {}: f16", dims[0],
                                ggml_type_name(c.type), block);
  c.reason = c.reason.empty() ? why : c.reason + "; " + why;
  c.type = GgmlType::F16;
  c.fallback = true;
  return c;
}

}  // namespace

std::optional<GgmlType> parse_output_type(std::string_view name) {
  std::optional<GgmlType> t = ggml_type_from_name(lower(name));
  if (!t || std::find(std::begin(kWritable), std::end(kWritable), *t) == std::end(kWritable))
    return std::nullopt;
  return t;
}

std::string_view output_type_names() { return "f32, f16, bf16, q8_0, q4_0, q4_1"; }

uint32_t llama_file_type(GgmlType target) {
  switch (target) {
    case GgmlType::F32: return 0;
    case GgmlType::F16: return 1;
    case GgmlType::Q4_0: return 2;
    case GgmlType::Q4_1: return 3;
    case GgmlType::Q8_0: return 7;
    case GgmlType::BF16: return 32;
    default: break;
  }
  QE_CHECK(false && "llama_file_type: not a type qconvert writes");
  return 0;
}

std::optional<GgmlType> type_of_llama_file_type(uint32_t ftype) {
  for (GgmlType t : kWritable)
    if (llama_file_type(t) == ftype) return t;
  return std::nullopt;
}

Result<TensorTypeOverride> parse_tensor_type_override(std::string_view spec) {
  const size_t eq = spec.rfind('=');
  if (eq == std::string_view::npos || eq == 0)
    return Error{"", "tensor_type", fmt::format("'{}' is not REGEX=TYPE", spec), "tensor_type"};
  std::string_view pattern = spec.substr(0, eq), type_name = spec.substr(eq + 1);
  std::optional<GgmlType> type = parse_output_type(type_name);
  if (!type)
    return Error{"", "tensor_type",
                 fmt::format("'{}': type '{}' is not one of {}", spec, type_name, output_type_names()),
                 "tensor_type"};
  try {
    return TensorTypeOverride{std::string(pattern), std::regex(std::string(pattern), std::regex::ECMAScript),
                              *type};
  } catch (const std::regex_error& e) {
    return Error{"", "tensor_type", fmt::format("'{}': bad regular expression: {}", pattern, e.what()),
                 "tensor_type"};
  }
}

std::string tensor_type_override_spec(const TensorTypeOverride& o) {
  return fmt::format("{}={}", o.pattern, ggml_type_name(o.type));
}

bool is_quantized(GgmlType type) { return ggml_type_info(type).block_size > 1; }

TypeChoice choose_tensor_type(const TypePolicy& policy, std::string_view name, std::span<const uint64_t> dims,
                              bool model_has_output) {
  QE_CHECK(!dims.empty());
  if (dims.size() == 1) return {GgmlType::F32, "1-D: kept f32"};
  const std::string n(name);
  for (size_t i = 0; i < policy.overrides.size(); ++i) {
    const TensorTypeOverride& o = policy.overrides[i];
    if (std::regex_search(n, o.regex)) return fit_rows({o.type, "", false, i}, dims);
  }
  if (policy.pure) return fit_rows({policy.target, ""}, dims);

  const bool is_output = name == "output.weight" || (!model_has_output && name == "token_embd.weight");
  if (is_output && is_quantized(policy.target) && policy.target != GgmlType::Q8_0) {
    // llama.cpp: Q6_K unless the row is not a multiple of the target's block (then Q8_0 directly).
    return fit_rows({GgmlType::Q8_0, "output projection: llama.cpp uses q6_K, which qconvert does not write: q8_0"},
                    dims);
  }
  return fit_rows({policy.target, ""}, dims);
}

}  // namespace qe::convert
