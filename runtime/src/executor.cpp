#include "mcompress/runtime/executor.h"

#include <ATen/ATen.h>

#include "graph_plan.h"
#include "mcompress/core/enum_names.h"
#include "mcompress/core/error.h"

namespace mcompress::runtime {

constexpr std::array<EnumName<KernelPolicy>, 4> kKernelPolicies = {
    {{KernelPolicy::kAuto, "auto"},
     {KernelPolicy::kInt8, "int8"},
     {KernelPolicy::kFp32, "fp32"},
     {KernelPolicy::kSparse, "sparse"}}};

std::string to_string(KernelPolicy p) { return enum_to_string(kKernelPolicies, p); }
KernelPolicy parse_kernel_policy(const std::string& name) {
  return parse_enum<ConfigError>(kKernelPolicies, name, "kernel policy");
}

// Every model runs as a graph (a sequential one as Graph::from_sequential makes it).
struct Executor::Impl {
  std::unique_ptr<GraphPlan> plan;
};

Executor::Executor(const Model& model, const ExecutorOptions& options)
    : impl_(std::make_unique<Impl>()) {
  MCOMPRESS_CHECK(options.batch_size >= 1, ConfigError, "deployment batch size must be >= 1, got ",
                  options.batch_size);
  impl_->plan = std::make_unique<GraphPlan>(model, options);
}

Executor::~Executor() = default;
Executor::Executor(Executor&&) noexcept = default;
Executor& Executor::operator=(Executor&&) noexcept = default;

const std::vector<PlanStep>& Executor::plan() const { return impl_->plan->steps(); }
const std::vector<int64_t>& Executor::input_shape() const { return impl_->plan->input_shape(); }
int64_t Executor::num_classes() const { return impl_->plan->num_classes(); }
const std::string& Executor::plan_note() const { return impl_->plan->plan_note(); }

int64_t Executor::int8_layers() const {
  int64_t n = 0;
  for (const auto& s : impl_->plan->steps())
    n += s.kernel == "int8-static" || s.kernel == "int8-dynamic";
  return n;
}

int64_t Executor::sparse_layers() const {
  int64_t n = 0;
  for (const auto& s : impl_->plan->steps()) n += s.kernel == "fp32-sparse";
  return n;
}

static void check_input(const std::vector<int64_t>& shape, const at::Tensor& input) {
  MCOMPRESS_CHECK(input.dim() == static_cast<int64_t>(shape.size()) + 1 &&
                      input.sizes().slice(1).vec() == shape,
                  ModelError, "input has shape ", shape_to_string(input.sizes().vec()),
                  ", the model expects [N, ", shape_to_string(shape).substr(1));
}

at::Tensor Executor::run(const at::Tensor& input) const {
  check_input(impl_->plan->input_shape(), input);
  at::NoGradGuard no_grad;
  return impl_->plan->run(input);
}

at::Tensor Executor::run_observed(
    const at::Tensor& input,
    const std::function<void(const std::string&, const at::Tensor&)>& sink) const {
  check_input(impl_->plan->input_shape(), input);
  at::NoGradGuard no_grad;
  return impl_->plan->run_observed(input, sink);
}

}  // namespace mcompress::runtime
