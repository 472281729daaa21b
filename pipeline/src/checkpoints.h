#pragma once
// Checkpoints and resume: every completed stage's model in <output>.ckpt/ and state.json with
// the rows so far, and the stale temporary files an interrupted run left behind.

#include <filesystem>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "mcompress/core/model.h"
#include "mcompress/pipeline/recipe.h"
#include "mcompress/pipeline/runner.h"

namespace mcompress::pipeline::detail {

namespace fs = std::filesystem;

// Removes the stale temporary files of `targets` (paths this run writes); never throws.
void remove_stale_temps(const std::vector<fs::path>& targets, std::ostream* log);

class Checkpoints {
 public:
  Checkpoints(const Recipe& recipe) : recipe_(recipe), dir_(recipe.output + ".ckpt") {}

  const fs::path& dir() const { return dir_; }
  std::string file(size_t index, const std::string& stage) const;

  // A fresh run: the folder, emptied of an earlier run's checkpoints.
  void start_fresh();

  // Records that rows[0..] are done, the last one saved in `last_file`.
  void commit(const std::vector<StageRow>& rows, const std::string& last_file) const;

  // Every file the run writes: the checkpoints, state.json, the start-model cache, the
  // output and its reports.
  std::vector<fs::path> targets() const;

  // The rows and model of the last completed stage.
  std::pair<std::vector<StageRow>, Model> resume() const;

 private:
  const Recipe& recipe_;
  fs::path dir_;
};

}  // namespace mcompress::pipeline::detail
