// Errors as values: every reader returns Result<T>; the CLI prints Error::message() on one line and
// exits non-zero. The library never calls exit(); broken internal invariants hit QE_CHECK (always on).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace qe {

[[noreturn]] void check_failed(const char* expr, const char* file, int line);

// Always-on invariant check (not for input validation: bad input is an Error, never an abort).
#define QE_CHECK(cond) ((cond) ? static_cast<void>(0) : ::qe::check_failed(#cond, __FILE__, __LINE__))

struct Error {
  std::string file;    // the path (or "<memory>") the problem is in
  std::string field;   // the key, tensor, JSON field or "offset N" that is wrong
  std::string reason;  // what is wrong with it, in words
  // The caller's setting this error is about, or that would change the outcome, as the library's API
  // names it ("overwrite", "numerics", "cache_type", ...). The library knows no command line: a front
  // end maps the option to its own flag (cli/flag_errors.h). Not part of message().
  std::string option = {};

  // "file: field: reason" (parts that are empty are left out), one line: printable() text.
  std::string message() const;
};

// `text` as one line of plain text, whatever a hostile file put in a name: line breaks become spaces;
// other control characters (C0, DEL, C1: a terminal would act on ESC and CSI) and bytes that are not
// well-formed UTF-8 become \xNN.
std::string printable(std::string_view text);

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit on purpose, like std::expected
  Result(Error error) : v_(std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { QE_CHECK(ok()); return std::get<0>(v_); }
  const T& value() const& { QE_CHECK(ok()); return std::get<0>(v_); }
  T&& value() && { QE_CHECK(ok()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  const Error& error() const { QE_CHECK(!ok()); return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Result of an operation that yields nothing but may fail.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : e_(std::move(error)) {}  // NOLINT: implicit on purpose
  static Status Ok() { return {}; }

  bool ok() const { return !e_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const { QE_CHECK(!ok()); return *e_; }

 private:
  std::optional<Error> e_;
};

}  // namespace qe
