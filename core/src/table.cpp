#include "mcompress/core/table.h"

#include <algorithm>
#include <cstdlib>
#include <iomanip>
#include <sstream>
#include <stdexcept>

namespace mcompress {
namespace {
// A number with at most a known unit suffix ("0.91", "3.27x", "12.3s", "1.5 KiB"), not a
// name that merely starts with a digit ("0.weight").
bool looks_numeric(const std::string& s) {
  if (s.empty()) return false;
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  const size_t parsed = static_cast<size_t>(end - s.c_str());
  if (parsed == 0) return false;
  static const char* const kUnits[] = {"",    "x",  "s",    "%",    "ms",
                                       " ms", " B", " KiB", " MiB", " GiB"};
  const std::string suffix = s.substr(parsed);
  return std::any_of(std::begin(kUnits), std::end(kUnits),
                     [&](const char* unit) { return suffix == unit; });
}
}  // namespace

Table::Table(std::vector<std::string> header) : header_(std::move(header)) {}

void Table::add_row(std::vector<std::string> row) {
  if (row.size() > header_.size()) throw std::logic_error("Table row has too many cells");
  row.resize(header_.size());
  rows_.push_back(std::move(row));
}

std::string Table::to_text() const {
  std::vector<size_t> width(header_.size());
  for (size_t c = 0; c < header_.size(); ++c) width[c] = header_[c].size();
  for (const auto& row : rows_) {
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::ostringstream out;
  auto emit = [&](const std::vector<std::string>& row, bool header) {
    for (size_t c = 0; c < row.size(); ++c) {
      const bool right = !header && looks_numeric(row[c]);
      out << (c ? "  " : "") << (right ? std::right : std::left)
          << std::setw(static_cast<int>(width[c])) << row[c];
    }
    out << "\n";
  };
  emit(header_, true);
  std::vector<std::string> rule;
  for (auto w : width) rule.push_back(std::string(w, '-'));
  emit(rule, true);
  for (const auto& row : rows_) emit(row, false);
  return out.str();
}

std::string Table::to_markdown() const {
  std::ostringstream out;
  auto emit = [&](const std::vector<std::string>& row) {
    out << "|";
    for (const auto& cell : row) out << " " << cell << " |";
    out << "\n";
  };
  emit(header_);
  out << "|";
  for (size_t c = 0; c < header_.size(); ++c) out << " --- |";
  out << "\n";
  for (const auto& row : rows_) emit(row);
  return out.str();
}

std::string format_fixed(double value, int decimals) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(decimals) << value;
  return out.str();
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  int u = 0;
  while (bytes >= 1024 && u < 3) {
    bytes /= 1024;
    ++u;
  }
  return format_fixed(bytes, u == 0 ? 0 : 1) + " " + units[u];
}

}  // namespace mcompress
