#pragma once
// The pruning module's pipeline stage.

#include "mcompress/core/stage.h"
#include "mcompress/prune/prune.h"

namespace mcompress::prune {

/// The prune stage's options as PruneOptions, checked as the stage checks them (the seed and
/// progress of fine-tuning are the run's, not options). `mcompress prune` describes and checks
/// its run with it before loading data; the stage itself is built from the same options.
PruneOptions prune_options(const StageOptions& options);

/// Registers the `prune` stage (magnitude or structured pruning with fine-tuning).
void register_stages(StageRegistry& registry);

}  // namespace mcompress::prune
