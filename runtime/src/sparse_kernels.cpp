// fp32 Linear on an Eigen sparse (CSR) weight, for highly pruned layers where skipping the
// zeros beats a dense GEMM. The executor times it against the dense kernel at the deployment
// batch size and keeps the faster; bench/sparse_speed.cpp measures where the two cross.

#include <ATen/Parallel.h>

// Threads come from at::parallel_for below (LibTorch's pool and --threads), never from
// Eigen's own OpenMP loops, which would nest inside it.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <Eigen/SparseCore>

#include <algorithm>

#include "kernels.h"

namespace mcompress::runtime {
namespace {

using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using SparseWeight = Eigen::SparseMatrix<float, Eigen::RowMajor, int32_t>;
// Examples per accumulator block of the batched product: 16 floats are four SSE or two AVX
// registers, few enough to stay in registers next to the operands.
constexpr int kBlock = 16;
using Block = Eigen::Matrix<float, 1, kBlock>;

// Batches of at least this many examples go through the transposed product below; smaller
// ones run one sparse matrix-vector product per example (no copies at all). Measured on a
// 1024x1024 layer: the two are even at 2-3 examples, the transposed one 2x faster at 4.
constexpr int64_t kTransposedBatch = 4;
// Multiply-adds per parallel chunk: below ~10 µs of work a thread hand-off costs more than it
// saves.
constexpr int64_t kMinChunkWork = 32768;

// The non-zeros of a dense [out, in] weight, row by row (exact zeros are the pruned weights).
SparseWeight to_sparse(const at::Tensor& weight) {
  const at::Tensor w = weight.to(at::kCPU).to(at::kFloat).contiguous();
  const int64_t rows = w.size(0), cols = w.size(1);
  const float* data = w.data_ptr<float>();
  SparseWeight out(rows, cols);
  out.reserve(w.ne(0).sum().item<int64_t>());
  for (int64_t r = 0; r < rows; ++r) {
    out.startVec(r);
    for (int64_t c = 0; c < cols; ++c) {
      const float v = data[r * cols + c];
      if (v != 0.0f) out.insertBack(r, c) = v;
    }
  }
  out.finalize();
  return out;
}

class LinearSparseFp32 : public Kernel {
 public:
  LinearSparseFp32(const AffineWeights& w, bool relu)
      : weight_(to_sparse(w.weight)),
        bias_(w.bias.to(at::kCPU).to(at::kFloat).contiguous()),
        relu_(relu) {}

  // x: [N, in] → y = x·Wᵀ + b [, relu]: [N, out].
  at::Tensor run(const at::Tensor& x) const override {
    const at::Tensor input = x.contiguous();  // a no-op for the activations a plan produces
    const int64_t n = input.size(0);
    at::Tensor y = at::empty({n, weight_.rows()}, input.options());
    if (n >= kTransposedBatch) {
      run_transposed(input, y);
    } else {
      run_per_example(input, y);
    }
    return y;
  }

 private:
  using ConstMap = Eigen::Map<const RowMajorMatrix>;
  using Map = Eigen::Map<RowMajorMatrix>;

  // Output rows per parallel chunk for a batch of n.
  int64_t grain(int64_t n) const {
    const int64_t rows = std::max<int64_t>(1, weight_.rows());
    const int64_t per_row = std::max<int64_t>(1, weight_.nonZeros() / rows * n);
    return std::max<int64_t>(1, kMinChunkWork / per_row);
  }

  // Small batches: y[i] = W·x[i] + b for each example, straight from and into the tensors.
  void run_per_example(const at::Tensor& x, at::Tensor& y) const {
    const int64_t n = x.size(0), in = weight_.cols(), out = weight_.rows();
    const ConstMap xs(x.data_ptr<float>(), n, in);
    Map ys(y.data_ptr<float>(), n, out);
    const Eigen::Map<const Eigen::VectorXf> bias(bias_.data_ptr<float>(), out);
    at::parallel_for(0, out, grain(n), [&](int64_t begin, int64_t end) {
      const auto rows = weight_.middleRows(begin, end - begin);
      for (int64_t i = 0; i < n; ++i) {
        auto yi = ys.row(i).segment(begin, end - begin).transpose();
        yi = bias.segment(begin, end - begin);
        yi.noalias() += rows * xs.row(i).transpose();
        if (relu_) yi = yi.cwiseMax(0.0f);
      }
    });
  }

  // Larger batches: Yᵀ = W·Xᵀ with Xᵀ and Yᵀ row-major [in, N] / [out, N], so each stored
  // weight scales a contiguous run of inputs instead of gathering N strided ones. Examples go
  // in blocks of kBlock (padded with zeros): a block's accumulator stays in registers while a
  // row's non-zeros stream past. The two transposes cost O(N·(in + out)), small next to the
  // O(N·nnz) product.
  void run_transposed(const at::Tensor& x, at::Tensor& y) const {
    const int64_t n = x.size(0), in = weight_.cols(), out = weight_.rows();
    const int64_t padded = (n + kBlock - 1) / kBlock * kBlock;
    RowMajorMatrix xt = RowMajorMatrix::Zero(in, padded);
    xt.leftCols(n) = ConstMap(x.data_ptr<float>(), n, in).transpose();
    RowMajorMatrix yt(out, padded);
    const float* bias = bias_.data_ptr<float>();
    at::parallel_for(0, out, grain(n), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        for (int64_t b = 0; b < padded; b += kBlock) {
          Block acc = Block::Constant(bias[r]);
          for (SparseWeight::InnerIterator it(weight_, r); it; ++it) {
            acc += it.value() * xt.row(it.index()).segment<kBlock>(b);
          }
          yt.row(r).segment<kBlock>(b) = acc;
        }
      }
    });
    Map ys(y.data_ptr<float>(), n, out);
    if (relu_) {
      ys = yt.leftCols(n).transpose().cwiseMax(0.0f);
    } else {
      ys = yt.leftCols(n).transpose();
    }
  }

  SparseWeight weight_;  // [out, in], CSR
  at::Tensor bias_;      // [out]
  bool relu_;
};

}  // namespace

KernelPtr make_linear_sparse_fp32(const AffineWeights& w, bool relu) {
  return std::make_unique<LinearSparseFp32>(w, relu);
}

}  // namespace mcompress::runtime
