#include "cli/qconvert/convert_report.h"

#include <fmt/core.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <type_traits>
#include <variant>
#include <map>
#include <string>

#include "cli/units.h"
#include "convert/types.h"
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

// A path as the card shows it: its last component (a card travels; the converting machine's paths do not).
std::string file_name(const std::string& path) {
  std::filesystem::path p = std::filesystem::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().empty() ? path : p.filename().string();
}

// The command line with every path reduced to its file name (also in --flag=PATH).
std::string portable_command(const std::vector<std::string>& args) {
  std::string out;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    const size_t eq = a.rfind("--", 0) == 0 ? a.find('=') : std::string::npos;
    if (eq != std::string::npos && a.find('/', eq) != std::string::npos)
      a = a.substr(0, eq + 1) + file_name(a.substr(eq + 1));
    else if (a.find('/') != std::string::npos)
      a = file_name(a);
    if (a.empty() || a.find_first_of(" \t\"'$`\\") != std::string::npos) a = "'" + a + "'";
    out += (i ? " " : "") + a;
  }
  return out;
}

// The GGUF side's metadata, read for the card.
struct CardFacts {
  const std::vector<GgufKv>& kvs;

  const GgufValue* find(std::string_view key) const {
    for (const GgufKv& kv : kvs)
      if (kv.key == key) return &kv.value;
    return nullptr;
  }
  // Strings, numbers and arrays of strings as text; "" when absent.
  std::string text(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return "";
    if (const auto* a = v->get<GgufArray>()) {
      const auto* strs = a->get<std::string>();
      if (!strs) return "";
      std::string out;
      for (const std::string& s : *strs) out += (out.empty() ? "" : ", ") + s;
      return out;
    }
    return std::visit(
        [](const auto& x) -> std::string {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, GgufArray>)
            return "";
          else if constexpr (std::is_same_v<T, std::string>)
            return x;
          else if constexpr (std::is_same_v<T, bool>)
            return x ? "true" : "false";
          else
            return fmt::format("{}", x);
        },
        v->storage());
  }
  std::string file_type() const {
    const GgufValue* v = find("general.file_type");
    const uint32_t* id = v ? v->get<uint32_t>() : nullptr;
    std::optional<convert::FileType> ft = id ? convert::file_type_by_id(*id) : std::nullopt;
    return ft ? convert::ftype_enum_name(*ft) : "unknown";
  }
  std::vector<std::string> base_models() const {
    std::vector<std::string> out;
    const GgufValue* count = find("general.base_model.count");
    const uint32_t* n = count ? count->get<uint32_t>() : nullptr;
    for (uint32_t i = 0; n && i < *n && i < 64; ++i) {
      std::string name = text(fmt::format("general.base_model.{}.name", i));
      const std::string org = text(fmt::format("general.base_model.{}.organization", i));
      const std::string url = text(fmt::format("general.base_model.{}.repo_url", i));
      if (!org.empty()) name = org + " / " + name;
      if (!url.empty()) name += " (" + url + ")";
      out.push_back(name);
    }
    return out;
  }
};

std::string awq_card(const convert::AwqReport& r) {
  std::string md = "\n## Activation-aware calibration\n\n";
  md += fmt::format("- Calibration text: `{}` (XXH3-64 `{}`)\n", file_name(r.calib_path), hex64(r.calib_xxh3));
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
  return t;
}

