#pragma once
// Helpers shared by the runtime suite's files (they are compiled together, tests/CMakeLists.txt).

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "mcompress/core/model.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::testing {

/// The logits of `m` on `x` with every layer on `policy`'s kernels, planned for `batch`.
inline at::Tensor run_with(const Model& m, runtime::KernelPolicy policy, const at::Tensor& x,
                           int64_t batch = 64) {
  runtime::ExecutorOptions o;
  o.policy = policy;
  o.batch_size = batch;
  return runtime::Executor(m, o).run(x);
}

}  // namespace mcompress::testing
