#include "cli/qconvert/convert_report.h"

#include <fmt/core.h>

#include <map>

#include "formats/ggml_type.h"

namespace qe::cli {
namespace {

std::string_view mode_name(convert::ConvertMode m) {
  switch (m) {
    case convert::ConvertMode::kHfToGguf: return "hf-to-gguf";
    case convert::ConvertMode::kRequantize: return "requantize";
    case convert::ConvertMode::kGgufToHf: return "gguf-to-hf";
  }
  return "";
}

std::string mb(uint64_t bytes) { return fmt::format("{:.1f} MB", static_cast<double>(bytes) / 1e6); }

}  // namespace

ConvertTotals totals_of(const convert::ConvertResult& r) {
  ConvertTotals t;
  if (r.out_bytes) t.ratio = static_cast<double>(r.src_bytes) / static_cast<double>(r.out_bytes);
  if (r.n_weights) t.bits_per_weight = 8.0 * static_cast<double>(r.out_bytes) / static_cast<double>(r.n_weights);
  if (r.seconds > 0) t.mb_per_s = static_cast<double>(r.src_bytes) / 1e6 / r.seconds;
  return t;
}

nlohmann::ordered_json report_json(const ConvertOptions& opt, const std::string& type, const convert::ConvertResult& r) {
  const ConvertTotals t = totals_of(r);
  nlohmann::ordered_json j;
  j["input"] = opt.input;
  j["output"] = opt.to_hf.empty() ? opt.output : opt.to_hf;
  j["mode"] = mode_name(r.mode);
  j["type"] = type;
  j["command"] = opt.command_line;
  j["model_name"] = r.model_name;
  j["seconds"] = r.seconds;
  j["source_bytes"] = r.src_bytes;
  j["output_bytes"] = r.out_bytes;
  j["output_file_bytes"] = r.output_file_bytes;
  j["n_weights"] = r.n_weights;
  j["compression_ratio"] = t.ratio;
  j["bits_per_weight"] = t.bits_per_weight;
  j["warnings"] = r.warnings;
  auto& tensors = j["tensors"] = nlohmann::ordered_json::array();
  for (const convert::TensorReport& x : r.tensors) {
    nlohmann::ordered_json e;
    e["name"] = x.name;
    e["shape"] = x.dims;
    e["source_type"] = ggml_type_name(x.src_type);
    e["type"] = ggml_type_name(x.out_type);
    e["source_bytes"] = x.src_bytes;
    e["bytes"] = x.out_bytes;
    e["rmse"] = x.rmse;
    e["max_abs_error"] = x.max_abs_error;
    e["copied"] = x.copied;
    e["reason"] = x.reason.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(x.reason);
    e["fallback"] = x.fallback;
    tensors.push_back(std::move(e));
  }
  return j;
}

std::string model_card(const ConvertOptions& opt, const std::string& type, const std::string& output,
                       const convert::ConvertResult& r) {
  const ConvertTotals t = totals_of(r);
  std::string md;
  md += fmt::format("# {}\n\n", r.model_name.empty() ? output : r.model_name);
  md += fmt::format("Converted by qconvert ({}) from `{}` to `{}`.\n\n", mode_name(r.mode), opt.input, output);
  md += fmt::format("```sh\n{}\n```\n\n", opt.command_line);
  md += fmt::format("- Licence: {}\n", r.license.empty() ? "not declared by the source" : r.license);
  md += fmt::format("- Target type: {}\n", type);
  md += fmt::format("- Source tensors: {} ({} weights)\n", mb(r.src_bytes), r.n_weights);
  md += fmt::format("- Output tensors: {}; file size {}\n", mb(r.out_bytes), mb(r.output_file_bytes));
  md += fmt::format("- Compression ratio: {:.2f}x, {:.2f} bits per weight\n", t.ratio, t.bits_per_weight);
  md += fmt::format("- Conversion time: {:.2f} s\n\n", r.seconds);

  std::map<std::string, std::pair<int, uint64_t>> by_type;
  for (const convert::TensorReport& x : r.tensors) {
    auto& [n, bytes] = by_type[std::string(ggml_type_name(x.out_type))];
    ++n;
    bytes += x.out_bytes;
  }
  md += "## Types\n\n| type | tensors | bytes |\n|---|---:|---:|\n";
  for (const auto& [name, nb] : by_type) md += fmt::format("| {} | {} | {} |\n", name, nb.first, nb.second);

  md += "\n## Tensors\n\nError of the written tensor against the source, measured by dequantizing it.\n\n"
        "| tensor | shape | source | type | bytes | rmse | max abs error | note |\n|---|---|---|---|---:|---:|---:|---|\n";
  for (const convert::TensorReport& x : r.tensors) {
    std::string shape;
    for (size_t i = 0; i < x.dims.size(); ++i) shape += fmt::format("{}{}", i ? "×" : "", x.dims[i]);
    md += fmt::format("| {} | {} | {} | {} | {} | {:.3g} | {:.3g} | {} |\n", x.name, shape, ggml_type_name(x.src_type),
                      ggml_type_name(x.out_type), x.out_bytes, x.rmse, x.max_abs_error,
                      x.copied ? "copied" : x.reason);
  }
  if (!r.warnings.empty()) {
    md += "\n## Warnings\n\n";
    for (const std::string& w : r.warnings) md += "- " + w + "\n";
  }
  return md;
}

}  // namespace qe::cli
