#include "cli/kv_override.h"

#include <fmt/core.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace qe::cli {
namespace {

constexpr size_t kMaxBytes = 127;  // llama_model_kv_override's key[128] and val_str[128]

Error bad(std::string_view spec, std::string_view why) {
  return Error{"", "--override-kv", fmt::format("'{}': {}", spec, why)};
}

}  // namespace

Result<KvOverride> parse_kv_override(std::string_view spec) {
  const size_t eq = spec.find('=');
  if (eq == std::string_view::npos) return bad(spec, "not KEY=TYPE:VALUE (TYPE: int, float, bool or str)");
  // An empty key ends llama-quantize's override list (key[0] == 0): every later override would be lost.
  if (eq == 0) return bad(spec, "the key is empty");
  if (eq > kMaxBytes)
    return bad(spec, fmt::format("the key is {} bytes, llama.cpp takes at most {}", eq, kMaxBytes));
  KvOverride o;
  o.key = std::string(spec.substr(0, eq));
  const std::string_view rest = spec.substr(eq + 1);
  const size_t colon = rest.find(':');
  const std::string_view type = colon == std::string_view::npos ? rest : rest.substr(0, colon);
  const std::string_view v = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
  if (colon == std::string_view::npos) return bad(spec, "not KEY=TYPE:VALUE (TYPE: int, float, bool or str)");
  if (type != "int" && type != "float" && type != "bool" && type != "str")
    return bad(spec, fmt::format("type '{}' is not int, float, bool or str (KEY=TYPE:VALUE)", type));
  if (type == "int") {
    int64_t i = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), i);
    if (v.empty() || ec != std::errc() || end != v.data() + v.size())
      return bad(spec, fmt::format("'{}' is not an integer", v));
    o.value = i;
  } else if (type == "float") {
    // strtod, as llama.cpp's atof: decimal or hex, inf, nan; the C locale is the process's (never set).
    const std::string text(v);
    char* end = nullptr;
    const double d = text.empty() ? 0.0 : std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() ||
        std::isspace(static_cast<unsigned char>(text[0])))
      return bad(spec, fmt::format("'{}' is not a number", v));
    o.value = d;
  } else if (type == "bool") {
    if (v != "true" && v != "false") return bad(spec, fmt::format("'{}' is not true or false", v));
    o.value = v == "true";
  } else {
    if (v.size() > kMaxBytes)
      return bad(spec, fmt::format("the value is {} bytes, llama.cpp takes at most {}", v.size(), kMaxBytes));
    o.value = std::string(v);
  }
  return o;
}

Result<GgufKv> quantize_kv(const KvOverride& o) {
  if (const auto* i = std::get_if<int64_t>(&o.value)) {
    const uint64_t mag = *i < 0 ? uint64_t{0} - static_cast<uint64_t>(*i) : static_cast<uint64_t>(*i);
    if (mag > std::numeric_limits<uint32_t>::max())
      return Error{
          "", "--override-kv",
          fmt::format("{}: {} does not fit the u32 llama-quantize writes an int override as", o.key, *i)};
    return GgufKv{o.key, GgufValue::u32(static_cast<uint32_t>(mag))};
  }
  if (const auto* d = std::get_if<double>(&o.value))
    return GgufKv{o.key, GgufValue::f32(static_cast<float>(*d))};
  if (const auto* b = std::get_if<bool>(&o.value)) return GgufKv{o.key, GgufValue::boolean(*b)};
  return GgufKv{o.key, GgufValue::str(std::get<std::string>(o.value))};
}

}  // namespace qe::cli
