#include "mcompress/distill/loss.h"

#include "mcompress/core/arch_spec.h"
#include "mcompress/core/error.h"

namespace mcompress::distill {
namespace {

void check_logits(const at::Tensor& student, const at::Tensor& teacher) {
  MCOMPRESS_CHECK(student.defined() && teacher.defined() && student.dim() == 2 &&
                      student.sizes() == teacher.sizes(),
                  ModelError, "student logits ", shape_to_string(student.sizes().vec()),
                  " and teacher logits ", shape_to_string(teacher.sizes().vec()),
                  " must both be [N, classes] of one shape");
}

}  // namespace

at::Tensor soft_target_loss(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                            double temperature) {
  check_logits(student_logits, teacher_logits);
  MCOMPRESS_CHECK(temperature > 0, ConfigError, "temperature must be > 0, got ", temperature);
  const auto log_p_s = torch::log_softmax(student_logits / temperature, 1);
  const auto log_p_t = torch::log_softmax(teacher_logits.detach() / temperature, 1);
  // KL from log-probabilities on both sides: no log(0) where a teacher probability underflows.
  const auto kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean();
  return kl * (temperature * temperature);
}

at::Tensor kd_loss(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                   const at::Tensor& labels, double temperature, double alpha) {
  MCOMPRESS_CHECK(alpha >= 0 && alpha <= 1, ConfigError, "alpha must be in [0, 1], got ", alpha);
  if (alpha == 0) {
    check_logits(student_logits, teacher_logits);
    return torch::cross_entropy_loss(student_logits, labels);
  }
  const auto soft = soft_target_loss(student_logits, teacher_logits, temperature);
  if (alpha == 1) return soft;
  return alpha * soft + (1 - alpha) * torch::cross_entropy_loss(student_logits, labels);
}

HintAdapterImpl::HintAdapterImpl(const std::vector<int64_t>& student_shape,
                                 const std::vector<int64_t>& teacher_shape) {
  if (student_shape.size() == 3 && teacher_shape.size() == 3) {
    MCOMPRESS_CHECK(student_shape[1] >= teacher_shape[1] && student_shape[2] >= teacher_shape[2],
                    ConfigError, "hint: the student activation ", shape_to_string(student_shape),
                    " is spatially smaller than the teacher activation ",
                    shape_to_string(teacher_shape), "; pick an earlier student layer");
    conv_ = register_module(
        "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(student_shape[0], teacher_shape[0], 1)));
    if (student_shape[1] != teacher_shape[1] || student_shape[2] != teacher_shape[2]) {
      teacher_hw_ = {teacher_shape[1], teacher_shape[2]};
    }
    return;
  }
  int64_t d_s = 1, d_t = 1;
  for (auto d : student_shape) d_s *= d;
  for (auto d : teacher_shape) d_t *= d;
  linear_ = register_module("linear", torch::nn::Linear(d_s, d_t));
}

torch::Tensor HintAdapterImpl::forward(const torch::Tensor& student_features) {
  if (conv_) {
    auto y = conv_(student_features);
    return teacher_hw_.empty() ? y : torch::adaptive_avg_pool2d(y, teacher_hw_);
  }
  return linear_(student_features.flatten(1));
}

at::Tensor hint_loss(const at::Tensor& adapted_student, const at::Tensor& teacher_features) {
  MCOMPRESS_CHECK(adapted_student.dim() >= 1 && teacher_features.dim() >= 1 &&
                      adapted_student.size(0) == teacher_features.size(0) &&
                      adapted_student.numel() == teacher_features.numel(),
                  ModelError, "hint: adapted student features ",
                  shape_to_string(adapted_student.sizes().vec()), " do not match teacher features ",
                  shape_to_string(teacher_features.sizes().vec()));
  // Compared per example, so that a linear adapter's flat output matches a 4-D teacher map.
  return torch::mse_loss(adapted_student,
                         teacher_features.detach().reshape(adapted_student.sizes()));
}

}  // namespace mcompress::distill
