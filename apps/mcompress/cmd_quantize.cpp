#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>
#include <sstream>

#include "cli.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/table.h"
#include "mcompress/quant/codebook.h"
#include "mcompress/quant/qat.h"
#include "mcompress/quant/quantize.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::cli {

int run_quantize(const Args& args) {
  quant::QuantizeOptions q;
  po::options_description options("quantize options");
  // clang-format off: one option per line reads better than the formatter's packing
  options.add_options()("model", po::value<std::string>()->required(), "fp32 model file (.h5)")(
      "out,o", po::value<std::string>()->required(), "output model file (.h5)")(
      "force", po::bool_switch(), "overwrite an existing output file")(
      "mode", po::value<std::string>()->default_value("int8-static"),
      "fp16, bf16, int8-dynamic, int8-static, qat (quantization-aware fine-tuning, then "
      "int8-static), codebook (k-means weight sharing, fine-tuned)")(
      "observer", po::value<std::string>()->default_value("minmax"),
      "int8-static activation ranges: minmax, moving-average-minmax, percentile, entropy, mse, "
      "or compare (try all, keep the best on the validation split)")(
      "percentile", po::value<double>(&q.observer.percentile)->default_value(q.observer.percentile),
      "percentile observer: percentage of values kept in range")(
      "calib-batches", po::value<int64_t>(&q.calib_batches)->default_value(q.calib_batches),
      "int8-static: calibration batches")(
      "calib-batch-size",
      po::value<int64_t>(&q.calib_batch_size)->default_value(q.calib_batch_size),
      "int8-static: calibration batch size")(
      "per-tensor", po::bool_switch(), "int8 weights: one scale per tensor (default per channel)")(
      "fp16-fallback", po::value<std::string>()->default_value("fp32"),
      "fp16: what out-of-range tensors are kept in: fp32 or bf16")(
      "max-accuracy-drop", po::value<double>(&q.max_accuracy_drop)->default_value(-1),
      "int8: keep the most sensitive layers fp32 until the validation accuracy drop is within "
      "this many points (< 0: off)")(
      "bits", po::value<int64_t>()->default_value(4),
      "codebook: bits per code, 2 to 8 (at most 2^bits shared values per weight tensor)")(
      "epochs", po::value<int64_t>()->default_value(2),
      "qat and codebook: fine-tuning epochs (codebook: 0 keeps the k-means values)")(
      "lr", po::value<double>()->default_value(1e-4),
      "qat and codebook: learning rate (Adam, cosine)")(
      "batch-size", po::value<int64_t>()->default_value(128), "qat and codebook: batch size")(
      "deploy-batch", po::value<int64_t>()->default_value(64),
      "batch size the runtime tunes its kernel choice for")(
      "seed", po::value<uint64_t>()->default_value(0), "seed of the calibration sample");
  // clang-format on
  add_data_options(options);
  add_threads_option(options);
  add_distributed_options(options);
  po::positional_options_description positional;
  positional.add("model", 1);
  po::variables_map vm;
  if (!parse("quantize", "MODEL --out FILE [options]", args, options, vm, &positional)) return 0;

  const bool qat = vm["mode"].as<std::string>() == "qat";
  const bool codebook = vm["mode"].as<std::string>() == "codebook";
  q.mode = qat || codebook ? quant::QuantMode::kInt8Static
                           : quant::parse_quant_mode(vm["mode"].as<std::string>());
  quant::CodebookOptions co;
  co.bits = vm["bits"].as<int64_t>();
  co.train.epochs = vm["epochs"].as<int64_t>();
  co.train.lr = vm["lr"].as<double>();
  co.train.batch_size = vm["batch-size"].as<int64_t>();
  co.train.progress = false;
  if (codebook) co.validate();
  quant::QatOptions qo;
  qo.train.epochs = vm["epochs"].as<int64_t>();
  qo.train.lr = vm["lr"].as<double>();
  qo.train.batch_size = vm["batch-size"].as<int64_t>();
  qo.train.progress = false;
  if (qat) qo.validate();
  const auto observer = vm["observer"].as<std::string>();
  q.compare_observers = observer == "compare";
  if (!q.compare_observers) q.observer.kind = quant::parse_observer(observer);
  q.granularity = vm["per-tensor"].as<bool>() ? quant::Granularity::kPerTensor
                                              : quant::Granularity::kPerChannel;
  const auto fallback = vm["fp16-fallback"].as<std::string>();
  MCOMPRESS_CHECK(fallback == "fp32" || fallback == "bf16", ConfigError,
                  "--fp16-fallback must be fp32 or bf16, got '", fallback, "'");
  q.half_fallback_bf16 = fallback == "bf16";
  q.validate();
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
  const int64_t n_calib =
      std::min<int64_t>(calib_pool.size(), q.calib_batches * q.calib_batch_size);
  const Dataset calib =
      calib_pool.subset(std::vector<int64_t>(order.begin(), order.begin() + n_calib));
  const Dataset test = load_data(vm, Split::kTest);

  qo.train.seed = seed;
  qo.granularity = q.granularity;
  co.train.seed = seed;
  const auto report = qat        ? quant::qat_model(model, qo, calib_pool, val)
                      : codebook ? quant::codebook_model(model, co, calib_pool, val)
                                 : quant::quantize_model(model, q, calib, val);
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
