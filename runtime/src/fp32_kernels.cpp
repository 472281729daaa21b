// The fp32 kernel the graph plan does not take from GraphNetwork's inference kernels: the dense
// Linear the sparse benchmark measures the sparse kernel against (the same at::addmm the fp32
// Gemm step runs through at::linear).

#include "kernels.h"

namespace mcompress::runtime {
namespace {

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

}  // namespace

KernelPtr make_linear_fp32(AffineWeights w, bool relu) {
  return std::make_unique<LinearFp32>(std::move(w), relu);
}

}  // namespace mcompress::runtime