nlohmann::ordered_json report_json(const ConvertOptions& opt, const std::string& type, const convert::ConvertResult& r) {
  const ConvertTotals t = totals_of(r);
  nlohmann::ordered_json j;
  j["input"] = opt.input;
  j["output"] = opt.to_hf.empty() ? opt.output : opt.to_hf;
  j["mode"] = mode_name(r.mode);
  j["type"] = type;
  j["command"] = opt.args;
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
  const CardFacts f{r.metadata};
  const bool to_hf = r.mode == convert::ConvertMode::kGgufToHf;
  const std::string out_name = file_name(output);
  const std::string name = r.model_name.empty() ? out_name : r.model_name;
  std::string md = fmt::format("# {}\n\n", name);
  md += to_hf ? fmt::format("{}, exported from the GGUF file `{}` to a Hugging Face model directory ({}) by "
                            "qconvert.\n\n", name, file_name(opt.input), type)
              : fmt::format("{} in GGUF, {} (file type {}), converted by qconvert from `{}`.\n\n", name, type,
                            f.file_type(), file_name(opt.input));

  // What the model is: general.*, as the source declared it.
  md += "| | |\n|---|---|\n";
  md += fmt::format("| Licence | {} |\n", r.license.empty() ? "not declared by the source" : r.license);
  for (const auto& [label, key] : {std::pair{"Organization", "general.organization"}, {"Base name", "general.basename"},
                                   {"Fine-tune", "general.finetune"}, {"Size label", "general.size_label"},
                                   {"Version", "general.version"}, {"Languages", "general.languages"},
                                   {"Tags", "general.tags"}, {"URL", "general.url"}, {"Repository", "general.repo_url"},
                                   {"Source", "general.source.url"}, {"Source repository", "general.source.repo_url"}})
    if (std::string v = f.text(key); !v.empty()) md += fmt::format("| {} | {} |\n", label, v);
  for (const std::string& base : f.base_models()) md += fmt::format("| Base model | {} |\n", base);

  md += "\n## Architecture\n\n| | |\n|---|---|\n";
  const std::string a = f.text("general.architecture");
  md += fmt::format("| architecture | {} |\n", a.empty() ? "?" : a);
  for (const auto& [label, key] :
       {std::pair{"layers", "block_count"}, {"embedding length", "embedding_length"},
        {"feed-forward length", "feed_forward_length"}, {"attention heads", "attention.head_count"},
        {"KV heads", "attention.head_count_kv"}, {"head dimension (RoPE)", "rope.dimension_count"},
        {"context length (training)", "context_length"}, {"vocabulary", "vocab_size"},
        {"RoPE base", "rope.freq_base"}, {"RMS norm epsilon", "attention.layer_norm_rms_epsilon"}})
    if (std::string v = f.text(a + "." + key); !v.empty()) md += fmt::format("| {} | {} |\n", label, v);
  md += fmt::format("| parameters | {} |\n", r.n_weights);

  md += "\n## Usage\n\n";
  if (to_hf) {
    md += fmt::format("```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
                      "tokenizer = AutoTokenizer.from_pretrained(\"{0}\")\nmodel = AutoModelForCausalLM.from_pretrained(\"{0}\")\n"
                      "```\n\nBack to GGUF (the general.* keys above come back as they were):\n\n"
                      "```sh\nqconvert {0} -o {1}.gguf --type q8_0\n```\n",
                      out_name, f.text("general.basename").empty() ? "model" : f.text("general.basename"));
  } else {
    md += fmt::format("```sh\nqrun -m {0} -p \"The capital of France is\" -n 64     # completion\n"
                      "qrun -m {0} -cnv                                      # chat\n"
                      "qserve -m {0} --port 8080                             # OpenAI-compatible server\n"
                      "llama-cli -m {0} -p \"The capital of France is\" -n 64  # llama.cpp reads the same file\n"
                      "```\n",
                      out_name);
  }

  md += "\n## Conversion\n\n";
  md += fmt::format("```sh\n{}\n```\n\n", portable_command(opt.args));
  md += fmt::format("- Source tensors: {} → output tensors: {} ({}); output files: {}\n", bytes_text(r.src_bytes),
                    bytes_text(r.out_bytes), size_change_text(r.src_bytes, r.out_bytes), bytes_text(r.output_file_bytes));
  md += fmt::format("- {} weights, {:.2f} bits per weight\n", r.n_weights, totals_of(r).bits_per_weight);
  md += fmt::format("- Conversion time: {:.2f} s ({})\n", r.seconds, rate_text(r.src_bytes, r.seconds));
  if (!opt.imatrix.empty()) {
    const auto n = std::count_if(r.tensors.begin(), r.tensors.end(), [](const convert::TensorReport& x) { return x.weighted; });
    md += fmt::format("- Importance matrix: `{}` ({} tensors rounded with its weights)\n", file_name(opt.imatrix), n);
  }

  std::map<std::string, std::pair<int, uint64_t>> by_type;
  for (const convert::TensorReport& x : r.tensors) {
    auto& [n, bytes] = by_type[std::string(ggml_type_name(x.out_type))];
    ++n;
    bytes += x.out_bytes;
  }
  md += "\nType mix:\n\n| type | tensors | bytes | share |\n|---|---:|---:|---:|\n";
  for (const auto& [tname, nb] : by_type)
    md += fmt::format("| {} | {} | {} | {:.1f}% |\n", tname, nb.first, bytes_text(nb.second),
                      r.out_bytes ? 100.0 * static_cast<double>(nb.second) / static_cast<double>(r.out_bytes) : 0.0);
  if (r.awq) md += awq_card(*r.awq);
  if (!r.warnings.empty()) {
    md += "\n## Warnings\n\n";
    for (const std::string& w : r.warnings) md += "- " + w + "\n";
  }

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
  return md;
}

}  // namespace qe::cli
