#include "convert/types.h"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <utility>

#include "convert/llama_config.h"

namespace qe::convert {
namespace {

using T = GgmlType;

constexpr GgmlType kWritable[] = {T::F32,  T::F16,  T::BF16, T::Q8_0, T::Q4_0, T::Q4_1, T::Q5_0,  T::Q5_1,
                                  T::Q2_K, T::Q3_K, T::Q4_K, T::Q5_K, T::Q6_K, T::IQ4_NL, T::IQ4_XS};

// llama.h's LLAMA_FTYPE_* values (on disk as general.file_type: never change them).
enum Ftype : uint32_t {
  kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 7, kQ5_0 = 8, kQ5_1 = 9, kQ2_K = 10, kQ3_K_S = 11,
  kQ3_K_M = 12, kQ3_K_L = 13, kQ4_K_S = 14, kQ4_K_M = 15, kQ5_K_S = 16, kQ5_K_M = 17, kQ6_K = 18,
  kIQ4_NL = 25, kIQ4_XS = 30, kBF16 = 32,
};

// The plain file type of each base comes first (file_type_of picks the first match).
constexpr FileType kFileTypes[] = {
    {"F32", kF32, T::F32},          {"F16", kF16, T::F16},          {"BF16", kBF16, T::BF16},
    {"Q8_0", kQ8_0, T::Q8_0},       {"Q4_0", kQ4_0, T::Q4_0},       {"Q4_1", kQ4_1, T::Q4_1},
    {"Q5_0", kQ5_0, T::Q5_0},       {"Q5_1", kQ5_1, T::Q5_1},       {"Q2_K", kQ2_K, T::Q2_K},
    {"Q3_K_M", kQ3_K_M, T::Q3_K},   {"Q3_K_S", kQ3_K_S, T::Q3_K},   {"Q3_K_L", kQ3_K_L, T::Q3_K},
    {"Q4_K_M", kQ4_K_M, T::Q4_K},   {"Q4_K_S", kQ4_K_S, T::Q4_K},   {"Q5_K_M", kQ5_K_M, T::Q5_K},
    {"Q5_K_S", kQ5_K_S, T::Q5_K},   {"Q6_K", kQ6_K, T::Q6_K},       {"IQ4_NL", kIQ4_NL, T::IQ4_NL},
    {"IQ4_XS", kIQ4_XS, T::IQ4_XS},
};

// llama-quantize's aliases: a k-quant's bare name is its _M mix.
constexpr std::pair<std::string_view, std::string_view> kAliases[] = {
    {"Q3_K", "Q3_K_M"}, {"Q4_K", "Q4_K_M"}, {"Q5_K", "Q5_K_M"}};

std::string upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::toupper(c); });
  return out;
}

void add_reason(TypeChoice& c, const std::string& why) { c.reason = c.reason.empty() ? why : c.reason + "; " + why; }

// llama-quantize's fallback for rows that are not a multiple of the chosen type's block (a k-quant's
// 256): the closest type with 32-value blocks, then f16.
TypeChoice fit_rows(TypeChoice c, std::span<const uint64_t> dims) {
  const auto fits = [&](GgmlType t) { return dims[0] % ggml_type_info(t).block_size == 0; };
  if (fits(c.type)) return c;
  const GgmlType from = c.type;
  switch (from) {
    case T::Q2_K:
    case T::Q3_K:
    case T::IQ4_XS: c.type = T::IQ4_NL; break;
    case T::Q4_K: c.type = T::Q5_0; break;
    case T::Q5_K: c.type = T::Q5_1; break;
    case T::Q6_K: c.type = T::Q8_0; break;
    default: c.type = T::F16; break;
  }
  if (!fits(c.type)) c.type = T::F16;
  add_reason(c, fmt::format("row length {} is not a multiple of {}'s block of {}: {}", dims[0], ggml_type_name(from),
                            ggml_type_info(from).block_size, ggml_type_name(c.type)));
  c.fallback = true;
  return c;
}

