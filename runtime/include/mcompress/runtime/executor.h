#pragma once
// The deployable executor: compiles a Model into a per-layer plan of kernels and runs it.
// Every reported metric (eval, reports, benchmarks) goes through it, so the figures are those
// of the model a user would deploy, not of the training-time network.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mcompress/core/dataset.h"
#include "mcompress/core/model.h"

namespace mcompress::runtime {

/// One step of the compiled plan, as `eval` and reports show it.
struct PlanStep {
  std::string layers;  // spec layer indices it covers, e.g. "0-2"
  std::string op;      // "conv2d+bn+relu", "linear", "maxpool2d", ...
  std::string kernel;  // "fp32-dense", ...
  std::string note;    // why this kernel, folded layers, ...
};

struct ExecutorOptions {
  /// The batch size the model will be deployed at; kernel choices may depend on it.
  int64_t batch_size = 64;
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

  const std::vector<PlanStep>& plan() const;
  const ArchSpec& spec() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct EvalResult {
  double accuracy = 0;  // fraction in [0, 1]
  double loss = 0;      // mean cross-entropy
  int64_t samples = 0;
  double seconds = 0;   // wall time of all batches
  double ms_per_batch = 0;
};

/// Accuracy, loss and time of `exec` over `data` in batches of `batch_size`. DataError for
/// an empty data set or one whose examples or labels do not fit the model.
EvalResult evaluate(const Executor& exec, const Dataset& data, int64_t batch_size = 256);

struct Latency {
  int64_t batch_size = 0;
  double median_ms = 0;   // per batch
  double p90_ms = 0;
  int64_t runs = 0;
};

/// Median latency of one batch of `batch_size` random inputs, after warm-up runs, repeating
/// until `min_seconds` have passed (at least 5 runs).
Latency measure_latency(const Executor& exec, int64_t batch_size, double min_seconds = 0.5);

}  // namespace mcompress::runtime
