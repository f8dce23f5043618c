#include "model/partial_json.h"

#include <vector>

namespace qe::model {
namespace {

using ojson = nlohmann::ordered_json;

enum class Open { object, key, array };

// Where the text stops parsing, and what is open there (a key: its value is still to come).
struct Locator : nlohmann::json_sax<ojson> {
  size_t position = 0;
  bool failed = false;
  std::vector<Open> open;

  void close_value() {
    if (!open.empty() && open.back() == Open::key) open.pop_back();
  }
  bool null() override { return close_value(), true; }
  bool boolean(bool) override { return close_value(), true; }
  bool number_integer(number_integer_t) override { return close_value(), true; }
  bool number_unsigned(number_unsigned_t) override { return close_value(), true; }
  bool number_float(number_float_t, const string_t&) override { return close_value(), true; }
  bool string(string_t&) override { return close_value(), true; }
  bool binary(binary_t&) override { return close_value(), true; }
  bool start_object(size_t) override { return open.push_back(Open::object), true; }
  bool key(string_t&) override { return open.push_back(Open::key), true; }
  bool end_object() override {
    open.pop_back();
    return close_value(), true;
  }
  bool start_array(size_t) override { return open.push_back(Open::array), true; }
  bool end_array() override {
    open.pop_back();
    return close_value(), true;
  }
  bool parse_error(size_t at, const std::string&, const nlohmann::detail::exception&) override {
    position = at - 1;
    failed = true;
    return false;
  }
};

bool can_parse(const std::string& s) {
  return !ojson::parse(s, nullptr, /*allow_exceptions=*/false).is_discarded();
}

}  // namespace

std::optional<PartialJson> parse_partial_json(std::string_view text, const std::string& marker) {
  Locator loc;
  ojson::sax_parse(text.begin(), text.end(), &loc);
  if (!loc.failed) return PartialJson{ojson::parse(text), "", text.size()};
  const size_t end = std::min(loc.position, text.size());
  std::string str(text.substr(0, end));
  // A whole value followed by what is not JSON: the value.
  if (ojson v = ojson::parse(str, nullptr, false); !v.is_discarded())
    return PartialJson{std::move(v), "", end};
  if (loc.open.empty()) return std::nullopt;  // a cut outside any array or object: llama.cpp gives up too
  const size_t last_pos = str.find_last_not_of(" \n\r\t");
  if (last_pos == std::string::npos) return std::nullopt;
  const char last = str[last_pos];
  // Stopped on what may be the middle of a number (which may not be complete).
  const bool maybe_number =
      !(str.back() == ' ' || str.back() == '\n' || str.back() == '\r' || str.back() == '\t') &&
      ((last >= '0' && last <= '9') || last == '.' || last == 'e' || last == 'E' || last == '-');
  std::string closing;
  for (auto it = loc.open.rbegin(); it != loc.open.rend(); ++it)
    if (*it != Open::key) closing += *it == Open::object ? '}' : ']';

  // The healings llama.cpp tries, in its order: the first that parses is taken. `heal(dump, tail)` puts
  // the marker (with what comes before it in a dump) and then `tail` and the closing brackets.
  std::string dump_marker;
  const auto heal = [&](std::string before_marker, const std::string& tail) {
    dump_marker = before_marker + marker;
    str += dump_marker + tail + closing;
  };
  // Cuts back to the last of `chars`, where a value starts afresh.
  const auto cut_back = [&](const char* chars) {
    const size_t p = str.find_last_of(chars);
    if (p == std::string::npos) return false;
    str.resize(p + 1);
    heal("\"", "\"");
    return true;
  };
  const bool after_escape = str.back() == '\\';
  switch (loc.open.back()) {
    case Open::key:  // inside an object's value
      if (last == ':' && can_parse(str + "1" + closing))
        heal("\"", "\"");
      else if (can_parse(str + ": 1" + closing))
        heal(":\"", "\"");
      else if (last == '{' && can_parse(str + closing))
        heal("\"", "\": 1");
      else if (can_parse(str + "\"" + closing))
        heal("", "\"");
      else if (after_escape && can_parse(str + "\\\"" + closing))
        heal("\\", "\"");
      else if (!cut_back(":"))
        return std::nullopt;
      break;
    case Open::array:
      if ((last == ',' || last == '[') && can_parse(str + "1" + closing))
        heal("\"", "\"");
      else if (can_parse(str + "\"" + closing))
        heal("", "\"");
      else if (after_escape && can_parse(str + "\\\"" + closing))
        heal("\\", "\"");
      else if (!maybe_number && can_parse(str + ", 1" + closing))
        heal(",\"", "\"");
      else if (!cut_back("[,"))
        return std::nullopt;
      break;
    case Open::object:
      if ((last == '{' && can_parse(str + closing)) || (last == ',' && can_parse(str + "\"\": 1" + closing)))
        heal("\"", "\": 1");
      else if (!maybe_number && can_parse(str + ",\"\": 1" + closing))
        heal(",\"", "\": 1");
      else if (can_parse(str + "\": 1" + closing))
        heal("", "\": 1");
      else if (after_escape && can_parse(str + "\\\": 1" + closing))
        heal("\\", "\": 1");
      else if (!cut_back(":"))
        return std::nullopt;
      break;
  }
  ojson v = ojson::parse(str, nullptr, false);
  if (v.is_discarded()) return std::nullopt;
  return PartialJson{std::move(v), std::move(dump_marker), end};
}

}  // namespace qe::model
