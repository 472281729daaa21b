#pragma once
// The one exception hierarchy of mcompress. Library code throws these; only the CLI catches
// them, prints "mcompress: error: <what>" and maps them to an exit code.

#include <sstream>
#include <stdexcept>
#include <string>

namespace mcompress {

/// Base of every error the library throws on purpose.
class Error : public std::runtime_error {
 public:
  /// Stores printable(message): names taken from files reach a terminal as text, never as
  /// control sequences, and one hostile name cannot make a multi-megabyte error line.
  explicit Error(const std::string& message);
};

/// `text` made safe for one line of a terminal: control characters (C0, DEL, C1), NUL and bytes
/// that are not valid UTF-8 become \xNN; longer than kMaxErrorChars, the middle is cut and the
/// number of cut bytes said. Idempotent, so wrapping an error's message again changes nothing.
std::string printable(const std::string& text);

/// The longest error message printed whole (bytes of printable text).
inline constexpr size_t kMaxErrorChars = 2000;

/// A bad option, recipe value or command-line argument (CLI exit code 2).
class ConfigError : public Error {
 public:
  using Error::Error;
};

/// A model spec or model state that is inconsistent: unknown layer, shapes that do not chain,
/// a missing tensor, a class-count mismatch.
class ModelError : public Error {
 public:
  using Error::Error;
};

/// A file whose content does not follow its format: wrong magic, future version, checksum
/// failure, truncated data.
class FormatError : public Error {
 public:
  using Error::Error;
};

/// The file system or a library said no: missing file, read-only folder, failed rename.
class IoError : public Error {
 public:
  using Error::Error;
};

/// A data set that cannot be used: empty, labels out of range, image/label count mismatch.
class DataError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace detail

}  // namespace mcompress

/// Throws ErrorT with the streamed message when cond is false. For anything a user can reach.
/// Example: MCOMPRESS_CHECK(p < 1, ConfigError, "sparsity must be < 1, got ", p);
#define MCOMPRESS_CHECK(cond, ErrorT, ...)                    \
  do {                                                        \
    if (!(cond)) {                                            \
      throw ErrorT(::mcompress::detail::concat(__VA_ARGS__)); \
    }                                                         \
  } while (false)
