#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>

#include "mcompress/core/error.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::runtime {
namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
}  // namespace

EvalResult evaluate(const Executor& exec, const Dataset& data, int64_t batch_size) {
  MCOMPRESS_CHECK(batch_size >= 1, ConfigError, "batch size must be >= 1, got ", batch_size);
  check_dataset(data, exec.input_shape(), exec.num_classes(), "evaluation");
  EvalResult r;
  double loss_sum = 0;
  int64_t correct = 0, batches = 0;
  const auto t0 = Clock::now();
  for (int64_t begin = 0; begin < data.size(); begin += batch_size, ++batches) {
    const int64_t end = std::min(begin + batch_size, data.size());
    const auto y = data.y.slice(0, begin, end);
    const auto logits = exec.run(data.x.slice(0, begin, end));
    loss_sum += at::cross_entropy_loss(logits, y, {}, at::Reduction::Sum).item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  r.seconds = ms_since(t0) / 1000.0;
  r.samples = data.size();
  r.accuracy = static_cast<double>(correct) / static_cast<double>(r.samples);
  r.loss = loss_sum / static_cast<double>(r.samples);
  r.ms_per_batch = r.seconds * 1000.0 / static_cast<double>(batches);
  return r;
}

Latency measure_latency(const Executor& exec, int64_t batch_size, double min_seconds) {
  MCOMPRESS_CHECK(batch_size >= 1, ConfigError, "batch size must be >= 1, got ", batch_size);
  std::vector<int64_t> shape{batch_size};
  for (auto d : exec.input_shape()) shape.push_back(d);
  // A fixed generator: the input values do not matter for dense kernels, but keep runs equal.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(12345);
  const auto x = at::rand(shape, gen, at::kFloat);
  for (int i = 0; i < 3; ++i) exec.run(x);  // warm-up: allocator, oneDNN primitive caches
  std::vector<double> times;
  const auto t0 = Clock::now();
  while (times.size() < 5 || ms_since(t0) < min_seconds * 1000.0) {
    const auto t = Clock::now();
    exec.run(x);
    times.push_back(ms_since(t));
  }
  std::sort(times.begin(), times.end());
  Latency l;
  l.batch_size = batch_size;
  l.runs = static_cast<int64_t>(times.size());
  l.median_ms = times[times.size() / 2];
  l.p90_ms = times[std::min(times.size() - 1, times.size() * 9 / 10)];
  return l;
}

}  // namespace mcompress::runtime
