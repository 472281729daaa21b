#include <iostream>

#include "cli.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/table.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::cli {

int run_eval(const Args& args) {
  po::options_description options("eval options");
  options.add_options()
      ("model", po::value<std::string>()->required(), "model file (.h5)")
      ("batch", po::value<int64_t>()->default_value(256), "evaluation batch size")
      ("latency-batch", po::value<std::vector<int64_t>>()->multitoken()->default_value({1, 64}, "1 64"),
       "batch sizes to measure latency at (empty: skip)")
      ("split", po::value<std::string>()->default_value("test"), "train or test")
      ("plan", po::bool_switch(), "print the runtime's per-layer kernel plan");
  add_data_options(options);
  add_threads_option(options);
  po::positional_options_description positional;
  positional.add("model", 1);
  po::variables_map vm;
  if (!parse("eval", "MODEL [options]", args, options, vm, &positional)) return 0;
  const auto split_name = vm["split"].as<std::string>();
  MCOMPRESS_CHECK(split_name == "test" || split_name == "train", ConfigError,
                  "--split must be train or test, got '", split_name, "'");
  const int64_t batch = vm["batch"].as<int64_t>();
  MCOMPRESS_CHECK(batch >= 1, ConfigError, "--batch must be >= 1, got ", batch);
  const int threads = apply_threads(vm);

  const Model model = load_model(vm["model"].as<std::string>());
  const Dataset data = load_data(vm, split_name == "test" ? Split::kTest : Split::kTrain);
  runtime::Executor exec(model);
  const auto r = runtime::evaluate(exec, data, batch);

  Table table({"model", "samples", "accuracy", "loss", "eval_time", "threads"});
  table.add_row({model.spec().name, std::to_string(r.samples), format_fixed(r.accuracy * 100, 2),
                 format_fixed(r.loss, 4), format_fixed(r.seconds, 2) + "s",
                 std::to_string(threads)});
  std::cout << table.to_text();

  const auto latency_batches = vm["latency-batch"].as<std::vector<int64_t>>();
  if (!latency_batches.empty()) {
    Table latency({"batch", "median_ms", "p90_ms", "runs", "ms_per_example"});
    for (int64_t b : latency_batches) {
      const auto l = runtime::measure_latency(exec, b);
      latency.add_row({std::to_string(b), format_fixed(l.median_ms, 3), format_fixed(l.p90_ms, 3),
                       std::to_string(l.runs),
                       format_fixed(l.median_ms / static_cast<double>(b), 4)});
    }
    std::cout << "\n" << latency.to_text();
  }
  if (vm["plan"].as<bool>()) {
    Table plan({"layers", "op", "kernel", "note"});
    for (const auto& step : exec.plan()) plan.add_row({step.layers, step.op, step.kernel, step.note});
    std::cout << "\n" << plan.to_text();
  }
  return 0;
}

}  // namespace mcompress::cli
