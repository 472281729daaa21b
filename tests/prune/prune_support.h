#pragma once
// Helpers shared by the prune suite's files (they are compiled together, tests/CMakeLists.txt).

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace mcompress::testing {

/// A bool tensor of `shape` from 0/1 values, e.g. an expected mask.
inline at::Tensor bools(std::vector<int64_t> values, std::vector<int64_t> shape) {
  return torch::tensor(values, torch::kLong).reshape(shape).to(torch::kBool);
}

}  // namespace mcompress::testing
