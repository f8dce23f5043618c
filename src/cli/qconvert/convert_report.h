// The machine-readable (--report JSON) and human-readable (--card Markdown) records of a conversion.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/qconvert/convert.h"
#include "convert/run.h"

namespace qe::cli {

// Totals: compression ratio, bits per weight.
struct ConvertTotals {
  double ratio = 0.0;            // source tensor bytes / output tensor bytes
  double bits_per_weight = 0.0;  // output tensor bits / weights
};
ConvertTotals totals_of(const convert::ConvertResult& r);

// One linear group (qkv, o, gate_up, down) of the calibration over all blocks, in the order the report
// first names them: what the summary, the report JSON and the card show.
struct AwqGroupSummary {
  std::string name;
  int64_t blocks = 0;
  double alpha_mean = 0.0, alpha_min = 0.0, alpha_max = 0.0;
  double loss_rtn = 0.0, loss_awq = 0.0;  // summed over the blocks
  int64_t fallbacks = 0;                  // groups that took a later step of the fallback chain
  int64_t clipped_rows = 0;
  std::vector<std::pair<std::string, int64_t>> methods;  // "awq" 28, "rtn" 2, ... (first-seen order)
};
std::vector<AwqGroupSummary> awq_summary(const convert::AwqReport& r);

// The calibration summary for stderr: lines without "qconvert: " and without newlines.
std::vector<std::string> awq_summary_lines(const convert::AwqReport& r);

nlohmann::ordered_json report_json(const ConvertOptions& opt, const std::string& type, const convert::ConvertResult& r);
std::string model_card(const ConvertOptions& opt, const std::string& type, const std::string& output,
                       const convert::ConvertResult& r);

}  // namespace qe::cli
