#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/table.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::cli {
namespace {

// --latency-batch's values: batch sizes, where an empty value (`--latency-batch ""`, like a
// bare `--latency-batch`) measures none.
std::vector<int64_t> latency_batch_sizes(const std::vector<std::string>& values) {
  std::vector<int64_t> sizes;
  for (const auto& v : values) {
    if (v.empty()) continue;
    size_t used = 0;
    int64_t size = 0;
    try {
      size = std::stoll(v, &used);
    } catch (const std::logic_error&) {
      used = 0;
    }
    MCOMPRESS_CHECK(used == v.size() && size >= 1, ConfigError,
                    "--latency-batch expects batch sizes >= 1 (or nothing), got '", v, "'");
    sizes.push_back(size);
  }
  return sizes;
}

}  // namespace

int run_eval(const Args& args) {
  po::options_description options("eval options");
  // clang-format off: one option per line reads better than the formatter's packing
  options.add_options()("model", po::value<std::string>()->required(), "model file (.h5)")(
      "batch", po::value<int64_t>()->default_value(256), "evaluation batch size")(
      "latency-batch",
      po::value<std::vector<std::string>>()->multitoken()->zero_tokens()->default_value({"1", "64"},
                                                                                        "1 64"),
      "batch sizes to measure latency at (empty: skip)")(
      "split", po::value<std::string>()->default_value("test"), "train or test")(
      "policy", po::value<std::string>()->default_value("auto"),
      "kernel policy for layers with an int8 or sparse form: auto (fastest, timed), int8, "
      "fp32 (dense everywhere), sparse (Eigen kernel for Linear layers of density <= 0.5)")(
      "deploy-batch", po::value<int64_t>()->default_value(64),
      "batch size the auto policy tunes for (accuracy run)")(
      "plan", po::bool_switch(), "print the runtime's per-step kernel plan")(
      "json", po::bool_switch(), "print one JSON object instead of tables (for scripts)");
  // clang-format on
  add_data_options(options);
  add_threads_option(options);
  po::variables_map vm;
  if (!parse("eval", "MODEL [options]", args, options, vm, "model")) return 0;
  const std::vector<int64_t> latency_batches =
      latency_batch_sizes(vm["latency-batch"].as<std::vector<std::string>>());
  const auto split_name = vm["split"].as<std::string>();
  MCOMPRESS_CHECK(split_name == "test" || split_name == "train", ConfigError,
                  "--split must be train or test, got '", split_name, "'");
  const int64_t batch = vm["batch"].as<int64_t>();
  MCOMPRESS_CHECK(batch >= 1, ConfigError, "--batch must be >= 1, got ", batch);
  runtime::ExecutorOptions eo;
  eo.policy = runtime::parse_kernel_policy(vm["policy"].as<std::string>());
  eo.batch_size = vm["deploy-batch"].as<int64_t>();
  const int threads = apply_threads(vm);

  const Model model = load_model(vm["model"].as<std::string>());
  const Dataset data = load_data(vm, split_name == "test" ? Split::kTest : Split::kTrain);
  runtime::Executor exec(model, eo);
  const auto r = runtime::evaluate(exec, data, batch);

  const bool json = vm["json"].as<bool>();
  nlohmann::json doc = {{"model", vm["model"].as<std::string>()},
                        {"arch", model.name()},
                        {"quant_mode", model.quant.mode},
                        {"samples", r.samples},
                        {"accuracy", r.accuracy},
                        {"loss", r.loss},
                        {"threads", threads},
                        {"file_bytes", std::filesystem::file_size(vm["model"].as<std::string>())},
                        {"latency", nlohmann::json::array()}};
  Table table({"model", "samples", "accuracy", "loss", "eval_time", "threads"});
  table.add_row({model.name(), std::to_string(r.samples), format_fixed(r.accuracy * 100, 2),
                 format_fixed(r.loss, 4), format_fixed(r.seconds, 2) + "s",
                 std::to_string(threads)});
  if (!json) std::cout << table.to_text();

  if (!latency_batches.empty()) {
    // Each batch size gets an executor tuned for it, and the fp32 plan of the same model is
    // timed alongside, so the speed-up is measured in one run.
    Table latency(
        {"batch", "median_ms", "p90_ms", "fp32_ms", "speedup", "int8_layers", "sparse_layers"});
    for (int64_t b : latency_batches) {
      runtime::ExecutorOptions tuned = eo, fp32 = eo;
      tuned.batch_size = fp32.batch_size = b;
      fp32.policy = runtime::KernelPolicy::kFp32;
      const runtime::Executor at_b(model, tuned);
      const auto l = runtime::measure_latency(at_b, b);
      const auto base = runtime::measure_latency(runtime::Executor(model, fp32), b);
      latency.add_row({std::to_string(b), format_fixed(l.median_ms, 3), format_fixed(l.p90_ms, 3),
                       format_fixed(base.median_ms, 3),
                       format_fixed(base.median_ms / l.median_ms, 2) + "x",
                       std::to_string(at_b.int8_layers()), std::to_string(at_b.sparse_layers())});
      doc["latency"].push_back({{"batch", b},
                                {"median_ms", l.median_ms},
                                {"fp32_median_ms", base.median_ms},
                                {"speedup", base.median_ms / l.median_ms},
                                {"int8_layers", at_b.int8_layers()},
                                {"sparse_layers", at_b.sparse_layers()}});
    }
    if (!json) std::cout << "\n" << latency.to_text();
  }
  if (json) {
    std::cout << doc.dump() << std::endl;
    return 0;
  }
  if (vm["plan"].as<bool>()) {
    std::cout << "\n";
    print_plan(std::cout, exec, eo, threads);
  }
  return 0;
}

}  // namespace mcompress::cli
