#pragma once
// One name table per enum: to_string and parse read the same rows, and the accepted names in
// an error message are printed from them, so no list of names is typed twice.
//
// Example:
//   constexpr std::array<EnumName<Optimizer>, 2> kOptimizers = {{{Optimizer::kSgd, "sgd"},
//                                                                {Optimizer::kAdam, "adam"}}};
//   std::string to_string(Optimizer o) { return enum_to_string(kOptimizers, o); }
//   Optimizer parse_optimizer(const std::string& name) {
//     return parse_enum<ConfigError>(kOptimizers, name, "optimizer");
//   }

#include <array>
#include <cstddef>
#include <string>

namespace mcompress {

template <typename E>
struct EnumName {
  E value;
  const char* name;
};

/// The row's name; "?" for a value no row has (a cast from a bad integer).
template <typename E, size_t N>
std::string enum_to_string(const std::array<EnumName<E>, N>& table, E value) {
  for (const auto& row : table) {
    if (row.value == value) return row.name;
  }
  return "?";
}

/// "a, b, c": every name, in the table's order.
template <typename E, size_t N>
std::string enum_names(const std::array<EnumName<E>, N>& table) {
  std::string out;
  for (const auto& row : table) out += (out.empty() ? "" : ", ") + std::string(row.name);
  return out;
}

/// The value named `name`; otherwise throws Error("unknown <what> '<name>'; accepted: a, b").
template <typename Error, typename E, size_t N>
E parse_enum(const std::array<EnumName<E>, N>& table, const std::string& name,
             const std::string& what) {
  for (const auto& row : table) {
    if (row.name == name) return row.value;
  }
  throw Error("unknown " + what + " '" + name + "'; accepted: " + enum_names(table));
}

}  // namespace mcompress
