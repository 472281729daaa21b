#pragma once
// Shared by the bench/ programs: the machine facts every figure is reported with, and a
// reporter that keeps each benchmark's time so ratios can be printed from one run.

#include <benchmark/benchmark.h>

#include <map>
#include <string>

namespace mcompress::bench {

/// "CPU: ..., BLAS core: SkylakeX, threads: 2" — the context of every figure.
std::string machine_summary();

/// benchmark::Initialize, then LibTorch's thread count from --threads=N (default 1, LibTorch's
/// own default here: threads are explicit in every figure).
void initialize(int* argc, char** argv);

/// How every benchmark here runs: at batch 1 and 64 (its argument), wall-clock milliseconds,
/// at least 0.5 s each. Use as `RegisterBenchmark(...)->Apply(bench::at_batch_1_and_64)`.
void at_batch_1_and_64(benchmark::internal::Benchmark* b);

/// Console output as usual, plus the mean real time (ms) of each benchmark by name.
class RecordingReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override;
  double ms(const std::string& name) const;  // 0 when the benchmark did not run
 private:
  std::map<std::string, double> ms_;
};

}  // namespace mcompress::bench
