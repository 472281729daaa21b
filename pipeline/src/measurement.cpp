#include "measurement.h"

#include <algorithm>
#include <limits>
#include <tuple>
#include <utility>

#include "mcompress/core/table.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::pipeline::detail {
namespace {

namespace fs = std::filesystem;

constexpr double kSlowerThreshold = 1.10;  // latency ratios below this are timing noise

// Parameters (conv/linear/batchnorm weights and biases; not running statistics) and their
// non-zeros.
std::pair<int64_t, int64_t> count_parameters(const Model& model) {
  int64_t total = 0, nonzero = 0;
  for (const auto& info : model.tensor_infos()) {
    if (info.role != TensorRole::kWeight && info.role != TensorRole::kBias) continue;
    const auto& t = model.tensor(info.name);
    total += t.numel();
    nonzero += t.count_nonzero().item<int64_t>();
  }
  return {total, nonzero};
}

// The latencies of `before` and `after` at one batch size measured side by side, alternating
// three times and keeping each model's fastest median: a stage's row and the previous row
// were measured minutes apart, and a busy machine in between looks like a slower model.
std::pair<double, double> latency_side_by_side(const Model& before, const Model& after,
                                               int64_t batch, double seconds) {
  runtime::ExecutorOptions options;
  options.batch_size = batch;
  const runtime::Executor a(before, options), b(after, options);
  double was = std::numeric_limits<double>::max(), now = was;
  for (int round = 0; round < 3; ++round) {
    was = std::min(was, runtime::measure_latency(a, batch, seconds).median_ms);
    now = std::min(now, runtime::measure_latency(b, batch, seconds).median_ms);
  }
  return {was, now};
}

}  // namespace

StageRow measure(const Model& model, const std::string& file, const RunData& data,
                 const Recipe& recipe, const RunOptions& o) {
  StageRow row;
  row.file_bytes = static_cast<int64_t>(fs::file_size(file));
  std::tie(row.parameters, row.nonzeros) = count_parameters(model);
  runtime::ExecutorOptions deploy;
  deploy.batch_size = recipe.deploy_batch;
  const runtime::Executor exec(model, deploy);
  const auto test = runtime::evaluate(exec, data.test);
  row.test_accuracy = test.accuracy;
  row.test_loss = test.loss;
  row.val_accuracy = runtime::evaluate(exec, data.val).accuracy;
  // Latency with the kernels the auto policy picks for each batch size.
  runtime::ExecutorOptions b1 = deploy, b64 = deploy;
  b1.batch_size = 1;
  b64.batch_size = 64;
  row.latency_b1_ms =
      runtime::measure_latency(runtime::Executor(model, b1), 1, o.latency_seconds).median_ms;
  row.latency_b64_ms =
      recipe.deploy_batch == 64
          ? runtime::measure_latency(exec, 64, o.latency_seconds).median_ms
          : runtime::measure_latency(runtime::Executor(model, b64), 64, o.latency_seconds)
                .median_ms;
  return row;
}

// "Did not pay off" flags against the previous kept row (`before` is its model). Every stage
// is timed again side by side with the previous model, and flagged when it is slower there;
// the flag gives the side-by-side figures.
void flag(StageRow& row, const StageRow& previous, const Model& before, const Model& after,
          double seconds) {
  if (row.file_bytes >= previous.file_bytes) {
    row.flags.push_back(
        "not smaller on disk: " + format_bytes(static_cast<double>(previous.file_bytes)) + " -> " +
        format_bytes(static_cast<double>(row.file_bytes)));
  }
  auto slower = [&](int64_t batch, double was, double now) {
    // Rows measured apart mislead both ways (a busy moment inflates either one; in CI a start
    // row inflated to 6.5 ms at batch 64 made a model 424 times larger look 1.6x faster), so
    // no row pair is trusted.
    if (was <= 0 || now <= 0) return;
    std::tie(was, now) = latency_side_by_side(before, after, batch, seconds);
    if (now <= was * kSlowerThreshold) return;
    row.flags.push_back("slower at batch " + std::to_string(batch) + ": " + format_fixed(was, 3) +
                        " -> " + format_fixed(now, 3) + " ms (+" +
                        format_fixed((now / was - 1) * 100, 0) + "%, timed side by side)");
  };
  slower(1, previous.latency_b1_ms, row.latency_b1_ms);
  slower(64, previous.latency_b64_ms, row.latency_b64_ms);
}

// "" when within the guards, else why not.
std::string guard_violation(const StageRow& row, const StageRow& previous, const StageRow& start,
                            const RecipeStage& stage, const Recipe& recipe) {
  auto check = [&](const GuardConfig& g, const StageRow& ref, const std::string& what,
                   const std::string& option) -> std::string {
    if (g.max_accuracy_drop < 0) return "";
    const double drop = (ref.val_accuracy - row.val_accuracy) * 100;
    if (drop <= g.max_accuracy_drop) return "";
    return "validation accuracy " + format_fixed(row.val_accuracy * 100, 2) + "% is " +
           format_fixed(drop, 2) + " points below " + what + " (" +
           format_fixed(ref.val_accuracy * 100, 2) + "%), more than " + option + " " +
           format_fixed(g.max_accuracy_drop, 2);
  };
  std::string why = check(stage.guard, previous, "the previous stage's",
                          stage.path.substr(0, stage.path.rfind('.')) + ".guard.max_accuracy_drop");
  if (why.empty()) why = check(recipe.guard, start, "the start model's", "guard.max_accuracy_drop");
  return why;
}

}  // namespace mcompress::pipeline::detail
