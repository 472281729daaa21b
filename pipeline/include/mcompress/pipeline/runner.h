#pragma once
// Runs a recipe: the start model, then each stage in order, measuring the deployable model
// after each one, checkpointing it, guarding accuracy, and writing the reports.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "mcompress/pipeline/recipe.h"

namespace mcompress::pipeline {

struct RunOptions {
  bool resume = false;           // continue after the last completed stage of a checkpoint
  bool overwrite = false;        // replace an existing output file
  int threads = 1;               // reported; the caller sets LibTorch's thread count
  bool progress = false;         // per-epoch lines of training stages on stderr
  std::ostream* log = nullptr;   // one table row per stage as it finishes
  double latency_seconds = 0.3;  // measuring time per latency figure
};

/// The measurements of the deployable model after one stage (row 0: the start model).
struct StageRow {
  std::string stage;   // "start", "prune", ...
  std::string path;    // "stages[1].prune" ("" for start)
  std::string status;  // "ok", "resumed" (from a checkpoint), "skipped: ..."
  double test_accuracy = 0, test_loss = 0, val_accuracy = 0;  // fractions
  int64_t file_bytes = 0;
  int64_t parameters = 0;  // conv/linear/batchnorm weights and biases
  int64_t nonzeros = 0;    // of those
  double latency_b1_ms = 0, latency_b64_ms = 0;
  double seconds = 0;                 // the stage itself (not the measurements)
  std::vector<std::string> flags;     // did not pay off: slower, not smaller on disk
  std::vector<std::string> warnings;  // the stage's own
  nlohmann::json options = nlohmann::json::object();
  nlohmann::json metrics = nlohmann::json::object();

  nlohmann::json to_json() const;
  static StageRow from_json(const nlohmann::json& doc);
};

struct RunResult {
  std::vector<StageRow> rows;
  std::string output;
  std::vector<std::string> reports;  // report.md, .json, .csv paths
};

/// Runs `recipe`. Checkpoints go to "<output>.ckpt/" (one model file per completed stage and
/// state.json); the output and the reports are written only when every stage has run.
/// ConfigError for a stage order that cannot work (before anything runs) or a guard
/// violation with on_violation: fail; the errors of the stages themselves otherwise.
/// Data parallel when mcompress::distributed() has several ranks: every rank runs every stage
/// (training shares its work), rank 0 alone reads the start model, cache and checkpoints
/// (and sends them), measures, decides the guards and writes; the other ranks return a
/// result with only `output` set. Input data must exist on every rank's machine.
RunResult run_recipe(const Recipe& recipe, const RunOptions& options);

/// The reports' paths for an output file: "<dir>/<stem>.report.{md,json,csv}".
std::vector<std::string> report_paths(const std::string& output);
/// The table every report shows, as Markdown.
std::string rows_markdown(const std::vector<StageRow>& rows);

}  // namespace mcompress::pipeline
