#include "cli/qconvert/info_print.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstdint>

#include "cli/units.h"
#include "convert/types.h"
#include "formats/error.h"

namespace qe::cli {
namespace {

constexpr size_t kMaxString = 72;     // longer strings (chat templates) are cut in the table
constexpr size_t kArrayPreview = 6;   // array elements shown before "... N more"

std::string one_line(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else out += c;
  }
  if (out.size() > kMaxString) out = out.substr(0, kMaxString) + "...";
  return printable(out);  // other control characters (a hostile file's ESC) and a cut character as \xNN
}

std::string preview(const nlohmann::json& v, const std::string& type) {
  // float32 values are exact doubles in the JSON; show them as the shortest float that reads back.
  if (type == "float32" && v.is_number()) return fmt::format("{}", v.get<float>());
  // (fmt rather than operator+ chains: GCC 12 raises a false -Wrestrict on `"x" + std::string`.)
  if (v.is_string()) return fmt::format("\"{}\"", one_line(v.get<std::string>()));
  if (v.is_array()) {
    // "array[float32]" -> "float32", so elements print like scalars of their type.
    std::string elem_type = type.size() > 7 && type.starts_with("array[") ? type.substr(6, type.size() - 7) : "";
    std::string out = "[";
    size_t shown = std::min(v.size(), kArrayPreview);
    for (size_t i = 0; i < shown; ++i) out += fmt::format("{}{}", i ? ", " : "", preview(v[i], elem_type));
    if (v.size() > shown) out += fmt::format(", ... {} more", v.size() - shown);
    return out + "]";
  }
  if (v.is_object()) return one_line(v.dump());
  return v.dump();
}

std::string shape_str(const nlohmann::json& shape) {
  if (shape.empty()) return "scalar";
  std::string out;
  for (size_t i = 0; i < shape.size(); ++i) out += fmt::format("{}{}", i ? " x " : "", shape[i].get<uint64_t>());
  return out;
}

}  // namespace

void print_info_table(std::FILE* out, const std::string& title, const nlohmann::json& j) {
  const nlohmann::json& meta = j.at("metadata");
  const nlohmann::json& tensors = j.at("tensors");
  uint64_t total = 0;
  for (const auto& t : tensors) total += t.at("bytes").get<uint64_t>();
  fmt::print(out, "{}: {} metadata keys, {} tensors, {} of tensor data\n", title, meta.size(), tensors.size(),
             bytes_text(total));

  if (!meta.empty()) fmt::print(out, "\nmetadata:\n");
  size_t key_w = 0;
  for (const auto& [k, v] : meta.items()) key_w = std::max(key_w, printable(k).size());
  const nlohmann::json* types = j.contains("metadata_types") ? &j.at("metadata_types") : nullptr;
  for (const auto& [k, v] : meta.items()) {
    std::string type = types && types->contains(k) ? types->at(k).get<std::string>() : "";
    std::string shown = preview(v, type);
    // llama.cpp's file type by its name (LLAMA_FTYPE_MOSTLY_Q4_1).
    if (k == "general.file_type" && v.is_number_unsigned())
      if (auto ft = convert::file_type_by_id(v.get<uint32_t>())) shown += fmt::format(" ({})", convert::ftype_enum_name(*ft));
    fmt::print(out, "  {:<{}}  {:<14} {}\n", printable(k), key_w, type, shown);
  }

  if (tensors.empty()) return;
  bool has_file = tensors[0].contains("file");
  bool has_hash = tensors[0].contains("xxh3");
  size_t name_w = 4, shape_w = 5;
  for (const auto& t : tensors) {
    name_w = std::max(name_w, printable(t.at("name").get<std::string>()).size());
    shape_w = std::max(shape_w, shape_str(t.at("shape")).size());
  }
  fmt::print(out, "\ntensors:\n  {:>5}  {:<{}}  {:<6}  {:<{}}  {:>12}  {:>12}{}{}\n", "#", "name", name_w, "type",
             "shape", shape_w, "bytes", "offset", has_hash ? "  xxh3            " : "", has_file ? "  file" : "");
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    fmt::print(out, "  {:>5}  {:<{}}  {:<6}  {:<{}}  {:>12}  {:>12}", i,
               printable(t.at("name").get<std::string>()), name_w, t.at("type").get<std::string>(),
               shape_str(t.at("shape")), shape_w, t.at("bytes").get<uint64_t>(),
               t.at("offset").get<uint64_t>());
    if (has_hash) fmt::print(out, "  {}", t.at("xxh3").get<std::string>());
    if (has_file) fmt::print(out, "  {}", t.at("file").get<std::string>());
    fmt::print(out, "\n");
  }
}

}  // namespace qe::cli
