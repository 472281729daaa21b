#pragma once
// Decoding the stored tensors of a file into a Model's tensors (load_model) or into the
// storage facts `mcompress inspect` shows.

#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <vector>

#include "mcompress/core/model.h"
#include "mcompress/core/model_file.h"
#include "tensor_entry.h"

namespace mcompress::model_file {

// One tensor as loaded: the fp32 master, the stored encoding when it is not fp32, and the
// pruning mask when the file marks the tensor as pruned.
struct LoadedTensor {
  at::Tensor master;
  std::optional<QuantizedTensor> quantized;
  at::Tensor mask;
};

LoadedTensor read_tensor(StoredTensors& stored, const TensorInfo& info, const std::string& path);

// Every stored tensor of the file: the architecture's in its order, then any others by name.
std::vector<std::string> ordered_tensor_names(const std::vector<std::string>& in_file,
                                              const std::vector<TensorInfo>& architecture);
StoredTensorInfo inspect_tensor(StoredTensors& stored, const std::string& name);

}  // namespace mcompress::model_file
