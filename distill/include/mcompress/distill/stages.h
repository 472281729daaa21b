#pragma once
// The distillation module's pipeline stage.

#include "mcompress/core/stage.h"

namespace mcompress::distill {

/// Registers the `distill` stage (a new student taught by the current model, or the current
/// model taught by a teacher file).
void register_stages(StageRegistry& registry);

}  // namespace mcompress::distill
