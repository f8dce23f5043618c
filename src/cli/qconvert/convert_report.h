// The machine-readable (--report JSON) and human-readable (--card Markdown) records of a conversion.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "cli/qconvert/convert.h"
#include "convert/run.h"

namespace qe::cli {

// Totals: bytes, compression ratio, bits per weight, time.
struct ConvertTotals {
  double ratio = 0.0;            // source tensor bytes / output tensor bytes
  double bits_per_weight = 0.0;  // output tensor bits / weights
  double mb_per_s = 0.0;         // source MB (1e6 bytes) per second
};
ConvertTotals totals_of(const convert::ConvertResult& r);

nlohmann::ordered_json report_json(const ConvertOptions& opt, const std::string& type, const convert::ConvertResult& r);
std::string model_card(const ConvertOptions& opt, const std::string& type, const std::string& output,
                       const convert::ConvertResult& r);

}  // namespace qe::cli
