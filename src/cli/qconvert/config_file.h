// qconvert --config FILE.yaml: settings from a YAML mapping whose keys are qconvert's long flag names
// without the dashes (`type: q4_0`, `awq-samples: 64`, `no-awq-clip: true`, `tensor-type: [attn_v=q8_0]`,
// `input: model_dir`, `output: out.gguf`). A value goes through the flag's own parsing and checks, as if
// it had been typed; a flag given on the command line wins over the file (a list flag's values are then
// the command line's alone). Paths are taken as they would be on the command line (relative to the
// current directory, not to the file).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "formats/error.h"

namespace qe::cli {

// Applies `path` to the options of an already parsed `app`. An unknown key, a key that only the command
// line may give (config, help, version, info, json, hash), a value of the wrong kind, a value the flag
// refuses, a key given twice or a file that is not YAML is one Error naming the file and the key.
Status apply_config_file(CLI::App& app, const std::string& path);

}  // namespace qe::cli
