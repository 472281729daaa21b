#pragma once
// JSON that comes from outside (spec files, a model file's `arch` attribute and manifest,
// checkpoint state) is parsed here, with limits, so a hostile document costs bounded memory,
// time and stack, and anything a lenient parser would silently accept is refused.

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>

namespace mcompress {

struct JsonLimits {
  /// Deeper documents are refused while parsing: nothing recursive (nlohmann's dump() in an
  /// error message, a destructor) then ever sees more than this many levels.
  size_t max_depth = 64;
  size_t max_bytes = size_t{256} << 20;
};

/// Parses `text` strictly: one JSON value and nothing after it, no byte-order mark, no NUL
/// byte, no key twice in one object (JSON leaves duplicates undefined; the last would win
/// silently), at most `limits`. Throws FormatError saying what is wrong and where.
nlohmann::json parse_json_input(const std::string& text, const JsonLimits& limits = {});

/// A value for an error message: its JSON text, cut to `max_chars`.
std::string json_excerpt(const nlohmann::json& value, size_t max_chars = 80);

}  // namespace mcompress
