#include "cli/qconvert/convert_report.h"

#include <fmt/core.h>

#include <algorithm>
#include <map>
#include <string>

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

// A float as the double its shortest decimal form reads as (alpha 0.4f: 0.4, not 0.4000000059604645).
double shortest(float f) { return std::stod(fmt::format("{}", f)); }

std::string hex64(uint64_t v) { return fmt::format("{:016x}", v); }

// awq / rtn as a factor ("0.71x"); "-" when the plain loss is 0 (nothing to compare against).
std::string loss_ratio(double rtn, double awq) { return rtn > 0 ? fmt::format("{:.3f}x", awq / rtn) : "-"; }

std::string methods_text(const AwqGroupSummary& g) {
  std::string out;
  for (const auto& [m, n] : g.methods) out += fmt::format("{}{} {}", out.empty() ? "" : ", ", m, n);
  return out;
}

nlohmann::ordered_json or_null(const std::string& s) {
  return s.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(s);
}

nlohmann::ordered_json awq_json(const convert::AwqReport& r) {
  nlohmann::ordered_json j;
  j["calib_path"] = r.calib_path;
  j["calib_xxh3"] = hex64(r.calib_xxh3);
  j["n_samples"] = r.n_samples;
  j["n_ctx"] = r.n_ctx;
  j["n_tokens"] = r.n_tokens;
  j["n_gram_tokens"] = r.n_gram_tokens;
  j["n_grid"] = r.n_grid;
  j["clip"] = r.clip;
  j["seed"] = r.seed;
  j["capture_seconds"] = r.capture_seconds;
  j["search_seconds"] = r.search_seconds;
  auto& summary = j["summary"] = nlohmann::ordered_json::array();
  for (const AwqGroupSummary& g : awq_summary(r)) {
    nlohmann::ordered_json e;
    e["group"] = g.name;
    e["blocks"] = g.blocks;
    e["alpha_mean"] = g.alpha_mean;
    e["alpha_min"] = g.alpha_min;
    e["alpha_max"] = g.alpha_max;
    e["loss_rtn"] = g.loss_rtn;
    e["loss_awq"] = g.loss_awq;
    e["fallbacks"] = g.fallbacks;
    e["clipped_rows"] = g.clipped_rows;
    auto& m = e["methods"] = nlohmann::ordered_json::object();
    for (const auto& [name, n] : g.methods) m[name] = n;
    summary.push_back(std::move(e));
  }
  j["warnings"] = r.warnings;
  auto& layers = j["layers"] = nlohmann::ordered_json::array();
  for (const convert::AwqLayerReport& l : r.layers) {
    nlohmann::ordered_json lj;
    lj["layer"] = l.layer;
    auto& groups = lj["groups"] = nlohmann::ordered_json::array();
    for (const convert::AwqGroupReport& g : l.groups) {
      nlohmann::ordered_json gj;
      gj["name"] = g.name;
      gj["alpha"] = shortest(g.alpha);
      gj["loss_rtn"] = g.loss_rtn;
      gj["loss_awq"] = g.loss_awq;
      gj["method"] = g.method;
      gj["fallback"] = or_null(g.fallback);
      gj["clipped_rows"] = g.clipped_rows;
      groups.push_back(std::move(gj));
    }
    layers.push_back(std::move(lj));
  }
  return j;
}

std::string awq_card(const convert::AwqReport& r) {
  std::string md = "\n## Activation-aware calibration\n\n";
  md += fmt::format("- Calibration text: `{}` (XXH3-64 `{}`)\n", r.calib_path, hex64(r.calib_xxh3));
  md += fmt::format("- Windows: {} × {} tokens ({} tokens)\n", r.n_samples, r.n_ctx, r.n_tokens);
  md += fmt::format("- Scale search: alpha grid {}, clipping {}, seed {}\n", r.n_grid, r.clip ? "on" : "off", r.seed);
  md += fmt::format("- Time: capture {:.1f} s, search {:.1f} s\n\n", r.capture_seconds, r.search_seconds);
  md += "Loss: output error of each linear group per calibration token (mean over tokens of |xWᵀ − xW′ᵀ|²), "
        "summed over the blocks; rtn is plain rounding, awq what was written.\n\n"
        "| group | blocks | alpha mean | alpha min | alpha max | loss rtn | loss awq | awq / rtn | fallbacks | "
        "clipped rows | methods |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
  for (const AwqGroupSummary& g : awq_summary(r))
    md += fmt::format("| {} | {} | {:.3f} | {:.3f} | {:.3f} | {:.4g} | {:.4g} | {} | {} | {} | {} |\n", g.name, g.blocks,
                      g.alpha_mean, g.alpha_min, g.alpha_max, g.loss_rtn, g.loss_awq, loss_ratio(g.loss_rtn, g.loss_awq),
                      g.fallbacks, g.clipped_rows, methods_text(g));
  std::string fallbacks;
  for (const convert::AwqLayerReport& l : r.layers)
    for (const convert::AwqGroupReport& g : l.groups)
      if (!g.fallback.empty()) fallbacks += fmt::format("- block {} {}: {} ({})\n", l.layer, g.name, g.method, g.fallback);
  if (!fallbacks.empty()) md += "\nFallbacks:\n\n" + fallbacks;
  if (!r.warnings.empty()) {
    md += "\n";
    for (const std::string& w : r.warnings) md += "- Warning: " + w + "\n";
  }
  return md;
}

}  // namespace

