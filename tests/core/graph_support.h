#pragma once
// Helpers shared by the core suite's graph test files (compiled together, tests/CMakeLists.txt).

#include "mcompress/core/op_schema.h"

namespace mcompress::testing {

/// The symbolic batch dimension of graph inputs.
inline const Dim kBatch = Dim::named("batch");

}  // namespace mcompress::testing
