#include "mcompress/core/error.h"

#include <cstdio>

namespace mcompress {
namespace {

// Length of the valid UTF-8 sequence starting at text[i] that is not a C1 control
// (U+0080-U+009F, which some terminals obey as escape codes); 0 when there is none.
size_t utf8_sequence(const std::string& text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  size_t length = 0;
  uint32_t code = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2, code = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3, code = lead & 0x0F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4, code = lead & 0x07;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  for (size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3F);
  }
  const uint32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code < smallest[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  if (code <= 0x9F) return 0;  // C1 controls
  return length;
}

std::string escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7F) {
      out += static_cast<char>(c);
      ++i;
    } else if (const size_t n = c >= 0x80 ? utf8_sequence(text, i) : 0; n > 0) {
      out.append(text, i, n);
      i += n;
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02X", c);
      out += hex;
      ++i;
    }
  }
  return out;
}

// Moves `at` back to the start of a UTF-8 sequence, so a cut never splits a character.
size_t char_boundary(const std::string& text, size_t at) {
  while (at > 0 && at < text.size() && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80) --at;
  return at;
}

}  // namespace

std::string printable(const std::string& text) {
  std::string out = escape(text);
  if (out.size() <= kMaxErrorChars) return out;
  const size_t head = char_boundary(out, kMaxErrorChars * 2 / 3);
  const size_t tail = char_boundary(out, out.size() - kMaxErrorChars / 4);
  return out.substr(0, head) + " [... " + std::to_string(tail - head) + " bytes cut ...] " +
         out.substr(tail);
}

Error::Error(const std::string& message) : std::runtime_error(printable(message)) {}

}  // namespace mcompress
