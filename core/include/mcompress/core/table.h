#pragma once
// Plain-text and Markdown tables for CLI output and reports.

#include <string>
#include <vector>

namespace mcompress {

/// Example:
///   Table t({"model", "accuracy"});
///   t.add_row({"mlp", "0.8912"});
///   std::cout << t.to_text();
class Table {
 public:
  explicit Table(std::vector<std::string> header);
  /// ConfigError-free: a row with fewer cells is padded, more cells is a logic error.
  void add_row(std::vector<std::string> row);
  /// Columns aligned with spaces; numbers (optionally with a short unit) right-aligned.
  std::string to_text() const;
  /// A GitHub-flavoured Markdown table.
  std::string to_markdown() const;
  size_t rows() const { return rows_.size(); }

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

/// Fixed-point formatting: format_fixed(0.91234, 2) == "0.91".
std::string format_fixed(double value, int decimals);
/// 1536 → "1.5 KiB".
std::string format_bytes(double bytes);

}  // namespace mcompress
