#include "mcompress/runtime/executor.h"

#include <ATen/ATen.h>

#include "kernels.h"
#include "mcompress/core/error.h"

namespace mcompress::runtime {
namespace {

bool is_batchnorm(LayerType t) {
  return t == LayerType::kBatchNorm1d || t == LayerType::kBatchNorm2d;
}

BatchNormStats batchnorm_stats(const Model& m, const std::string& prefix, double eps) {
  return {m.tensor(prefix + "weight"), m.tensor(prefix + "bias"),
          m.tensor(prefix + "running_mean"), m.tensor(prefix + "running_var"), eps};
}

AffineWeights layer_weights(const Model& m, const std::string& prefix, bool has_bias,
                            int64_t out) {
  return {m.tensor(prefix + "weight"),
          has_bias ? m.tensor(prefix + "bias") : at::zeros({out}, at::kFloat)};
}

std::string layer_range(size_t first, size_t last) {
  return first == last ? std::to_string(first)
                       : std::to_string(first) + "-" + std::to_string(last);
}

}  // namespace

struct Executor::Impl {
  ArchSpec spec;
  KernelPtr normalize;
  std::vector<KernelPtr> kernels;
  std::vector<PlanStep> plan;

  void add(size_t first, size_t last, std::string op, KernelPtr kernel, std::string note = {}) {
    kernels.push_back(std::move(kernel));
    plan.push_back({layer_range(first, last), std::move(op), "fp32-dense", std::move(note)});
  }

  void compile(const Model& model) {
    spec = model.spec();
    const auto channels = static_cast<int64_t>(spec.input_shape[0]);
    auto expand = [&](const std::vector<double>& v) {
      auto t = at::tensor(v, at::kFloat);
      return v.size() == 1 ? t.expand({channels}).contiguous() : t;
    };
    normalize = make_normalize_fp32(expand(spec.mean), expand(spec.std));

    const auto& layers = spec.layers;
    for (size_t i = 0; i < layers.size(); ++i) {
      const LayerSpec& l = layers[i];
      const std::string p = std::to_string(i) + ".";
      // conv/linear [+ batchnorm] [+ relu] become one kernel: the batchnorm is folded into
      // the weights and the relu runs in place on the output.
      if (l.type == LayerType::kLinear || l.type == LayerType::kConv2d) {
        const bool conv = l.type == LayerType::kConv2d;
        const int64_t out = conv ? l.out_channels : l.out_features;
        auto w = layer_weights(model, p, l.bias, out);
        size_t last = i;
        std::string op = conv ? "conv2d" : "linear";
        if (last + 1 < layers.size() && is_batchnorm(layers[last + 1].type)) {
          ++last;
          w = fold_batchnorm(w, batchnorm_stats(model, std::to_string(last) + ".",
                                                layers[last].eps));
          op += "+bn";
        }
        bool relu = false;
        if (last + 1 < layers.size() && layers[last + 1].type == LayerType::kReLU) {
          ++last;
          relu = true;
          op += "+relu";
        }
        add(i, last, op,
            conv ? make_conv2d_fp32(std::move(w), {l.stride, l.padding, l.groups}, relu)
                 : make_linear_fp32(std::move(w), relu),
            op.find("+bn") != std::string::npos ? "batchnorm folded" : "");
        i = last;
        continue;
      }
      switch (l.type) {
        case LayerType::kBatchNorm1d:
        case LayerType::kBatchNorm2d: {
          const bool relu = i + 1 < layers.size() && layers[i + 1].type == LayerType::kReLU;
          add(i, i + (relu ? 1 : 0), relu ? "batchnorm+relu" : "batchnorm",
              make_channel_affine_fp32(batchnorm_stats(model, p, l.eps), relu));
          if (relu) ++i;
          break;
        }
        case LayerType::kReLU:
          add(i, i, "relu", make_relu());
          break;
        case LayerType::kMaxPool2d:
          add(i, i, "maxpool2d", make_max_pool2d(l.kernel_size, l.stride, l.padding));
          break;
        case LayerType::kAvgPool2d:
          add(i, i, "avgpool2d", make_avg_pool2d(l.kernel_size, l.stride, l.padding));
          break;
        case LayerType::kAdaptiveAvgPool2d:
          add(i, i, "adaptive_avgpool2d", make_adaptive_avg_pool2d(l.output_size));
          break;
        case LayerType::kFlatten:
          add(i, i, "flatten", make_flatten());
          break;
        case LayerType::kDropout:
          // Identity at inference: no kernel, but the plan says where it went.
          plan.push_back({layer_range(i, i), "dropout", "none", "identity at inference"});
          break;
        case LayerType::kResidual: {
          auto conv1 = fold_batchnorm(layer_weights(model, p + "conv1.", false, l.out_channels),
                                      batchnorm_stats(model, p + "bn1.", 1e-5));
          auto conv2 = fold_batchnorm(layer_weights(model, p + "conv2.", false, l.out_channels),
                                      batchnorm_stats(model, p + "bn2.", 1e-5));
          KernelPtr shortcut;
          if (l.projection) {
            shortcut = make_conv2d_fp32(
                fold_batchnorm(layer_weights(model, p + "shortcut.0.", false, l.out_channels),
                               batchnorm_stats(model, p + "shortcut.1.", 1e-5)),
                {l.stride, 0, 1}, false);
          }
          add(i, i, l.projection ? "residual(projection)" : "residual",
              make_residual(make_conv2d_fp32(std::move(conv1), {l.stride, 1, 1}, true),
                            make_conv2d_fp32(std::move(conv2), {1, 1, 1}, false),
                            std::move(shortcut)),
              "batchnorms folded");
          break;
        }
        default:
          throw ModelError("runtime: no kernel for layer " + std::to_string(i) + " (" +
                           to_string(l.type) + ")");
      }
    }
  }
};

Executor::Executor(const Model& model, const ExecutorOptions& options)
    : impl_(std::make_unique<Impl>()) {
  (void)options;  // the fp32 plan does not depend on the batch size
  impl_->compile(model);
}

Executor::~Executor() = default;
Executor::Executor(Executor&&) noexcept = default;
Executor& Executor::operator=(Executor&&) noexcept = default;

const std::vector<PlanStep>& Executor::plan() const { return impl_->plan; }
const ArchSpec& Executor::spec() const { return impl_->spec; }

at::Tensor Executor::run(const at::Tensor& input) const {
  const auto& shape = impl_->spec.input_shape;
  MCOMPRESS_CHECK(input.dim() == static_cast<int64_t>(shape.size()) + 1 &&
                      input.sizes().slice(1).vec() == shape,
                  ModelError, "input has shape ", shape_to_string(input.sizes().vec()),
                  ", the model expects [N, ", shape_to_string(shape).substr(1));
  at::NoGradGuard no_grad;
  auto x = impl_->normalize->run(input.to(at::kFloat));
  for (const auto& kernel : impl_->kernels) x = kernel->run(x);
  return x;
}

}  // namespace mcompress::runtime
