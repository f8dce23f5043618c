#include "cli/qconvert/positional_args.h"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace qe::cli {
namespace {

constexpr std::string_view kForm = "qconvert IN [OUT] TYPE [NTHREADS]";

std::string upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::toupper(c); });
  return out;
}

// The k-quant mixes' aliases: llama-quantize lists each before the mix it stands for, so a name finds
// the alias's own entry and a number finds the alias too.
std::string_view alias_of(std::string_view mix) {
  return mix == "Q3_K_M" ? "Q3_K" : mix == "Q4_K_M" ? "Q4_K" : mix == "Q5_K_M" ? "Q5_K" : "";
}

// A flag's value, if the command line gave it.
std::optional<std::string> given(const CLI::Option* opt) {
  if (opt->count() == 0 || opt->results().empty()) return std::nullopt;
  return opt->results().back();
}

Status set(CLI::Option* opt, const std::string& value) {
  if (opt->count() > 0) return {};  // the flag said the same
  try {
    opt->add_result(value);
    opt->run_callback();
  } catch (const CLI::Error& e) {
    return Error{"", "", e.what()};
  }
  return {};
}

}  // namespace

std::optional<QuantizeType> parse_quantize_type(std::string_view s) {
  const std::string u = upper(s);
  if (std::optional<convert::FileType> ft = convert::parse_file_type(s))
    return QuantizeType{*ft, alias_of(ft->name) == u ? u : std::string(ft->name)};
  uint32_t id = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), id);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  std::optional<convert::FileType> ft = convert::file_type_by_id(id);
  if (!ft) return std::nullopt;
  const std::string_view alias = alias_of(ft->name);
  return QuantizeType{*ft, std::string(alias.empty() ? ft->name : alias)};
}

Status apply_positionals(CLI::App& app, const std::vector<std::string>& pos) {
  if (pos.size() <= 1) return {};
  if (pos.size() > 4) return Error{"", "", fmt::format("{} arguments, at most 4: {}", pos.size(), kForm)};
  CLI::Option* out_opt = app.get_option("--output");
  CLI::Option* type_opt = app.get_option("--type");
  CLI::Option* threads_opt = app.get_option("--threads");
  if (app.get_option("--to-hf")->count() > 0)
    return Error{"", "--to-hf",
                 fmt::format("exports to a directory; {} writes a GGUF (with --to-hf, give --type)", kForm)};

  // As llama-quantize: the second argument is TYPE when it reads as one, else OUT followed by TYPE.
  std::optional<std::string> out;
  size_t next = 1;
  std::optional<QuantizeType> t = parse_quantize_type(pos[1]);
  if (!t) {
    out = pos[1];
    if (pos.size() == 2)
      return Error{"", "", "give the output type: qconvert IN OUT TYPE, or -o OUT --type TYPE"};
    t = parse_quantize_type(pos[2]);
    if (!t)
      return Error{"", "",
                   fmt::format("'{}' is not an output type ({}, or llama-quantize's number for one)", pos[2],
                               convert::file_type_names())};
    next = 3;
  } else {
    next = 2;
    if (pos.size() == 4)
      return Error{"", "", fmt::format("too many arguments after TYPE '{}': {}", pos[1], kForm)};
  }
  const std::optional<std::string> threads = next < pos.size() ? std::optional(pos[next]) : std::nullopt;

  // Positionals and flags may say the same thing twice, never two things.
  if (const auto flag = given(out_opt); flag && out && *flag != *out)
    return Error{"", "", fmt::format("OUT '{}' and -o '{}' disagree", *out, *flag)};
  if (const auto flag = given(type_opt)) {
    const std::optional<convert::FileType> f = convert::parse_file_type(*flag);
    if (!f || f->id != t->type.id)
      return Error{"", "", fmt::format("TYPE '{}' and --type '{}' disagree", pos[next - 1], *flag)};
  }
  if (threads) {
    int n = 0;
    const auto [end, ec] = std::from_chars(threads->data(), threads->data() + threads->size(), n);
    if (threads->empty() || ec != std::errc() || end != threads->data() + threads->size() || n < 0)
      return Error{"", "", fmt::format("NTHREADS '{}' is not a number of threads: {}", *threads, kForm)};
    if (const auto flag = given(threads_opt); flag && *flag != *threads)
      return Error{"", "", fmt::format("NTHREADS '{}' and -t '{}' disagree", *threads, *flag)};
  }

  if (!out && !given(out_opt)) {  // llama-quantize's default: [IN's folder/]ggml-model-<TYPE>.gguf
    const size_t slash = pos[0].find_last_of('/');
    out = (slash == std::string::npos ? "" : pos[0].substr(0, slash + 1)) + "ggml-model-" + t->name + ".gguf";
  }
  if (out)
    if (Status s = set(out_opt, *out); !s) return s;
  // A number names the type by its canonical name; a name is kept as written (the report shows it).
  const bool numeric = std::all_of(pos[next - 1].begin(), pos[next - 1].end(),
                                   [](unsigned char c) { return std::isdigit(c); });
  if (Status s = set(type_opt, numeric ? std::string(t->type.name) : pos[next - 1]); !s) return s;
  if (threads)
    if (Status s = set(threads_opt, *threads); !s) return s;
  return {};
}

}  // namespace qe::cli
