#pragma once
// The quantization module's pipeline stages.

#include "mcompress/core/stage.h"

namespace mcompress::quant {

/// Registers the `quantize` stage (fp16, bf16, int8-dynamic, int8-static, qat).
void register_stages(StageRegistry& registry);

}  // namespace mcompress::quant
