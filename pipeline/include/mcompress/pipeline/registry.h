#pragma once
// Every stage the toolkit offers, registered once by each stage module.

#include "mcompress/core/stage.h"

namespace mcompress::pipeline {

/// The registry with every module's stages (quant, prune, distill), filled on first use.
const StageRegistry& default_registry();

}  // namespace mcompress::pipeline
