#include "cli/llama_flags.h"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>

namespace qe::cli {
namespace {

bool is_number(std::string_view a) {
  return a.size() > 1 && a[0] == '-' && (std::isdigit(static_cast<unsigned char>(a[1])) || a[1] == '.');
}

// "-x", "-x5", "-t2": a single-letter option, with or without its value attached (CLI11 splits it).
bool is_short(std::string_view a) {
  return a.size() >= 2 && a[0] == '-' && a[1] != '-' &&
         (a.size() == 2 || !(std::isalpha(static_cast<unsigned char>(a[2])) || a[2] == '-'));
}

// The option `name` ("-m", "--temp") names in app: nullptr when none.
const CLI::Option* find_option(const CLI::App& app, std::string_view name) {
  const std::string n(name);
  // get_option_no_throw also matches a positional's bare name; a dash-word must be a real flag.
  const CLI::Option* opt = app.get_option_no_throw(n);
  return opt != nullptr && opt->nonpositional() ? opt : nullptr;
}

bool takes_value(const CLI::Option& opt) {
  return opt.get_expected_max() > 0;  // a flag expects 0 values (its type size is still 1)
}

}  // namespace

Result<SortedArgs> sort_llama_flags(const CLI::App& app, int argc, const char* const* argv,
                                    const LlamaFlags& flags) {
  SortedArgs out;
  if (argc > 0) out.args.emplace_back(argv[0]);
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--") {  // everything after it is positional
      for (; i < argc; ++i) out.args.emplace_back(argv[i]);
      break;
    }
    if (a.size() < 2 || a[0] != '-' || is_number(a)) {
      out.args.emplace_back(a);
      continue;
    }
    const std::string_view name = a.substr(0, a.find('='));  // --temp=0.5: the name is --temp
    const bool value_attached = name.size() != a.size();

    if (auto it = std::find_if(flags.ignored.begin(), flags.ignored.end(),
                               [&](const IgnoredFlag& f) { return f.name == name; });
        it != flags.ignored.end()) {
      out.notes.push_back(fmt::format("{} does nothing on this CPU engine; ignored", name));
      if (value_attached || i + 1 >= argc) continue;
      const std::string_view next = argv[i + 1];
      if (it->takes_value ||
          std::find(it->optional_values.begin(), it->optional_values.end(), next) != it->optional_values.end())
        ++i;
      continue;
    }

    std::string_view ours = name;
    if (auto it = std::find_if(flags.renames.begin(), flags.renames.end(),
                               [&](const FlagRename& r) { return r.llama == name; });
        it != flags.renames.end())
      ours = it->ours;
    else if (is_short(a)) {  // -n 5, -n5, -t2: CLI11 splits them; a letter the tool lacks (-i, -r) is unknown
      const CLI::Option* opt = find_option(app, a.substr(0, 2));
      if (opt == nullptr) return Error{"", "", fmt::format("unknown option {}", a.substr(0, 2))};
      out.args.emplace_back(a);
      if (takes_value(*opt) && a.size() == 2 && i + 1 < argc) out.args.emplace_back(argv[++i]);
      continue;
    }
    const CLI::Option* opt = find_option(app, ours);
    if (opt == nullptr) return Error{"", "", fmt::format("unknown option {}", name)};
    out.args.push_back(std::string(ours) + std::string(a.substr(name.size())));
    if (takes_value(*opt) && !value_attached && i + 1 < argc) out.args.emplace_back(argv[++i]);
  }
  return out;
}

namespace {

class LlamaHelpFormatter : public CLI::Formatter {
 public:
  explicit LlamaHelpFormatter(std::vector<FlagRename> renames) : renames_(std::move(renames)) {}

  std::string make_option_name(const CLI::Option* opt, bool positional) const override {
    std::string name = CLI::Formatter::make_option_name(opt, positional);
    if (positional) return name;
    for (const FlagRename& r : renames_)
      if (r.ours.starts_with("--") && opt->check_lname(std::string(r.ours.substr(2))))
        name = std::string(r.llama) + "," + name;
    return name;
  }

 private:
  std::vector<FlagRename> renames_;
};

}  // namespace

std::shared_ptr<CLI::Formatter> llama_help_formatter(const LlamaFlags& flags) {
  auto f = std::make_shared<LlamaHelpFormatter>(flags.renames);
  f->column_width(40);
  return f;
}

std::vector<IgnoredFlag> gpu_flags() {
  return {{"-ngl", true},
          {"--gpu-layers", true},
          {"--n-gpu-layers", true},
          {"-fa", false, {"on", "off", "auto"}},
          {"--flash-attn", false, {"on", "off", "auto"}},
          {"-sm", true},
          {"--split-mode", true},
          {"-mg", true},
          {"--main-gpu", true},
          {"-ts", true},
          {"--tensor-split", true},
          {"-dev", true},
          {"--device", true},
          {"-nkvo", false},
          {"--no-kv-offload", false},
          {"-kvu", false},
          {"--kv-unified", false}};
}

int parse_llama_style(CLI::App& app, std::string_view tool, int argc, const char* const* argv,
                      const LlamaFlags& flags) {
  // Every option shows its default in --help (the value bound to it before parsing).
  for (CLI::Option* opt : app.get_options())
    if (opt->nonpositional() && takes_value(*opt)) opt->capture_default_str();
  app.formatter(llama_help_formatter(flags));

  Result<SortedArgs> sorted = sort_llama_flags(app, argc, argv, flags);
  if (!sorted) {
    fmt::print(stderr, "{}: {} (see --help)\n", tool, sorted.error().reason);
    return 1;
  }
  for (const std::string& note : sorted->notes) fmt::print(stderr, "{}: note: {}\n", tool, note);
  std::vector<const char*> args;
  for (const std::string& s : sorted->args) args.push_back(s.c_str());
  try {
    app.parse(static_cast<int>(args.size()), args.data());
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "{}: {}\n", tool, e.what());
    return 1;
  }
  return -1;
}

}  // namespace qe::cli
