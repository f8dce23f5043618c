#include "model/stop_strings.h"

#include <algorithm>
#include <utility>

namespace qe::model {

StopStrings::StopStrings(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

std::string StopStrings::push(std::string_view text) {
  if (matched_) return {};
  if (stops_.empty()) return std::string(text);
  held_.append(text);
  // The earliest match of any stop string ends the text there.
  size_t match = std::string::npos;
  for (const std::string& s : stops_) match = std::min(match, held_.find(s));
  if (match != std::string::npos) {
    matched_ = true;
    std::string out = held_.substr(0, match);
    held_.clear();
    return out;
  }
  // Hold back the longest tail that is the start of some stop string (shorter than it: not a match).
  size_t keep = 0;
  for (const std::string& s : stops_)
    for (size_t n = std::min(held_.size(), s.size() - 1); n > keep; --n)
      if (std::string_view(held_).substr(held_.size() - n) == std::string_view(s).substr(0, n)) {
        keep = n;
        break;
      }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopStrings::finish() {
  return std::exchange(held_, {});
}

}  // namespace qe::model
