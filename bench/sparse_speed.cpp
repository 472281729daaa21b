// Sparse vs dense fp32 Linear in the deployable runtime, in one run: a 1024x1024 Linear (+bias)
// at batch 1 and 64, across weight densities, on the runtime's own kernels (LibTorch addmm on
// OpenBLAS for dense, the Eigen CSR kernel for sparse). Prints the dense/sparse speed-up per
// density and batch, the crossover density per batch (the largest density measured at which
// sparse is faster), and what the executor's auto policy picks for a 95%-sparse layer.
// Zeros are at random positions, as unstructured magnitude pruning leaves them.
//
// usage: bench/run.sh bench_sparse [--threads=N]   (sets OPENBLAS_CORETYPE on AVX-512 machines)

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "bench_support.h"
#include "kernels.h"  // runtime/src: the kernels the executor's plans are made of
#include "mcompress/runtime/executor.h"

namespace mcompress::bench {
namespace {

constexpr int64_t kFeatures = 1024;
const std::vector<double> kDensities = {1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02};
const std::vector<int64_t> kBatches = {1, 64};

// A [1024, 1024] weight with `density` of its entries non-zero, at random positions.
runtime::AffineWeights random_weights(double density) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  at::Tensor w = at::randn({kFeatures, kFeatures}, gen, at::kFloat);
  w.mul_(at::rand({kFeatures, kFeatures}, gen, at::kFloat).lt(density));
  return {w, at::randn({kFeatures}, gen, at::kFloat)};
}

std::string density_name(double density) {
  std::ostringstream s;
  s << density;
  return s.str();
}

void run_kernel(benchmark::State& state, const runtime::Kernel* kernel) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const auto x = at::randn({state.range(0), kFeatures}, gen, at::kFloat);
  for (auto _ : state) benchmark::DoNotOptimize(kernel->run(x));
}

std::string benchmark_name(const char* kind, double density, int64_t batch) {
  return std::string("linear1024/") + kind + "/density:" + density_name(density) + "/" +
         std::to_string(batch) + "/min_time:0.500/real_time";
}

std::string cell(double value, const char* suffix) {
  std::ostringstream s;
  if (value > 0) {
    s << std::fixed << std::setprecision(3) << value << suffix;
  } else {
    s << "-";
  }
  return s.str();
}

void print_ratios(const RecordingReporter& reporter) {
  std::cout << "\nspeed-up of sparse over dense fp32 (dense time / sparse time), measured in this "
               "run:\n"
            << std::left << std::setw(10) << "density";
  for (int64_t b : kBatches) {
    const std::string batch = "b" + std::to_string(b);
    std::cout << std::right << std::setw(14) << (batch + " dense") << std::setw(14)
              << (batch + " sparse") << std::setw(12) << (batch + " ratio");
  }
  std::cout << "\n";
  std::vector<double> crossover(kBatches.size(), 0.0);
  for (double d : kDensities) {
    std::cout << std::left << std::setw(10) << density_name(d) << std::right;
    for (size_t i = 0; i < kBatches.size(); ++i) {
      const double dense = reporter.ms(benchmark_name("dense", d, kBatches[i]));
      const double sparse = reporter.ms(benchmark_name("sparse", d, kBatches[i]));
      const double ratio = dense > 0 && sparse > 0 ? dense / sparse : 0;
      std::cout << std::setw(14) << cell(dense, " ms") << std::setw(14) << cell(sparse, " ms")
                << std::setw(12) << cell(ratio, "x");
      if (ratio > 1.0 && d > crossover[i]) crossover[i] = d;
    }
    std::cout << "\n";
  }
  std::cout << "\ncrossover (largest density measured at which sparse is faster):\n";
  for (size_t i = 0; i < kBatches.size(); ++i) {
    std::cout << "  batch " << kBatches[i] << ": "
              << (crossover[i] > 0 ? density_name(crossover[i])
                                   : std::string("none (dense faster at every density)"))
              << "\n";
  }
  const double dense = reporter.ms(benchmark_name("dense", 0.05, 1));
  const double sparse = reporter.ms(benchmark_name("sparse", 0.05, 1));
  if (dense > 0 && sparse > 0) {
    std::cout << "95%-sparse at batch 1: " << std::fixed << std::setprecision(2) << dense / sparse
              << "x faster than dense fp32 (target: >= 3x)\n";
  }
}

// What the executor's auto policy decides for one 95%-sparse Linear, as `eval --plan` shows it.
void print_auto_choice() {
  const auto w = random_weights(0.05);
  Model m = Model::initialize(
      ArchSpec::from_json_text(R"({"name":"linear1024","input_shape":[1024],"num_classes":1024,
        "layers":[{"type":"linear","out_features":1024}]})"),
      0);
  m.tensor("0.weight").copy_(w.weight);
  m.tensor("0.bias").copy_(w.bias);
  std::cout << "\nexecutor auto policy, one 1024x1024 Linear at density 0.05:\n";
  for (int64_t b : kBatches) {
    runtime::ExecutorOptions o;
    o.batch_size = b;
    const runtime::Executor exec(m, o);
    for (const auto& s : exec.plan()) {
      if (s.op.rfind("Gemm", 0) != 0) continue;  // the plan names steps by their ONNX ops
      std::cout << "  batch " << b << ": " << s.kernel << " (dense " << cell(s.fp32_ms, " ms")
                << ", sparse " << cell(s.sparse_ms, " ms") << "; " << s.note << ")\n";
    }
  }
}

}  // namespace
}  // namespace mcompress::bench

int main(int argc, char** argv) {
  using namespace mcompress;
  bench::initialize(&argc, argv);

  std::vector<runtime::KernelPtr> kernels;  // outlive the benchmarks that point at them
  for (double d : bench::kDensities) {
    const auto w = bench::random_weights(d);
    kernels.push_back(runtime::make_linear_fp32(w, false));
    kernels.push_back(runtime::make_linear_sparse_fp32(w, false));
    for (const char* kind : {"dense", "sparse"}) {
      const std::string name =
          std::string("linear1024/") + kind + "/density:" + bench::density_name(d);
      benchmark::RegisterBenchmark(name.c_str(), bench::run_kernel,
                                   kernels[kernels.size() - (kind[0] == 'd' ? 2 : 1)].get())
          ->Apply(bench::at_batch_1_and_64);
    }
  }
  std::cout << bench::machine_summary() << std::endl;
  bench::RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  bench::print_ratios(reporter);
  bench::print_auto_choice();
  std::cout << bench::machine_summary() << std::endl;
  return 0;
}
