#pragma once
// The run's reports (<output stem>.report.{md,json,csv}) and its progress log, one table row
// per stage. StageRow's JSON form, report_paths and rows_markdown (runner.h) live in
// reports.cpp too.

#include <ostream>
#include <string>
#include <vector>

#include "mcompress/pipeline/recipe.h"
#include "mcompress/pipeline/runner.h"

namespace mcompress::pipeline::detail {

// The header of the progress log's table.
void log_header(std::ostream& out);
// One row of the progress log's table, with its flags and warnings.
void log_row(std::ostream& out, const StageRow& row, const StageRow& start);
// Writes the Markdown, JSON and CSV reports of `rows` to `paths` (report_paths' order).
void write_reports(const Recipe& recipe, const RunOptions& o, const std::vector<StageRow>& rows,
                   const std::vector<std::string>& paths);

}  // namespace mcompress::pipeline::detail
