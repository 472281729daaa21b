#pragma once
// Named architectures for 1x28x28 inputs and 10 classes (Fashion-MNIST / MNIST).

#include <string>
#include <vector>

#include "mcompress/core/arch_spec.h"

namespace mcompress {

/// Fashion-MNIST training-set pixel statistics (values scaled to [0,1]): every zoo model's
/// input normalisation.
inline constexpr double kFashionMnistMean = 0.2860;
inline constexpr double kFashionMnistStd = 0.3530;

struct ZooEntry {
  std::string name;
  std::string summary;
};

/// Names and one-line summaries, in display order.
std::vector<ZooEntry> zoo_entries();
/// The spec of a zoo model; ConfigError listing the names for an unknown one.
ArchSpec zoo_spec(const std::string& name);

}  // namespace mcompress
