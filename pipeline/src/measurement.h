#pragma once
// Measuring the deployable model after each stage of a run, and judging the stage against the
// previous kept one: "did not pay off" flags and the accuracy guards.

#include <string>

#include "mcompress/core/dataset.h"
#include "mcompress/core/model.h"
#include "mcompress/pipeline/recipe.h"
#include "mcompress/pipeline/runner.h"

namespace mcompress::pipeline::detail {

// The data a run trains, calibrates and measures on.

struct RunData {
  Dataset train, val, calib, test;
};

// The row of `model`, saved in `file`: size, parameters, accuracy and latency on the runtime.
StageRow measure(const Model& model, const std::string& file, const RunData& data,
                 const Recipe& recipe, const RunOptions& o);

// "Did not pay off" flags against the previous kept row (`before` is its model). Every stage
// is timed again side by side with the previous model, and flagged when it is slower there;
// the flag gives the side-by-side figures.
void flag(StageRow& row, const StageRow& previous, const Model& before, const Model& after,
          double seconds);

// "" when within the guards, else why not.
std::string guard_violation(const StageRow& row, const StageRow& previous, const StageRow& start,
                            const RecipeStage& stage, const Recipe& recipe);

}  // namespace mcompress::pipeline::detail
