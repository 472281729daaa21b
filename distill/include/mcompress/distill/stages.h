#pragma once
// The distillation module's pipeline stage.

#include "mcompress/core/stage.h"
#include "mcompress/distill/distill.h"

namespace mcompress::distill {

/// The distill stage's options other than teacher and student as DistillOptions, checked as the
/// stage checks them (the seed and progress of training are the run's, not options).
/// `mcompress distill` describes its run with it; the stage is built from the same options.
DistillOptions distill_options(const StageOptions& options);

/// Registers the `distill` stage (a new student taught by the current model, or the current
/// model taught by a teacher file).
void register_stages(StageRegistry& registry);

}  // namespace mcompress::distill
