#pragma once
// A Model is data: an architecture, its fp32 master tensors and what compression stages
// decided about them. Stages edit this data; the runtime reads it to choose kernels.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mcompress/core/arch_spec.h"

namespace mcompress {

class Model {
 public:
  /// A model whose tensors are initialised as PyTorch initialises the same layers, from `seed`.
  static Model initialize(const ArchSpec& spec, uint64_t seed);
  /// A model with the given tensors; ModelError if any tensor is missing, extra, not float32
  /// or of the wrong shape (the message names the tensor).
  static Model from_tensors(const ArchSpec& spec, std::map<std::string, at::Tensor> tensors);

  const ArchSpec& spec() const noexcept { return spec_; }
  /// fp32 master tensors in the order of spec().tensors().
  const std::vector<TensorInfo>& tensor_infos() const noexcept { return infos_; }
  const at::Tensor& tensor(const std::string& name) const;  // ModelError for an unknown name
  at::Tensor& tensor(const std::string& name);
  bool has_tensor(const std::string& name) const { return tensors_.count(name) != 0; }
  const std::map<std::string, at::Tensor>& tensors() const noexcept { return tensors_; }

  /// One JSON document per stage applied (train, quantize, ...), oldest first.
  std::vector<std::string> history;
  /// The recipe or command line that produced the model, and its seed (provenance).
  std::string recipe;
  uint64_t seed = 0;

  /// A deep copy (tensors cloned), e.g. a teacher snapshot or a rollback point.
  Model clone() const;

 private:
  Model(ArchSpec spec, std::map<std::string, at::Tensor> tensors);
  ArchSpec spec_;
  std::vector<TensorInfo> infos_;
  std::map<std::string, at::Tensor> tensors_;
};

}  // namespace mcompress
