#pragma once
// Private: how the Executor times kernels and plans to choose between them.

#include <algorithm>
#include <chrono>

namespace mcompress::runtime {

/// How much faster an alternative must be to replace the kernel or plan it competes with. Two
/// kernels within timing noise of each other would otherwise swap places from run to run, and
/// with them the accuracy of the model (int8 and fp32 kernels round differently): the same
/// file scored 89.69% and 89.75% in two runs of the results table.
inline constexpr double kMinGain = 1.10;

/// Fastest of at least 10 runs (and ~50 ms) of f(), after warm-up. The minimum, not the median:
/// on a busy machine preemption only ever adds time, and a kernel choice must not flip because
/// another process got the core for a few milliseconds.
template <typename F>
double best_ms(F&& f) {
  using Clock = std::chrono::steady_clock;
  for (int i = 0; i < 3; ++i) f();
  double best = 1e300;
  int runs = 0;
  const auto t0 = Clock::now();
  while (runs < 10 ||
         (runs < 500 && std::chrono::duration<double>(Clock::now() - t0).count() < 0.05)) {
    const auto t = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::milli>(Clock::now() - t).count());
    ++runs;
  }
  return best;
}

}  // namespace mcompress::runtime
