// fp32 dense kernels on LibTorch's CPU ops (OpenBLAS / oneDNN underneath).

#include "kernels.h"

namespace mcompress::runtime {
namespace {

at::Tensor per_channel_view(const at::Tensor& v, int64_t rank) {
  std::vector<int64_t> shape(static_cast<size_t>(rank), 1);
  shape[1] = v.numel();
  return v.reshape(shape);
}

class NormalizeFp32 : public Kernel {
 public:
  NormalizeFp32(at::Tensor mean, at::Tensor std)
      : mean_(std::move(mean)), inv_std_(std.reciprocal()) {}
  at::Tensor run(const at::Tensor& x) const override {
    return (x - per_channel_view(mean_, x.dim())) * per_channel_view(inv_std_, x.dim());
  }

 private:
  at::Tensor mean_, inv_std_;
};

class LinearFp32 : public Kernel {
 public:
  LinearFp32(AffineWeights w, bool relu) : w_(std::move(w)), relu_(relu) {}
  at::Tensor run(const at::Tensor& x) const override {
    auto y = at::addmm(w_.bias, x, w_.weight.t());
    return relu_ ? y.relu_() : y;
  }

 private:
  AffineWeights w_;
  bool relu_;
};

class Conv2dFp32 : public Kernel {
 public:
  Conv2dFp32(AffineWeights w, Conv2dGeometry g, bool relu) : w_(std::move(w)), g_(g), relu_(relu) {}
  at::Tensor run(const at::Tensor& x) const override {
    auto y = at::conv2d(x, w_.weight, w_.bias, {g_.stride, g_.stride}, {g_.padding, g_.padding},
                        {1, 1}, g_.groups);
    return relu_ ? y.relu_() : y;
  }

 private:
  AffineWeights w_;
  Conv2dGeometry g_;
  bool relu_;
};

class ChannelAffineFp32 : public Kernel {
 public:
  ChannelAffineFp32(at::Tensor scale, at::Tensor shift, bool relu)
      : scale_(std::move(scale)), shift_(std::move(shift)), relu_(relu) {}
  at::Tensor run(const at::Tensor& x) const override {
    auto y = at::addcmul(per_channel_view(shift_, x.dim()), x, per_channel_view(scale_, x.dim()));
    return relu_ ? y.relu_() : y;
  }

 private:
  at::Tensor scale_, shift_;
  bool relu_;
};

// Pools, relu and flatten run unchanged on quantized tensors (their qparams carry over).
class AnyDomainKernel : public Kernel {
 public:
  Domain domain() const override { return Domain::kAny; }
};

class Relu : public AnyDomainKernel {
 public:
  at::Tensor run(const at::Tensor& x) const override { return at::relu(x); }
};

class MaxPool2d : public AnyDomainKernel {
 public:
  MaxPool2d(int64_t k, int64_t s, int64_t p) : k_(k), s_(s), p_(p) {}
  at::Tensor run(const at::Tensor& x) const override {
    // Dilation spelled out: the quantized max_pool2d rejects the defaulted one.
    return at::max_pool2d(x, {k_, k_}, {s_, s_}, {p_, p_}, {1, 1});
  }

 private:
  int64_t k_, s_, p_;
};

class AvgPool2d : public AnyDomainKernel {
 public:
  AvgPool2d(int64_t k, int64_t s, int64_t p) : k_(k), s_(s), p_(p) {}
  at::Tensor run(const at::Tensor& x) const override {
    return at::avg_pool2d(x, {k_, k_}, {s_, s_}, {p_, p_});
  }

 private:
  int64_t k_, s_, p_;
};

class AdaptiveAvgPool2d : public AnyDomainKernel {
 public:
  explicit AdaptiveAvgPool2d(int64_t out) : out_(out) {}
  at::Tensor run(const at::Tensor& x) const override {
    return at::adaptive_avg_pool2d(x, {out_, out_});
  }

 private:
  int64_t out_;
};

class Flatten : public AnyDomainKernel {
 public:
  at::Tensor run(const at::Tensor& x) const override { return x.flatten(1); }
};

class Residual : public Kernel {
 public:
  Residual(KernelPtr main1, KernelPtr main2, KernelPtr shortcut, std::string key)
      : main1_(std::move(main1)),
        main2_(std::move(main2)),
        shortcut_(std::move(shortcut)),
        key_(std::move(key)) {}
  at::Tensor run(const at::Tensor& x) const override { return run_observed(x, nullptr); }
  at::Tensor run_observed(const at::Tensor& x, const ActivationSink& sink) const override {
    const auto h = main1_->run(x);
    auto y = main2_->run(h);
    const auto s = shortcut_ ? shortcut_->run(x) : x;
    if (sink) {
      sink(key_ + ".conv1", h);
      sink(key_ + ".conv2", y);
      if (shortcut_) sink(key_ + ".shortcut", s);
    }
    y.add_(s);
    return y.relu_();
  }

 private:
  KernelPtr main1_, main2_, shortcut_;
  std::string key_;
};

}  // namespace

AffineWeights fold_batchnorm(const AffineWeights& layer, const BatchNormStats& bn) {
  const auto scale = bn.gamma / (bn.var + bn.eps).sqrt();
  std::vector<int64_t> shape(static_cast<size_t>(layer.weight.dim()), 1);
  shape[0] = scale.numel();
  return {(layer.weight * scale.reshape(shape)).contiguous(),
          ((layer.bias - bn.mean) * scale + bn.beta).contiguous()};
}

KernelPtr make_normalize_fp32(at::Tensor mean, at::Tensor std) {
  return std::make_unique<NormalizeFp32>(std::move(mean), std::move(std));
}
KernelPtr make_linear_fp32(AffineWeights w, bool relu) {
  return std::make_unique<LinearFp32>(std::move(w), relu);
}
KernelPtr make_conv2d_fp32(AffineWeights w, Conv2dGeometry geometry, bool relu) {
  return std::make_unique<Conv2dFp32>(std::move(w), geometry, relu);
}
KernelPtr make_channel_affine_fp32(const BatchNormStats& bn, bool relu) {
  const auto scale = bn.gamma / (bn.var + bn.eps).sqrt();
  return std::make_unique<ChannelAffineFp32>(scale, bn.beta - bn.mean * scale, relu);
}
KernelPtr make_relu() { return std::make_unique<Relu>(); }
KernelPtr make_max_pool2d(int64_t k, int64_t s, int64_t p) {
  return std::make_unique<MaxPool2d>(k, s, p);
}
KernelPtr make_avg_pool2d(int64_t k, int64_t s, int64_t p) {
  return std::make_unique<AvgPool2d>(k, s, p);
}
KernelPtr make_adaptive_avg_pool2d(int64_t output_size) {
  return std::make_unique<AdaptiveAvgPool2d>(output_size);
}
KernelPtr make_flatten() { return std::make_unique<Flatten>(); }
KernelPtr make_residual(KernelPtr main1, KernelPtr main2, KernelPtr shortcut, std::string key) {
  return std::make_unique<Residual>(std::move(main1), std::move(main2), std::move(shortcut),
                                    std::move(key));
}

}  // namespace mcompress::runtime
