#include "reports.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <iomanip>
#include <sstream>

#include "mcompress/core/atomic_file.h"
#include "mcompress/core/table.h"
#include "mcompress/core/version.h"

namespace mcompress::pipeline {
namespace fs = std::filesystem;

// One field list for both directions (checkpoint state and the JSON report): the keys are the
// member names.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(StageRow, stage, path, status, test_accuracy, test_loss,
                                   val_accuracy, file_bytes, parameters, nonzeros, latency_b1_ms,
                                   latency_b64_ms, seconds, flags, warnings, options, metrics)

nlohmann::json StageRow::to_json() const { return *this; }

StageRow StageRow::from_json(const nlohmann::json& d) { return d.get<StageRow>(); }

std::vector<std::string> report_paths(const std::string& output) {
  const fs::path out(output);
  const fs::path base = out.parent_path() / out.stem();
  return {base.string() + ".report.md", base.string() + ".report.json",
          base.string() + ".report.csv"};
}

std::string rows_markdown(const std::vector<StageRow>& rows) {
  std::ostringstream md;
  md << "| stage | test accuracy (%) | Δ vs start (points) | size | ratio | parameters | non-zeros "
        "| batch 1 (ms) | batch 64 (ms) | seconds | status |\n"
     << "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n";
  const StageRow& start = rows.front();
  for (const auto& r : rows) {
    md << "| " << (r.path.empty() ? r.stage : r.path) << " | "
       << format_fixed(r.test_accuracy * 100, 2) << " | "
       << format_fixed((r.test_accuracy - start.test_accuracy) * 100, 2) << " | "
       << format_bytes(static_cast<double>(r.file_bytes)) << " | "
       << format_fixed(static_cast<double>(start.file_bytes) / static_cast<double>(r.file_bytes), 2)
       << "x | " << r.parameters << " | " << r.nonzeros << " | " << format_fixed(r.latency_b1_ms, 3)
       << " | " << format_fixed(r.latency_b64_ms, 3) << " | " << format_fixed(r.seconds, 1) << " | "
       << r.status << " |\n";
  }
  return md.str();
}

namespace detail {

void log_header(std::ostream& out) {
  out << std::left << std::setw(22) << "stage" << std::right << std::setw(9) << "test_acc"
      << std::setw(8) << "delta" << std::setw(12) << "size" << std::setw(8) << "ratio"
      << std::setw(10) << "nonzeros" << std::setw(10) << "b1_ms" << std::setw(10) << "b64_ms"
      << std::setw(9) << "seconds"
      << "  status\n";
}

void log_row(std::ostream& out, const StageRow& row, const StageRow& start) {
  out << std::left << std::setw(22) << (row.path.empty() ? row.stage : row.path) << std::right
      << std::setw(9) << format_fixed(row.test_accuracy * 100, 2) << std::setw(8)
      << format_fixed((row.test_accuracy - start.test_accuracy) * 100, 2) << std::setw(12)
      << format_bytes(static_cast<double>(row.file_bytes)) << std::setw(8)
      << format_fixed(static_cast<double>(start.file_bytes) / static_cast<double>(row.file_bytes),
                      2)
      << std::setw(10) << row.nonzeros << std::setw(10) << format_fixed(row.latency_b1_ms, 3)
      << std::setw(10) << format_fixed(row.latency_b64_ms, 3) << std::setw(9)
      << format_fixed(row.seconds, 1) << "  " << row.status << "\n";
  for (const auto& f : row.flags) out << "    did not pay off: " << f << "\n";
  for (const auto& w : row.warnings) out << "    warning: " << w << "\n";
  out.flush();
}

void write_reports(const Recipe& recipe, const RunOptions& o, const std::vector<StageRow>& rows,
                   const std::vector<std::string>& paths) {
  std::ostringstream md;
  md << "# Compression report: " << recipe.output << "\n\n"
     << "Recipe `" << recipe.source << "`, seed " << recipe.seed << ", " << o.threads
     << " thread(s), " << version_details() << ". Accuracy on the test split ("
     << "the guard uses the validation split); latency is the median of one batch with the "
        "kernels the runtime picks for that batch size.\n\n"
     << rows_markdown(rows);
  bool any = false;
  for (const auto& r : rows) {
    for (const auto& f : r.flags) {
      md << (any ? "" : "\n## Did not pay off\n\n") << "- " << (r.path.empty() ? r.stage : r.path)
         << ": " << f << "\n";
      any = true;
    }
  }
  any = false;
  for (const auto& r : rows) {
    for (const auto& w : r.warnings) {
      md << (any ? "" : "\n## Warnings\n\n") << "- " << (r.path.empty() ? r.stage : r.path) << ": "
         << w << "\n";
      any = true;
    }
  }
  write_file_atomically(paths[0], md.str());

  nlohmann::json doc;
  doc["output"] = recipe.output;
  doc["recipe"] = recipe.text;
  doc["recipe_source"] = recipe.source;
  doc["seed"] = recipe.seed;
  doc["threads"] = o.threads;
  doc["producer"] = version_details();
  doc["stages"] = nlohmann::json::array();
  for (const auto& r : rows) doc["stages"].push_back(r.to_json());
  write_file_atomically(paths[1], doc.dump(2) + "\n");

  std::ostringstream csv;
  csv << "stage,path,status,test_accuracy,test_loss,val_accuracy,file_bytes,parameters,nonzeros,"
         "latency_b1_ms,latency_b64_ms,seconds,flags\n";
  auto quoted = [](std::string s) {
    std::string out = "\"";
    for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
  };
  for (const auto& r : rows) {
    std::string flags;
    for (const auto& f : r.flags) flags += (flags.empty() ? "" : "; ") + f;
    csv << r.stage << "," << r.path << "," << quoted(r.status) << "," << r.test_accuracy << ","
        << r.test_loss << "," << r.val_accuracy << "," << r.file_bytes << "," << r.parameters << ","
        << r.nonzeros << "," << r.latency_b1_ms << "," << r.latency_b64_ms << "," << r.seconds
        << "," << quoted(flags) << "\n";
  }
  write_file_atomically(paths[2], csv.str());
}

}  // namespace detail
}  // namespace mcompress::pipeline
