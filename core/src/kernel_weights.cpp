#include "mcompress/core/kernel_weights.h"

#include <ATen/ATen.h>

#include <vector>

#include "mcompress/core/error.h"
#include "mcompress/core/model.h"

namespace mcompress {
namespace {

// `node`'s parameter with role `role`, or nullptr.
const GraphParam* find_param(const GraphInfo& info, const std::string& node,
                             const std::string& role) {
  for (const GraphParam& p : info.params) {
    if (p.node == node && p.spec.role == role) return &p;
  }
  return nullptr;
}

// The tensor of `node`'s parameter with role `role`, or nullptr.
const at::Tensor* param(const Model& model, const GraphInfo& info, const std::string& node,
                        const std::string& role) {
  const GraphParam* p = find_param(info, node, role);
  return p == nullptr ? nullptr : &model.tensor(p->name);
}

}  // namespace

FoldedWeights folded_weights(const Model& model, const GraphInfo& info, const LoweredStep& step) {
  const Graph& graph = model.graph();
  const Node& node = graph.nodes[step.nodes.front()];
  const std::string& anchor = node.name;
  MCOMPRESS_CHECK(node.op == "Conv" || node.op == "Gemm", ModelError, "node '", anchor, "' (",
                  node.op, ") is not a Conv or Gemm, whose weights a batchnorm folds into");
  const at::Tensor* weight = param(model, info, anchor, "weight");
  const at::Tensor* bias = param(model, info, anchor, "bias");
  FoldedWeights w{*weight, bias ? *bias : at::zeros({weight->size(0)}, at::kFloat)};
  const int64_t bn = step.find(graph, "BatchNormalization");
  if (bn < 0) return w;

  const auto index = static_cast<size_t>(bn);
  const std::string& norm = graph.nodes[index].name;
  auto stat = [&](const char* role) { return *param(model, info, norm, role); };
  const double eps = info.attrs[index].at("epsilon").get<double>();
  const auto scale = stat("weight") / (stat("running_var") + eps).sqrt();
  std::vector<int64_t> shape(static_cast<size_t>(w.weight.dim()), 1);
  shape[0] = scale.numel();
  return {(w.weight * scale.reshape(shape)).contiguous(),
          ((w.bias - stat("running_mean")) * scale + stat("bias")).contiguous()};
}

at::Tensor int8_kernel_weight(const std::string& name, const at::Tensor& weight,
                              const QuantizedTensor* stored, bool per_channel) {
  if (stored != nullptr && stored->encoding == Encoding::kInt8 &&
      stored->values.sizes() == weight.sizes()) {
    // Codes decided by the quantization stage: reused, so deployment sees exactly them.
    MCOMPRESS_CHECK(stored->values.scalar_type() == at::kChar, ModelError, "tensor '", name,
                    "' is int8-encoded but its codes are not int8");
    const auto zp = stored->zero_point.to(at::kLong);
    MCOMPRESS_CHECK(
        zp.numel() == 0 || (zp.min().item<int64_t>() >= -128 && zp.max().item<int64_t>() <= 127),
        ModelError, "tensor '", name, "' has a zero point outside int8");
    MCOMPRESS_CHECK(stored->axis == 0 || stored->axis < 0, ModelError, "tensor '", name,
                    "' is quantized along axis ", stored->axis, "; only axis 0 or per-tensor");
    const int64_t scales = stored->axis == 0 ? weight.size(0) : 1;
    MCOMPRESS_CHECK(stored->scale.numel() == scales && zp.numel() == scales, ModelError, "tensor '",
                    name, "' has ", stored->scale.numel(), " scales and ", zp.numel(),
                    " zero points for ", scales, " channel(s)");
    if (stored->axis == 0) {
      return at::_make_per_channel_quantized_tensor(stored->values, stored->scale.to(at::kDouble),
                                                    zp, 0);
    }
    return at::_make_per_tensor_quantized_tensor(stored->values, stored->scale.item<double>(),
                                                 zp.item<int64_t>());
  }
  // A folded (batchnorm-scaled) or unquantized weight: symmetric codes of its values.
  const auto flat = weight.reshape({weight.size(0), -1});
  if (per_channel) {
    auto scale = flat.abs().amax(1).to(at::kDouble) / 127.0;
    scale = at::where(scale > 0, scale, at::ones_like(scale));
    return at::quantize_per_channel(weight, scale, at::zeros({weight.size(0)}, at::kLong), 0,
                                    at::kQInt8);
  }
  double scale = flat.abs().max().item<double>() / 127.0;
  if (!(scale > 0)) scale = 1.0;
  return at::quantize_per_tensor(weight, scale, 0, at::kQInt8);
}

Int8StepWeights int8_step_weights(const Model& model, const GraphInfo& info,
                                  const LoweredStep& step) {
  const FoldedWeights w = folded_weights(model, info, step);
  const std::string& name =
      find_param(info, model.graph().nodes[step.nodes.front()].name, "weight")->name;
  const QuantizedTensor* stored = model.quant.find_int8(name);
  MCOMPRESS_CHECK(stored != nullptr, ModelError, "tensor '", name,
                  "' has no int8 codes, so its step cannot run int8");
  // Codes decided for the unfolded weight do not fit a folded one: re-quantize that.
  const bool folded = step.find(model.graph(), "BatchNormalization") >= 0;
  return {name, int8_kernel_weight(name, w.weight, folded ? nullptr : stored, stored->axis >= 0),
          w.bias};
}

}  // namespace mcompress