std::vector<AwqGroupSummary> awq_summary(const convert::AwqReport& r) {
  std::vector<AwqGroupSummary> out;
  for (const convert::AwqLayerReport& l : r.layers) {
    for (const convert::AwqGroupReport& g : l.groups) {
      auto it = std::find_if(out.begin(), out.end(), [&](const AwqGroupSummary& s) { return s.name == g.name; });
      if (it == out.end()) {
        AwqGroupSummary first;
        first.name = g.name;
        first.alpha_min = first.alpha_max = shortest(g.alpha);
        out.push_back(std::move(first));
        it = out.end() - 1;
      }
      AwqGroupSummary& s = *it;
      ++s.blocks;
      const double alpha = shortest(g.alpha);
      s.alpha_mean += alpha;  // a sum until the end
      s.alpha_min = std::min(s.alpha_min, alpha);
      s.alpha_max = std::max(s.alpha_max, alpha);
      s.loss_rtn += g.loss_rtn;
      s.loss_awq += g.loss_awq;
      s.fallbacks += g.fallback.empty() ? 0 : 1;
      s.clipped_rows += g.clipped_rows;
      auto m = std::find_if(s.methods.begin(), s.methods.end(), [&](const auto& x) { return x.first == g.method; });
      if (m == s.methods.end())
        s.methods.emplace_back(g.method, 1);
      else
        ++m->second;
    }
  }
  for (AwqGroupSummary& s : out) s.alpha_mean /= static_cast<double>(s.blocks);
  return out;
}

std::vector<std::string> awq_summary_lines(const convert::AwqReport& r) {
  std::vector<std::string> lines;
  lines.push_back(fmt::format("calibration: {} (xxh3 {}), {} x {} tokens, capture {:.2f} s, search {:.2f} s",
                              r.calib_path, hex64(r.calib_xxh3), r.n_samples, r.n_ctx, r.capture_seconds,
                              r.search_seconds));
  lines.push_back(fmt::format("calibration: {:<8} {:>6} {:>6} {:>6} {:>11} {:>11} {:>8} {:>9}", "group", "alpha", "min",
                              "max", "loss rtn", "loss awq", "awq/rtn", "fallbacks"));
  for (const AwqGroupSummary& g : awq_summary(r))
    lines.push_back(fmt::format("calibration: {:<8} {:>6.3f} {:>6.3f} {:>6.3f} {:>11.4g} {:>11.4g} {:>8} {:>9}", g.name,
                                g.alpha_mean, g.alpha_min, g.alpha_max, g.loss_rtn, g.loss_awq,
                                loss_ratio(g.loss_rtn, g.loss_awq), g.fallbacks));
  for (const std::string& w : r.warnings) lines.push_back("calibration: warning: " + w);
  return lines;
}

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
  j["imatrix"] = or_null(opt.imatrix);
  j["imatrix_out"] = or_null(opt.imatrix_out);
  j["awq"] = r.awq ? awq_json(*r.awq) : nlohmann::ordered_json(nullptr);
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
    e["weighted"] = x.weighted;
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
  md += fmt::format("- Conversion time: {:.2f} s\n", r.seconds);
  if (!opt.imatrix.empty()) {
    const auto n = std::count_if(r.tensors.begin(), r.tensors.end(), [](const convert::TensorReport& x) { return x.weighted; });
    md += fmt::format("- Importance matrix: `{}` ({} tensors rounded with its weights)\n", opt.imatrix, n);
  }
  if (r.awq) md += awq_card(*r.awq);
  md += "\n";

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
                      x.copied ? "copied" : x.weighted && !x.reason.empty() ? "importance-weighted; " + x.reason
                                          : x.weighted ? "importance-weighted" : x.reason);
  }
  if (!r.warnings.empty()) {
    md += "\n## Warnings\n\n";
    for (const std::string& w : r.warnings) md += "- " + w + "\n";
  }
  return md;
}

}  // namespace qe::cli
