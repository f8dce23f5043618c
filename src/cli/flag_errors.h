// Library errors name no flags (formats/error.h: Error::option names the API setting instead); a front
// end puts its own words back: the flag in place of the field, and advice after the reason.
#pragma once

#include <initializer_list>
#include <string_view>

#include "formats/error.h"

namespace qe::cli {

struct FlagHint {
  std::string_view option;  // Error::option this hint is for
  std::string_view field;   // replaces Error::field when not empty (e.g. "--cache-type")
  std::string_view advice;  // appended to Error::reason when not empty (e.g. " (use --force to overwrite)")
};

// e with the first matching hint applied; unchanged when no hint names its option.
Error with_flags(Error e, std::initializer_list<FlagHint> hints);

}  // namespace qe::cli
