#include "bench_support.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <fstream>

namespace mcompress::bench {

std::string machine_summary() {
  std::string cpu = "unknown";
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);) {
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  // OpenBLAS reports the kernel set it picked; the fp32 baseline is only honest on the
  // native one (OPENBLAS_CORETYPE=SkylakeX on AVX-512 machines its 0.3.21 does not know).
  using CoreName = char* (*)();
  auto core = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  const std::string blas = core != nullptr ? core() : "not OpenBLAS";
  return "CPU: " + cpu + ", BLAS core: " + blas +
         ", threads: " + std::to_string(at::get_num_threads());
}

void initialize(int* argc, char** argv) {
  benchmark::Initialize(argc, argv);
  int threads = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--threads=", 0) == 0) threads = std::stoi(arg.substr(10));
  }
  at::set_num_threads(threads);
}

void at_batch_1_and_64(benchmark::internal::Benchmark* b) {
  b->Arg(1)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
}

void RecordingReporter::ReportRuns(const std::vector<Run>& runs) {
  for (const auto& run : runs) {
    if (run.run_type != Run::RT_Iteration || run.iterations == 0) continue;
    // GetAdjustedRealTime is in run.time_unit; the multiplier converts seconds into it.
    ms_[run.benchmark_name()] =
        run.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(run.time_unit) * 1e3;
  }
  ConsoleReporter::ReportRuns(runs);
}

double RecordingReporter::ms(const std::string& name) const {
  auto it = ms_.find(name);
  return it == ms_.end() ? 0.0 : it->second;
}

}  // namespace mcompress::bench