// llama_tensor_get_type's rules for the llama architecture (no experts, not Falcon), one tensor.
// llama-quantize counts attn_v and ffn_down tensors in its load order, which sorts by layer, so its
// counters are the layer index here. Returns the base type when no rule applies.
GgmlType file_type_rule(const FileType& ft, bool has_imatrix, std::string_view name, const ModelShape& m,
                        std::string& why) {
  const GgmlType base = ft.base;
  const auto has = [&](std::string_view part) { return name.find(part) != std::string_view::npos; };
  const bool is_output = name == "output.weight" || (!m.has_output && name == "token_embd.weight");
  if (is_output) {
    if (base == T::Q8_0) return base;
    why = "output projection: q6_K, as llama-quantize";
    return T::Q6_K;
  }
  if (name == "token_embd.weight") return base;

  const int64_t n = m.n_layers, i = llama_layer_of(name);
  // llama.cpp's use_more_bits: the first and last eighth of the layers and every third one between.
  const bool more_bits = i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
  const int64_t n_gqa = m.n_head_kv > 0 ? m.n_head / m.n_head_kv : 1;
  // llama.cpp's LLM_TYPE_70B for a llama model: 80 layers with grouped kv heads.
  const bool is_70b = n == 80 && m.n_head != m.n_head_kv;
  GgmlType t = base;
  if (has("attn_v.weight")) {
    switch (ft.id) {
      case kQ2_K: t = n_gqa >= 4 ? T::Q4_K : T::Q3_K; break;
      case kQ3_K_M: t = i < 2 ? T::Q5_K : T::Q4_K; break;
      case kQ3_K_L: t = T::Q5_K; break;
      case kIQ4_NL:
      case kIQ4_XS: if (n_gqa >= 4) t = T::Q5_K; break;
      case kQ4_K_M:
      case kQ5_K_M: if (more_bits) t = T::Q6_K; break;
      case kQ4_K_S: if (i < 4) t = T::Q5_K; break;
      default: break;
    }
    if (is_70b && (t == T::Q3_K || t == T::Q4_K)) t = T::Q5_K;
    if (t != base) why = fmt::format("attn_v of layer {}: more bits, as llama-quantize's {}", i, ft.name);
    return t;
  }
  if (has("ffn_down")) {
    switch (ft.id) {
      case kQ2_K: t = T::Q3_K; break;
      case kQ3_K_M: t = i < n / 16 ? T::Q5_K : T::Q4_K; break;
      case kQ3_K_L: t = T::Q5_K; break;
      case kQ4_K_M:
      case kQ5_K_M: if (more_bits) t = T::Q6_K; break;
      case kIQ4_NL:
      case kIQ4_XS: if (i < n / 8 && !has_imatrix) t = T::Q5_K; break;
      case kQ4_K_S: if (i < n / 8) t = T::Q5_K; break;
      case kQ4_0:
      case kQ5_0:
        // llama.cpp guards the first ffn_down layers of imatrix q4_0 / q5_0 files with the min-offset type.
        if (has_imatrix && i < n / 8) t = ft.id == kQ4_0 ? T::Q4_1 : T::Q5_1;
        break;
      default: break;
    }
    if (t != base) why = fmt::format("ffn_down of layer {}: more bits, as llama-quantize's {}", i, ft.name);
    return t;
  }
  if (has("attn_output.weight")) {
    switch (ft.id) {
      case kQ2_K: t = T::Q3_K; break;
      case kQ3_K_M: t = T::Q4_K; break;
      case kQ3_K_L: t = T::Q5_K; break;
      default: break;
    }
    if (t != base) why = fmt::format("attn_output: more bits, as llama-quantize's {}", ft.name);
  }
  return t;
}

}  // namespace

std::optional<GgmlType> parse_output_type(std::string_view name) {
  std::optional<GgmlType> t = ggml_type_from_name(name);
  if (!t || std::find(std::begin(kWritable), std::end(kWritable), *t) == std::end(kWritable))
    return std::nullopt;
  return t;
}

std::string_view output_type_names() {
  return "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K, q3_K, q4_K, q5_K, q6_K, iq4_nl, iq4_xs";
}

std::optional<FileType> parse_file_type(std::string_view name) {
  std::string u = upper(name);
  for (const auto& [alias, target] : kAliases)
    if (u == alias) u = target;
  for (const FileType& f : kFileTypes)
    if (f.name == u) return f;
  return std::nullopt;
}

std::optional<FileType> file_type_by_id(uint32_t id) {
  for (const FileType& f : kFileTypes)
    if (f.id == id) return f;
  return std::nullopt;
}

std::string ftype_enum_name(const FileType& f) {
  if (f.id == 0) return "ALL_F32";
  std::string name = "MOSTLY_";
  for (char c : f.name) name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

FileType file_type_of(GgmlType type) {
  for (const FileType& f : kFileTypes)
    if (f.base == type) return f;
  QE_CHECK(false && "file_type_of: not a type qconvert writes");
  return kFileTypes[0];
}

std::string_view file_type_names() {
  return "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S, Q3_K_M (Q3_K), Q3_K_L, Q4_K_S, Q4_K_M (Q4_K), "
         "Q5_K_S, Q5_K_M (Q5_K), Q6_K, IQ4_NL, IQ4_XS";
}

uint32_t llama_file_type(GgmlType target) { return file_type_of(target).id; }

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
                              const ModelShape& model) {
  QE_CHECK(!dims.empty());
  if (dims.size() == 1) return {GgmlType::F32, "1-D: kept f32"};
  if (name == "token_embd.weight" && policy.token_embd_type) return fit_rows({*policy.token_embd_type, "token embedding type"}, dims);
  const bool output = name == "output.weight" ||
                      (name == "token_embd.weight" && !model.has_output && !policy.pure && is_quantized(policy.target));
  if (output && policy.output_type) return fit_rows({*policy.output_type, "output tensor type"}, dims);
  const std::string n(name);
  for (size_t i = policy.overrides.size(); i-- > 0;) {  // the last match wins, as in llama-quantize
    const TensorTypeOverride& o = policy.overrides[i];
    if (std::regex_search(n, o.regex)) return fit_rows({o.type, "", false, i}, dims);
  }
  if (policy.pure || !is_quantized(policy.target)) return fit_rows({policy.target, ""}, dims);
  TypeChoice c{policy.target, ""};
  c.type = file_type_rule(policy.effective_file_type(), policy.has_imatrix, name, model, c.reason);
  return fit_rows(c, dims);
}

}  // namespace qe::convert
