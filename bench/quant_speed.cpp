// int8 vs fp32 latency of the deployable runtime, in one run:
//   - int8-static on the convnet zoo model (conv layers on quantized::conv2d),
//   - int8-dynamic on a stack of 1024x1024 Linear layers (quantized::linear_dynamic),
// at batch 1 and 64, each against the fp32 plan of the same weights. Weights are random
// (speed does not depend on them); static ranges come from a calibration pass.
//
// usage: bench/run.sh bench_quant   (sets OPENBLAS_CORETYPE on AVX-512 machines)

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <ATen/Parallel.h>

#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include "bench_support.h"
#include "mcompress/core/zoo.h"
#include "mcompress/quant/quantize.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::bench {
namespace {

ArchSpec linear_stack() {
  return ArchSpec::from_json_text(R"({"name":"linear-stack-1024","input_shape":[1024],
    "num_classes":10,"layers":[{"type":"linear","out_features":1024},{"type":"relu"},
    {"type":"linear","out_features":1024},{"type":"relu"},{"type":"linear","out_features":1024},
    {"type":"relu"},{"type":"linear","out_features":10}]})");
}

Dataset random_data(const ArchSpec& spec, int64_t n) {
  std::vector<int64_t> shape{n};
  for (auto d : spec.input_shape) shape.push_back(d);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  Dataset d;
  d.x = at::rand(shape, gen, at::kFloat);
  d.y = at::zeros({n}, at::kLong);
  d.source = "random";
  return d;
}

Model quantized(const ArchSpec& spec, quant::QuantMode mode) {
  Model m = Model::initialize(spec, 0);
  quant::QuantizeOptions o;
  o.mode = mode;
  o.calib_batches = 4;
  const auto data = random_data(spec, 256);
  quant::quantize_model(m, o, data, data);
  return m;
}

void run_plan(benchmark::State& state, const Model* model, runtime::KernelPolicy policy) {
  const int64_t batch = state.range(0);
  runtime::ExecutorOptions o;
  o.policy = policy;
  o.batch_size = batch;
  const runtime::Executor exec(*model, o);
  const auto x = random_data(model->spec(), batch).x;
  for (auto _ : state) benchmark::DoNotOptimize(exec.run(x));
  state.counters["int8_layers"] = static_cast<double>(exec.int8_layers());
}

}  // namespace
}  // namespace mcompress::bench

int main(int argc, char** argv) {
  using namespace mcompress;
  using runtime::KernelPolicy;
  bench::initialize(&argc, argv);
  static const Model convnet = bench::quantized(zoo_spec("convnet"), quant::QuantMode::kInt8Static);
  static const Model stack =
      bench::quantized(bench::linear_stack(), quant::QuantMode::kInt8Dynamic);
  struct Case {
    const char* name;
    const Model* model;
    KernelPolicy policy;
  };
  const Case cases[] = {{"convnet/fp32", &convnet, KernelPolicy::kFp32},
                        {"convnet/int8-static", &convnet, KernelPolicy::kInt8},
                        {"convnet/int8-auto", &convnet, KernelPolicy::kAuto},
                        {"linear1024/fp32", &stack, KernelPolicy::kFp32},
                        {"linear1024/int8-dynamic", &stack, KernelPolicy::kInt8},
                        {"linear1024/int8-auto", &stack, KernelPolicy::kAuto}};
  for (const auto& c : cases) {
    benchmark::RegisterBenchmark(c.name, bench::run_plan, c.model, c.policy)
        ->Apply(bench::at_batch_1_and_64);
  }
  std::cout << bench::machine_summary() << std::endl;
  bench::RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  std::cout << "\nspeed-up over fp32 (fp32 time / int8 time), measured in this run:\n";
  std::cout << std::left << std::setw(26) << "case" << std::right << std::setw(10) << "batch 1"
            << std::setw(10) << "batch 64"
            << "\n";
  const std::pair<const char*, const char*> pairs[] = {{"convnet", "int8-static"},
                                                       {"convnet", "int8-auto"},
                                                       {"linear1024", "int8-dynamic"},
                                                       {"linear1024", "int8-auto"}};
  for (const auto& [model, policy] : pairs) {
    {
      std::cout << std::left << std::setw(26) << (std::string(model) + "/" + policy) << std::right;
      bool any = false;
      for (int batch : {1, 64}) {
        const auto suffix = "/" + std::to_string(batch) + "/min_time:0.500/real_time";
        const double fp32 = reporter.ms(std::string(model) + "/fp32" + suffix);
        const double int8 = reporter.ms(std::string(model) + "/" + policy + suffix);
        std::ostringstream cell;
        if (fp32 > 0 && int8 > 0) {
          cell << std::fixed << std::setprecision(2) << fp32 / int8 << "x";
          any = true;
        } else {
          cell << "-";
        }
        std::cout << std::setw(10) << cell.str();
      }
      std::cout << (any ? "\n" : " (not run)\n");
    }
  }
  std::cout << bench::machine_summary() << std::endl;
  return 0;
}
