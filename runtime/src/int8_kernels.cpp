// int8 kernels: LibTorch's quantized operators on the oneDNN engine, reached through the
// dispatcher (they have no C++ API in 1.13). Weights are packed once at plan time.

#include <ATen/core/dispatch/Dispatcher.h>

#include <mutex>

#include "kernels.h"
#include "mcompress/core/error.h"

namespace mcompress::runtime {
namespace {

c10::OperatorHandle op(const char* name, const char* overload) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, overload);
}

c10::IValue call(const c10::OperatorHandle& handle, std::vector<c10::IValue> args) {
  torch::jit::Stack stack(std::make_move_iterator(args.begin()),
                          std::make_move_iterator(args.end()));
  handle.callBoxed(&stack);
  return std::move(stack.at(0));
}

c10::IValue pack_linear(const at::Tensor& qweight, const at::Tensor& bias) {
  return call(op("quantized::linear_prepack", ""), {qweight, c10::optional<at::Tensor>(bias)});
}

class LinearDynamicInt8 : public Kernel {
 public:
  LinearDynamicInt8(const at::Tensor& qweight, const at::Tensor& bias, bool relu)
      : packed_(pack_linear(qweight, bias)),
        op_(op("quantized::linear_dynamic", "")),
        relu_(relu) {}
  at::Tensor run(const at::Tensor& x) const override {
    // reduce_range=false: oneDNN's u8s8 kernels do not need the 7-bit trick FBGEMM uses.
    auto y = call(op_, {x, packed_, false}).toTensor();
    return relu_ ? y.relu_() : y;
  }

 private:
  c10::IValue packed_;
  c10::OperatorHandle op_;
  bool relu_;
};

// quint8 in, quint8 out: a prepacked quantized linear or conv2d op writing the output's qparams.
class PackedStaticInt8 : public Kernel {
 public:
  PackedStaticInt8(c10::IValue packed, c10::OperatorHandle op, ActivationQParams out)
      : packed_(std::move(packed)), op_(std::move(op)), out_(std::move(out)) {}
  at::Tensor run(const at::Tensor& x) const override {
    return call(op_, {x, packed_, out_.scale, out_.zero_point}).toTensor();
  }

 private:
  c10::IValue packed_;
  c10::OperatorHandle op_;
  ActivationQParams out_;
};

class Quantize : public Kernel {
 public:
  explicit Quantize(ActivationQParams q) : q_(std::move(q)) {}
  at::Tensor run(const at::Tensor& x) const override {
    return at::quantize_per_tensor(x, q_.scale, q_.zero_point, at::kQUInt8);
  }

 private:
  ActivationQParams q_;
};

class Dequantize : public Kernel {
 public:
  at::Tensor run(const at::Tensor& x) const override { return x.dequantize(); }
};

}  // namespace

void ensure_quantized_engine() {
  static std::once_flag once;
  std::call_once(once, [] { at::globalContext().setQEngine(at::QEngine::ONEDNN); });
}

KernelPtr make_linear_dynamic_int8(const at::Tensor& qweight, const at::Tensor& bias, bool relu) {
  return std::make_unique<LinearDynamicInt8>(qweight, bias, relu);
}
KernelPtr make_linear_static_int8(const at::Tensor& qweight, const at::Tensor& bias, bool relu,
                                  ActivationQParams out) {
  return std::make_unique<PackedStaticInt8>(
      pack_linear(qweight, bias), op(relu ? "quantized::linear_relu" : "quantized::linear", ""),
      std::move(out));
}
KernelPtr make_conv2d_static_int8(const at::Tensor& qweight, const at::Tensor& bias,
                                  Conv2dGeometry geometry, bool relu, ActivationQParams out) {
  const Conv2dGeometry& g = geometry;
  auto packed =
      call(op("quantized::conv2d_prepack", ""),
           {qweight, c10::optional<at::Tensor>(bias), std::vector<int64_t>{g.stride, g.stride},
            std::vector<int64_t>{g.padding, g.padding}, std::vector<int64_t>{1, 1}, g.groups});
  return std::make_unique<PackedStaticInt8>(
      std::move(packed), op(relu ? "quantized::conv2d_relu" : "quantized::conv2d", "new"),
      std::move(out));
}
MultiInputKernel make_add_int8(bool relu, ActivationQParams out) {
  auto add = op(relu ? "quantized::add_relu" : "quantized::add", "");
  return [add, out](const std::vector<at::Tensor>& in) {
    return call(add, {in.at(0), in.at(1), out.scale, out.zero_point}).toTensor();
  };
}
MultiInputKernel make_concat_int8(int64_t axis, ActivationQParams out) {
  auto cat = op("quantized::cat", "");
  return [cat, axis, out](const std::vector<at::Tensor>& in) {
    return call(cat, {c10::List<at::Tensor>(in), axis, c10::optional<double>(out.scale),
                      c10::optional<int64_t>(out.zero_point)})
        .toTensor();
  };
}
KernelPtr make_quantize(ActivationQParams qparams) {
  return std::make_unique<Quantize>(std::move(qparams));
}
KernelPtr make_dequantize() { return std::make_unique<Dequantize>(); }

}  // namespace mcompress::runtime
