#include "cli/flag_errors.h"

namespace qe::cli {

Error with_flags(Error e, std::initializer_list<FlagHint> hints) {
  if (e.option.empty()) return e;
  for (const FlagHint& h : hints) {
    if (h.option != e.option) continue;
    if (!h.field.empty()) e.field = h.field;
    e.reason += h.advice;
    break;
  }
  return e;
}

}  // namespace qe::cli
