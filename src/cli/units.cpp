#include "cli/units.h"

#include <fmt/core.h>

namespace qe::cli {

std::string bytes_text(uint64_t n) {
  const double d = static_cast<double>(n);
  if (n >= (1ull << 30)) return fmt::format("{:.2f} GiB", d / double(1ull << 30));
  if (n >= (1ull << 20)) return fmt::format("{:.1f} MiB", d / double(1ull << 20));
  if (n >= (1ull << 10)) return fmt::format("{:.1f} KiB", d / double(1ull << 10));
  return fmt::format("{} B", n);
}

std::string rate_text(uint64_t bytes, double seconds) {
  if (seconds <= 0) return "- MB/s";
  return fmt::format("{:.0f} MB/s", static_cast<double>(bytes) / 1e6 / seconds);
}

std::string size_change_text(uint64_t source, uint64_t output) {
  if (source == 0 || output == 0 || source == output) return "same size";
  const double s = static_cast<double>(source), o = static_cast<double>(output);
  return output < source ? fmt::format("{:.2f}x smaller", s / o) : fmt::format("{:.2f}x larger", o / s);
}

}  // namespace qe::cli
