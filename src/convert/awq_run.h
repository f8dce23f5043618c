// The calibrating conversion (ConvertJob::awq), which run_convert hands over to:
//   1. the input, whatever its types, to a temporary f32 GGUF beside the output (run_convert itself);
//   2. the calibration text through that model once, capturing each linear group's statistics;
//   3. per block, the scale / clip / rounding search, the results written into the temporary file's f32
//      weights and norms, which stay an exact (unquantized) equivalent of the model;
//   4. the temporary file to the output type (run_convert again), with the chosen importance weights and
//      the quantize.awq.* provenance keys. The temporary file is removed on every path.
#pragma once

#include "convert/run.h"
#include "formats/error.h"

namespace qe::convert {

Result<ConvertResult> run_awq_convert(const ConvertJob& job, const ConvertObserver& obs);

}  // namespace qe::convert
