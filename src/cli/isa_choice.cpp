#include "cli/isa_choice.h"

#include <cstdlib>

#include "kernels/kernel_table.h"

namespace qe::cli {

Status choose_isa(const std::string& flag) {
  if (!flag.empty()) {
    if (Status st = kernels::select_isa(flag, "--isa"); !st) return Error{"", "--isa", st.error().reason};
    return {};
  }
  const char* env = std::getenv("QE_ISA");
  if (!env || !*env) return {};
  const auto isa = kernels::isa_from_name(env);
  if (isa && kernels::isa_supported(*isa)) return kernels::select_isa(*isa, "via QE_ISA");
  kernels::note_isa_choice(std::string("QE_ISA=") + env + " ignored: " +
                           (isa ? "not supported by this CPU" : "unknown"));
  return {};
}

}  // namespace qe::cli
