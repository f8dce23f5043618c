// What the front ends share about the kernel level: the --isa flag first, else the QE_ISA environment
// variable, else the best level the CPU has. The library only takes the choice (kernels::select_isa);
// reading flags and the environment is the front end's job.
#pragma once

#include <string>

#include "formats/error.h"

namespace qe::cli {

// flag: the --isa value ("" when not given). A bad flag is an error naming --isa; a bad QE_ISA must not
// stop a run nor run code the CPU lacks: the best level is kept and describe_isa() says it was ignored.
Status choose_isa(const std::string& flag);

}  // namespace qe::cli
