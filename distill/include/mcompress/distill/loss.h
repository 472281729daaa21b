#pragma once
// Teacher-student losses: Hinton et al.'s soft targets with a temperature, and FitNets-style
// hints (Romero et al.), where a learned adapter maps a student activation onto a teacher's.

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace mcompress::distill {

/// T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)), the mean over the batch of
/// Σ_i p_t,i·(log p_t,i − log p_s,i). The factor T² keeps the gradient's size independent of T
/// (Hinton et al. 2015, section 2). As T → ∞ the value tends to ‖c(z_s) − c(z_t)‖² / (2·C) per
/// example (c: the logits minus their mean, C classes): logit matching. The teacher logits are
/// detached. ModelError when the two logit tensors differ in shape or are not [N, C].
at::Tensor soft_target_loss(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                            double temperature);

/// α·soft_target_loss(z_s, z_t, T) + (1 − α)·CE(y, z_s). α = 0 is exactly the cross-entropy of
/// plain training and α = 1 the soft-target term alone (the other term is not computed).
at::Tensor kd_loss(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                   const at::Tensor& labels, double temperature, double alpha);

/// FitNets' regressor: maps a student activation onto the shape of a teacher activation.
/// Both 4-D ([C, H, W] per example): a 1x1 convolution C_s → C_t, then adaptive average
/// pooling down to the teacher's H×W when the student's map is larger. Otherwise both are
/// flattened and a linear map D_s → D_t is used. ConfigError when the student's map is
/// spatially smaller than the teacher's (upsampling would invent detail).
class HintAdapterImpl : public torch::nn::Module {
 public:
  /// Shapes of one example, without the batch dimension.
  HintAdapterImpl(const std::vector<int64_t>& student_shape,
                  const std::vector<int64_t>& teacher_shape);
  torch::Tensor forward(const torch::Tensor& student_features);
  /// "conv1x1" or "linear", for reports.
  const char* kind() const { return conv_ ? "conv1x1" : "linear"; }

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::Linear linear_{nullptr};
  std::vector<int64_t> teacher_hw_;  // conv: pooled output size when it differs from the input
};
TORCH_MODULE(HintAdapter);

/// Mean squared error between the adapted student features and the teacher features (detached).
/// ModelError when the shapes differ.
at::Tensor hint_loss(const at::Tensor& adapted_student, const at::Tensor& teacher_features);

}  // namespace mcompress::distill
