#pragma once
// A recipe: where the start model and the data come from, the stages to run in order, the
// accuracy guard and the output. Parsed and validated completely before anything runs.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mcompress/core/stage.h"
#include "mcompress/core/train.h"

namespace mcompress::pipeline {

/// The start model: a model file, or an architecture trained from scratch first.
struct ModelSource {
  std::string path;    // model file; empty when `arch` is set
  std::string arch;    // zoo name or spec file
  TrainOptions train;  // training of `arch`
  /// With `arch`: a model file that keeps the trained start model between runs. Used when it
  /// exists and was trained from the same arch, options and seed; written otherwise.
  std::string cache;
};

struct DataConfig {
  std::string path;            // IDX folder or HDF5 file; "fashion-mnist" = Debian's copy
  double val_fraction = 0.1;   // of the training split, held out for validation and guards
  int64_t calib_batches = 32;  // calibration sample: this many batches of 64 training examples
  int64_t limit = 0;           // use the first N training examples (0 = all)
  int64_t test_limit = 0;      // use the first N test examples (0 = all)
};

/// Accuracy guard: the most validation accuracy (points) a stage (per stage) or the whole run
/// so far (overall) may cost; < 0 = off. A violation fails the run, or with skip, undoes the
/// stage and reports it.
struct GuardConfig {
  double max_accuracy_drop = -1;
  bool skip = false;  // on_violation: skip (else fail)
};

struct RecipeStage {
  std::string name;        // registered stage name
  std::string path;        // "stages[1].prune", for messages
  GuardConfig guard;       // this stage's own guard (drop against the previous stage)
  nlohmann::json options;  // resolved options (defaults filled in), for reports
  std::shared_ptr<Stage> stage;
};

struct Recipe {
  std::string text;    // the recipe as given, then one "# --set ..." line per override
  std::string source;  // file name, for messages
  ModelSource model;
  DataConfig data;
  uint64_t seed = 0;
  std::vector<RecipeStage> stages;
  GuardConfig guard;          // overall: drop of each stage's result against the start model
  std::string output;         // the compressed model file
  int64_t deploy_batch = 64;  // batch size the runtime tunes kernel choices for

  /// A digest of text and seed: a checkpoint made by another recipe is refused on resume.
  std::string digest() const;
};

/// Parses and validates a recipe: every section, every stage through `registry`, every value.
/// `sets` are overrides "stages[1].prune.target=0.95" applied before validation. ConfigError
/// naming the YAML path and line of the first problem.
Recipe parse_recipe(const std::string& text, const StageRegistry& registry,
                    const std::vector<std::string>& sets = {},
                    const std::string& source = "recipe");
/// parse_recipe on a file's text; IoError when it cannot be read.
Recipe load_recipe(const std::string& path, const StageRegistry& registry,
                   const std::vector<std::string>& sets = {});

/// "" if each stage can follow the ones before it, starting from a model with `start` traits;
/// else the first problem, naming the stage's path ("stages[2].prune: ...").
std::string check_stage_order(const Recipe& recipe, const ModelTraits& start);

}  // namespace mcompress::pipeline
