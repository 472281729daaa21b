#include "mcompress/core/json_input.h"

#include <set>
#include <vector>

#include "mcompress/core/error.h"

namespace mcompress {

nlohmann::json parse_json_input(const std::string& text, const JsonLimits& limits) {
  MCOMPRESS_CHECK(text.size() <= limits.max_bytes, FormatError, "JSON text of ", text.size(),
                  " bytes; the limit is ", limits.max_bytes);
  MCOMPRESS_CHECK(text.rfind("\xEF\xBB\xBF", 0) != 0, FormatError,
                  "JSON text starts with a byte-order mark");
  const size_t nul = text.find('\0');
  MCOMPRESS_CHECK(nul == std::string::npos, FormatError, "JSON text has a NUL byte at offset ",
                  nul);
  // Keys seen so far in each object being parsed, innermost last.
  std::vector<std::set<std::string>> open_objects;
  const auto check = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    // `depth` counts the containers around this event: a container opened at depth 64 is the
    // 65th level.
    const bool opens = event == Event::object_start || event == Event::array_start;
    MCOMPRESS_CHECK(!opens || static_cast<size_t>(depth) < limits.max_depth, FormatError,
                    "JSON nested deeper than ", limits.max_depth, " levels");
    if (event == Event::object_start) {
      open_objects.emplace_back();
    } else if (event == Event::object_end && !open_objects.empty()) {
      open_objects.pop_back();
    } else if (event == Event::key && !open_objects.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      MCOMPRESS_CHECK(open_objects.back().insert(key).second, FormatError, "JSON key '", key,
                      "' appears twice in one object");
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text, check);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(std::string("not valid JSON: ") + e.what());
  }
}

std::string json_excerpt(const nlohmann::json& value, size_t max_chars) {
  std::string text = value.dump();
  if (text.size() > max_chars) text = text.substr(0, max_chars) + "...";
  return text;
}

}  // namespace mcompress
