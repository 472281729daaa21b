#pragma once
// Private: the Executor's plan for a graph model. The graph is lowered (core/lowering.h):
// Conv/Gemm with a following BatchNormalization run on weights with the batchnorm folded in,
// a following Relu inside the same step; every other node runs GraphNetwork's inference kernel
// for its op. Steps read and write value slots, so any graph (skip connections, several
// inputs per node) runs. fp32 only for now: graph models have no int8 form yet.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "kernels.h"
#include "mcompress/core/model.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::runtime {

class GraphPlan {
 public:
  explicit GraphPlan(const Model& model);

  /// Raw first input -> the graph's output; with a sink, "input" (after the preprocessing) and
  /// every step's output value by name are reported, in order.
  at::Tensor run(const at::Tensor& input, const ActivationSink* sink = nullptr) const;

  const std::vector<PlanStep>& steps() const { return shown_; }
  /// The first input's shape without its batch dimension, and the number of classes.
  const std::vector<int64_t>& input_shape() const { return input_shape_; }
  int64_t num_classes() const { return num_classes_; }

 private:
  struct Step {
    std::function<at::Tensor(const std::vector<at::Tensor>&)> run;
    std::vector<int64_t> inputs;   // value slots
    int64_t output = 0;            // value slot
    std::vector<int64_t> release;  // slots whose last reader is this step
    std::string value;             // the output value's name
  };

  std::vector<Step> steps_;
  std::vector<PlanStep> shown_;
  at::Tensor mean_, std_;  // broadcastable over the input; undefined without preprocessing
  int64_t input_slot_ = 0, output_slot_ = 0, num_slots_ = 0;
  std::vector<int64_t> input_shape_;
  int64_t num_classes_ = 0;
};

}  // namespace mcompress::runtime
