#pragma once
// Private: the Executor's plan, for every model (a sequential model runs as the graph
// Graph::from_sequential makes of it). The graph is lowered (core/lowering.h): Conv/Gemm with a
// following BatchNormalization run on weights with the batchnorm folded in, a following Relu
// inside the same step (Add + Relu and BatchNormalization + Relu likewise); every other node
// runs GraphNetwork's inference kernel for its op. Steps read and write value slots, so any
// graph (skip connections, several inputs per node) runs.
//
// A step may have other forms beside fp32, as core/int8_steps.h decides for int8 (the ONNX
// exporter follows the same decisions). int8-static: Conv and Gemm steps run oneDNN's
// quantized ops, Add and Concat requantize to their output's calibrated qparams
// (quantized::add/add_relu/cat, as ONNX QLinearAdd/QLinearConcat), and pools, Relu, Clip,
// Flatten, Reshape and the identities run on whatever domain flows in; every other op is an
// fp32 island with explicit dequantize/quantize steps around it. int8-dynamic: Gemm steps run
// quantized::linear_dynamic. Sparse: a Gemm whose weight is sparse enough runs an Eigen CSR
// kernel. The policy picks each step's form (auto: every form timed per step at the
// deployment batch size, then the fastest of the per-step, all-int8, float-only and fp32
// plans, each kMinGain faster than the last to win).

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels.h"
#include "mcompress/core/model.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::runtime {

class GraphPlan {
 public:
  GraphPlan(const Model& model, const ExecutorOptions& options);

  /// Raw first input -> the graph's output, on the chosen plan.
  at::Tensor run(const at::Tensor& input) const { return run(chosen(), input, nullptr); }
  /// The fp32 plan, reporting "input" (after the preprocessing) and every step's output value
  /// by name, in order: what calibration observes.
  at::Tensor run_observed(const at::Tensor& input, const ActivationSink& sink) const {
    return run(fp32_, input, &sink);
  }

  const std::vector<PlanStep>& steps() const { return chosen().shown; }
  /// What the auto policy chose and the timings it chose by ("" otherwise).
  const std::string& plan_note() const { return note_; }
  /// The first input's shape without its batch dimension, and the number of classes.
  const std::vector<int64_t>& input_shape() const { return input_shape_; }
  int64_t num_classes() const { return num_classes_; }

  /// One executable step: a kernel reading value slots and writing one.
  struct Step {
    MultiInputKernel run;
    std::vector<int64_t> inputs;   // value slots
    int64_t output = 0;            // value slot
    std::vector<int64_t> release;  // slots whose last reader is this step
    std::string value;             // the output value's name
    bool observed = true;          // reported by run_observed (calibration needs its range)
  };
  struct Plan {
    std::vector<Step> steps;
    std::vector<PlanStep> shown;
    int64_t input_slot = 0, output_slot = 0, num_slots = 0;
  };

 private:
  const Plan& chosen() const { return use_chosen_ ? chosen_ : fp32_; }
  at::Tensor run(const Plan& plan, const at::Tensor& input, const ActivationSink* sink) const;
  /// (x - mean) / std, or x for a graph without preprocessing.
  at::Tensor preprocess(const at::Tensor& x) const;

  Plan fp32_, chosen_;  // chosen_ is used when use_chosen_: a plan other than all-fp32
  bool use_chosen_ = false;
  std::string note_;
  // Broadcastable over the input; undefined without preprocessing.
  at::Tensor mean_, inv_std_;
  std::vector<int64_t> input_shape_;
  int64_t num_classes_ = 0;
};

}  // namespace mcompress::runtime
