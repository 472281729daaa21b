#pragma once
// Magnitude criteria of unstructured pruning: which tensors may be pruned, and which of their
// entries a sparsity target removes, per tensor or with one threshold across tensors.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mcompress/core/arch_spec.h"
#include "mcompress/core/model.h"

namespace mcompress::prune {

/// Conv and linear weights, residual-block convolutions and projections included. Biases,
/// batchnorm parameters and running statistics are never prunable.
bool is_prunable(const ArchSpec& spec, const TensorInfo& info);
/// The prunable tensors of `spec`, in spec order.
std::vector<std::string> prunable_tensors(const ArchSpec& spec);
/// The prunable tensors of `model`, in its order: those of its spec for a sequential model, the
/// compressible parameters of the op table (Conv and Gemm weights) for a graph model.
std::vector<std::string> prunable_tensors(const Model& model);

/// Keep-masks (bool, true = kept) that remove the round(sparsity · N) entries of smallest
/// magnitude across all `weights` together (N: their total size): one threshold shared by
/// every tensor. Ties are removed in order: an earlier tensor first, then a lower flat index.
/// Entries already false in `previous` (same order; empty or an undefined tensor = nothing
/// removed yet) are removed first and stay removed, so masks only shrink; when they outnumber
/// round(sparsity · N), the result is `previous` itself. `sparsity` must be in [0, 1].
std::vector<at::Tensor> global_magnitude_masks(const std::vector<at::Tensor>& weights,
                                               double sparsity,
                                               const std::vector<at::Tensor>& previous = {});

/// One tensor pruned to its own sparsity (global_magnitude_masks of that tensor alone).
at::Tensor layer_magnitude_mask(const at::Tensor& weight, double sparsity,
                                const at::Tensor& previous = {});

/// Kept and total entries of a mask (or of a tensor's nonzeros, with nonzero_density).
struct Density {
  int64_t kept = 0, total = 0;
  double density() const {
    return total > 0 ? static_cast<double>(kept) / static_cast<double>(total) : 1.0;
  }
  double sparsity() const { return 1.0 - density(); }
  Density& operator+=(const Density& other) {
    kept += other.kept;
    total += other.total;
    return *this;
  }
};
Density mask_density(const at::Tensor& mask);
Density nonzero_density(const at::Tensor& tensor);

}  // namespace mcompress::prune
