#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>
#include <sstream>

#include "cli.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/table.h"
#include "mcompress/pipeline/registry.h"
#include "mcompress/quant/quantize.h"
#include "mcompress/runtime/executor.h"
#include "stage_flags.h"

namespace mcompress::cli {

int run_quantize(const Args& args) {
  const StageInfo& stage = pipeline::default_registry().find("quantize");
  const quant::QuantizeOptions defaults;
  po::options_description options("quantize options");
  // clang-format off: one option per line reads better than the formatter's packing
  options.add_options()("model", po::value<std::string>()->required(), "fp32 model file (.h5)")(
      "out,o", po::value<std::string>()->required(), "output model file (.h5)")(
      "force", po::bool_switch(), "overwrite an existing output file");
  add_stage_flags(options, stage);
  options.add_options()("calib-batches",
                        po::value<int64_t>()->default_value(defaults.calib_batches),
                        "int8-static and qat: calibration batches")(
      "calib-batch-size", po::value<int64_t>()->default_value(defaults.calib_batch_size),
      "int8-static and qat: calibration batch size")(
      "deploy-batch", po::value<int64_t>()->default_value(64),
      "batch size the runtime tunes its kernel choice for")(
      "seed", po::value<uint64_t>()->default_value(0), "seed of the calibration sample");
  // clang-format on
  add_data_options(options);
  add_threads_option(options);
  add_distributed_options(options);
  po::variables_map vm;
  if (!parse("quantize", "MODEL --out FILE [options]", args, options, vm, "model")) return 0;

  // The recipe's quantize stage, from the same options.
  const std::unique_ptr<Stage> quantizing = stage.make(stage_options(stage_node(vm, stage), stage));
  const int64_t calib_batches = vm["calib-batches"].as<int64_t>();
  const int64_t calib_batch_size = vm["calib-batch-size"].as<int64_t>();
  MCOMPRESS_CHECK(calib_batches >= 1, ConfigError, "--calib-batches must be >= 1, got ",
                  calib_batches);
  MCOMPRESS_CHECK(calib_batch_size >= 1, ConfigError, "--calib-batch-size must be >= 1, got ",
                  calib_batch_size);
  const auto in = vm["model"].as<std::string>();
  const auto out = vm["out"].as<std::string>();
  // Every rank calibrates or trains its share; only rank 0 checks the output, reports, writes.
  const bool root = apply_distributed(vm);
  if (root) check_output_path(out, vm["force"].as<bool>(), {in});
  runtime::ExecutorOptions deploy;
  deploy.batch_size = vm["deploy-batch"].as<int64_t>();
  const int threads = apply_threads(vm);
  const uint64_t seed = vm["seed"].as<uint64_t>();

  Model model = load_model(in);
  const Model original = model.clone();
  const Dataset train = load_data(vm, Split::kTrain);
  const auto [calib_pool, val] = split_train_val(train, 0.1, seed);
  const auto order = shuffled_indices(calib_pool.size(), seed);
  const int64_t n_calib = std::min<int64_t>(calib_pool.size(), calib_batches * calib_batch_size);
  const Dataset calib =
      calib_pool.subset(std::vector<int64_t>(order.begin(), order.begin() + n_calib));
  const Dataset test = load_data(vm, Split::kTest);

  // qat and codebook fine-tune on the training data less the validation split.
  StageContext ctx{calib_pool, val, calib, seed, threads};
  ctx.calib_batch_size = calib_batch_size;
  const StageReport done = quantizing->apply(model, ctx);
  const auto& report = std::any_cast<const quant::QuantizeReport&>(done.detail);
  if (!root) return 0;
  runtime::ExecutorOptions fp32_options = deploy;
  fp32_options.policy = runtime::KernelPolicy::kFp32;
  const auto before = runtime::evaluate(runtime::Executor(original, fp32_options), test);
  runtime::Executor exec(model, deploy);
  const auto after = runtime::evaluate(exec, test);

  auto record = nlohmann::json::parse(report.to_json());
  auto& metrics = record["metrics"];  // merged with the mode's own figures
  metrics["test_accuracy_before"] = before.accuracy;
  metrics["test_accuracy_after"] = after.accuracy;
  metrics["int8_layers"] = exec.int8_layers();
  model.history.push_back(record.dump());
  SaveOptions save;
  save.overwrite = vm["force"].as<bool>();
  save_model(model, out, save);

  if (!report.comparison.empty()) {
    Table cmp({"observer", "val_accuracy"});
    for (const auto& s : report.comparison)
      cmp.add_row({s.observer, format_fixed(s.val_accuracy * 100, 2)});
    std::cout << cmp.to_text() << "kept: " << report.observer << "\n\n";
  }
  print_plan(std::cout, exec, deploy, threads);
  for (const auto& w : report.warnings) std::cout << "warning: " << w << "\n";

  const auto in_bytes = static_cast<double>(std::filesystem::file_size(in));
  const auto out_bytes = static_cast<double>(std::filesystem::file_size(out));
  Table summary({"", "accuracy", "loss", "file_size"});
  summary.add_row({"before (fp32)", format_fixed(before.accuracy * 100, 2),
                   format_fixed(before.loss, 4), format_bytes(in_bytes)});
  summary.add_row({"after (" + report.mode + ")", format_fixed(after.accuracy * 100, 2),
                   format_fixed(after.loss, 4), format_bytes(out_bytes)});
  std::cout << "\n"
            << summary.to_text() << "size ratio " << format_fixed(in_bytes / out_bytes, 2)
            << "x; saved " << out << std::endl;
  return 0;
}

}  // namespace mcompress::cli
