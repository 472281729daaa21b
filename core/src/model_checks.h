#pragma once
// The checks of a model's quantization state, masks and tensor names that make a file
// unloadable. Shared by saving (ErrorT = ModelError: the model is inconsistent) and loading
// (ErrorT = FormatError: the file is); the templates are instantiated for both.

#include <string>
#include <vector>

#include "mcompress/core/model.h"

namespace mcompress::model_file {

// `values` etc. are CPU tensors of any dtype here.
template <typename ErrorT>
void check_quantized(const std::string& path, const std::string& name, const QuantizedTensor& q,
                     const std::vector<int64_t>& shape);
// An int8 tensor's axis, scales (finite, > 0) and zero points (int8 range) for `shape`: what the
// runtime divides and offsets by. Part of check_quantized; on its own for `inspect`.
template <typename ErrorT>
void check_int8_params(const std::string& path, const std::string& name, const QuantizedTensor& q,
                       const std::vector<int64_t>& shape);
template <typename ErrorT>
void check_quant_mode(const std::string& path, const std::string& mode);
template <typename ErrorT>
void check_activation(const std::string& path, const std::string& key,
                      const ActivationQParams& params);

void check_tensor_name(const std::string& path, const std::string& name);
// Everything in model.quant that would make the file unloadable, checked before the temporary
// file is created.
void check_quant_state(const Model& model, const std::string& path);
// A mask that leaves a non-zero value where it says "pruned" would come back different.
void check_masks(const Model& model, const std::string& path);

}  // namespace mcompress::model_file
