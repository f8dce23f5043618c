// Text-level stop strings (llama-server's "stop", OpenAI's `stop`) over a stream of text: the text is
// passed on as it comes, except a tail that could still grow into a match (held back until the next
// text decides it), and nothing from the first match on. Matching is on bytes of UTF-8 text, so a stop
// string may span tokens.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace qe::model {

class StopStrings {
 public:
  StopStrings() = default;
  explicit StopStrings(std::vector<std::string> stops);  // empty strings never match

  // Appends text; returns the text that can be shown now. When this text completes a match, returns
  // what comes before the earliest match and matched() turns true; later calls return nothing.
  std::string push(std::string_view text);
  // The end of the stream: the text still held back (it can no longer become a match).
  std::string finish();
  bool matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool matched_ = false;
};

}  // namespace qe::model
