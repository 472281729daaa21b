#pragma once
// The deployable executor: compiles a Model into a plan of kernels and runs it. Every model is
// a graph (a sequential one as Graph::from_sequential makes it), lowered once (core/lowering.h)
// into steps that run fp32, int8 or sparse kernels (runtime/src/graph_plan.h).
// Every reported metric (eval, reports, benchmarks) goes through it, so the figures are those
// of the model a user would deploy, not of the training-time network.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mcompress/core/dataset.h"
#include "mcompress/core/model.h"

namespace mcompress::runtime {

/// One step of the compiled plan, as `eval` and reports show it.
struct PlanStep {
  std::string layers;  // the graph nodes it covers, e.g. "0..2" (a sequential model's layers)
  std::string op;      // "Conv+BatchNormalization+Relu", "Gemm", "MaxPool", "quantize", ...
  std::string kernel;  // "fp32-dense", "fp32-sparse", "int8-static", "int8-dynamic", ...
  std::string note;    // why this kernel, folded layers, weight density, ...
  double fp32_ms = 0;  // per-step timings of the auto policy, fastest of 10+ runs (0 = not timed)
  double int8_ms = 0;
  double sparse_ms = 0;
};

/// Which kernel a step with an alternative form runs. A Conv/Gemm step (and, int8-static, an
/// Add or Concat) has an int8 form when the model is int8-quantized, and a Gemm step has a
/// sparse form (fp32 values, Eigen CSR kernel) when its weight density is at most
/// ExecutorOptions::sparse_candidate_density.
enum class KernelPolicy {
  kAuto,    // time every form at the deployment batch size, keep the fastest per step, then
            // keep the fastest whole plan (never slower than fp32 dense)
  kInt8,    // int8 wherever the model has an int8 form, fp32 dense elsewhere
  kFp32,    // fp32 dense everywhere (the baseline)
  kSparse,  // the sparse kernel wherever a Linear layer has a sparse form, fp32 dense elsewhere
};
std::string to_string(KernelPolicy policy);
KernelPolicy parse_kernel_policy(const std::string& name);  // ConfigError listing names

struct ExecutorOptions {
  /// The batch size the model will be deployed at; the auto policy times kernels at it.
  int64_t batch_size = 64;
  KernelPolicy policy = KernelPolicy::kAuto;
  /// A Linear layer whose weight (after batchnorm folding) has at most this fraction of
  /// non-zeros gets a sparse form. A cheap filter, not the decision: the auto policy times the
  /// sparse kernel against the dense one. bench_sparse measures where they cross: around 0.5
  /// at batch 1 (a dense matrix-vector product is memory-bound too), far lower at batch 64.
  double sparse_candidate_density = 0.5;
};

/// Example:
///   runtime::Executor exec(model);
///   at::Tensor logits = exec.run(images);   // images as the data set stores them
class Executor {
 public:
  explicit Executor(const Model& model, const ExecutorOptions& options = {});
  ~Executor();
  Executor(Executor&&) noexcept;
  Executor& operator=(Executor&&) noexcept;

  /// Raw input [N, ...input_shape] → logits [N, num_classes]. Thread-safe for concurrent
  /// calls (the plan is immutable). ModelError for an input of the wrong shape.
  at::Tensor run(const at::Tensor& input) const;

  /// Runs the fp32 form of the plan, passing every activation calibration needs to `sink`:
  /// "input" (the preprocessed input), then the output of every step that does not pass its
  /// input's qparams through (Conv/Gemm groups, Add, Concat, batchnorms, fp32 islands) by its
  /// value name (core/lowering.h): for a sequential model the index of the group's last
  /// layer, and for residual block 5 "5.relu1", "5.bn2", "5.shortcut.1" and "5".
  at::Tensor run_observed(
      const at::Tensor& input,
      const std::function<void(const std::string&, const at::Tensor&)>& sink) const;

  const std::vector<PlanStep>& plan() const;
  /// The input's shape without the batch dimension, and the number of classes.
  const std::vector<int64_t>& input_shape() const;
  int64_t num_classes() const;
  /// What the auto policy chose and the whole-plan timings it chose by ("" for other policies).
  const std::string& plan_note() const;
  /// Number of steps that run int8 kernels in the chosen plan.
  int64_t int8_layers() const;
  /// Number of Gemm steps that run the sparse kernel in the chosen plan.
  int64_t sparse_layers() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct EvalResult {
  double accuracy = 0;  // fraction in [0, 1]
  double loss = 0;      // mean cross-entropy
  int64_t samples = 0;
  double seconds = 0;  // wall time of all batches
  double ms_per_batch = 0;
};

/// Accuracy, loss and time of `exec` over `data` in batches of `batch_size`. DataError for
/// an empty data set or one whose examples or labels do not fit the model.
EvalResult evaluate(const Executor& exec, const Dataset& data, int64_t batch_size = 256);

struct Latency {
  int64_t batch_size = 0;
  double median_ms = 0;  // per batch
  double p90_ms = 0;
  int64_t runs = 0;
};

/// Median latency of one batch of `batch_size` random inputs, after warm-up runs, repeating
/// until `min_seconds` have passed (at least 5 runs).
Latency measure_latency(const Executor& exec, int64_t batch_size, double min_seconds = 0.5);

}  // namespace mcompress::runtime
