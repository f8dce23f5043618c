// llama.cpp's command-line habits in front of CLI11, for the tools that take llama.cpp's flags.
//
// llama.cpp spells many long options with one dash (-cnv, -ngl, -ctk). CLI11 reads "-ngl 99" as -n "gl"
// and "-ctk q8_0" as -c "tk", so a user gets a wrong error or, worse, a misparse. Before CLI11 sees them,
// every argument is sorted:
//   * a rename (-cnv -> --conversation) is applied;
//   * a flag of llama.cpp's that only means something on a GPU (-ngl 99, -fa on) is dropped, with one note
//     saying it does nothing here (its value, if any, dropped with it);
//   * any other dash-word that the tool does not know is an error: "unknown option -xyz";
//   * the value of an option that takes one is passed on untouched, even when it starts with a dash.
// Single-letter options, with or without an attached value (-n 5, -n5, -t2), and numbers (-1) are
// CLI11's; a letter the tool does not know (llama-cli's -i, -r, -e) is "unknown option -i" too.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "formats/error.h"

namespace qe::cli {

struct FlagRename {
  std::string_view llama;  // as llama.cpp spells it: "-cnv"
  std::string_view ours;   // the option's name in the CLI11 app: "--conversation"
};

// A llama.cpp flag with no meaning on this CPU engine.
struct IgnoredFlag {
  std::string_view name;
  bool takes_value;
  std::vector<std::string_view> optional_values = {};  // a flag whose value may be left out (-fa [on])
};

struct LlamaFlags {
  std::vector<FlagRename> renames;
  std::vector<IgnoredFlag> ignored;
};

struct SortedArgs {
  std::vector<std::string> args;   // argv[0] and what CLI11 should parse
  std::vector<std::string> notes;  // one line per ignored flag, for stderr
};

// llama.cpp's GPU flags (-ngl, -fa, -sm, -mg, -ts, -dev, -nkvo, -kvu and their long names): every CPU
// front end accepts them with a note.
std::vector<IgnoredFlag> gpu_flags();

// Sorts argv as above, asking `app` which names it knows and which of them take a value. Error:
// "unknown option NAME".
Result<SortedArgs> sort_llama_flags(const CLI::App& app, int argc, const char* const* argv,
                                    const LlamaFlags& flags);

// Help that lists a renamed option under llama.cpp's name too ("-cnv, --conversation"), and every
// option's default.
std::shared_ptr<CLI::Formatter> llama_help_formatter(const LlamaFlags& flags);

// Parses what sort_llama_flags left; CLI11's own messages for bad values, help and version. Returns
// the exit code to use when the tool should stop (help, version, error), or -1 to go on.
int parse_llama_style(CLI::App& app, std::string_view tool, int argc, const char* const* argv,
                      const LlamaFlags& flags);

}  // namespace qe::cli
