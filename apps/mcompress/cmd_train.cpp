#include <nlohmann/json.hpp>

#include <iostream>

#include "cli.h"
#include "mcompress/core/architecture.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/table.h"
#include "mcompress/core/train.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::cli {
namespace {

// A freshly initialised model of the architecture the options name (training re-seeds, so the
// order of initialisation and data loading does not matter).
Model model_from_options(const po::variables_map& vm, uint64_t seed) {
  const bool has_arch = vm.count("arch") != 0, has_spec = vm.count("spec") != 0;
  MCOMPRESS_CHECK(has_arch != has_spec, ConfigError, "give exactly one of --arch and --spec");
  return initialize_model(has_arch ? zoo_architecture(vm["arch"].as<std::string>())
                                   : read_architecture_file(vm["spec"].as<std::string>()),
                          seed);
}

}  // namespace

int run_train(const Args& args) {
  TrainOptions t;
  po::options_description options("train options");
  // clang-format off: one option per line reads better than the formatter's packing
  options.add_options()("arch", po::value<std::string>(), "zoo architecture (see 'mcompress zoo')")(
      "spec", po::value<std::string>(), "architecture file: a spec JSON or a graph document")(
      "out,o", po::value<std::string>()->required(), "output model file (.h5)")(
      "force", po::bool_switch(), "overwrite an existing output file")(
      "val-fraction", po::value<double>()->default_value(0.1),
      "fraction of the training data held out for validation");
  // clang-format on
  add_train_options(options, t);
  add_data_options(options);
  add_threads_option(options);
  add_distributed_options(options);
  po::variables_map vm;
  if (!parse("train", "--arch NAME|--spec FILE --out FILE [options]", args, options, vm)) {
    return 0;
  }
  read_train_options(vm, t);
  Model model = model_from_options(vm, t.seed);
  const auto out = vm["out"].as<std::string>();
  const bool force = vm["force"].as<bool>();
  // Only rank 0 writes; the others train their share and leave.
  const bool root = apply_distributed(vm);
  if (root) check_output_path(out, force);
  const int threads = apply_threads(vm);

  const Dataset all = load_data(vm, Split::kTrain);
  check_dataset(all, model.input_shape(), model.num_classes(), "training");
  const auto [train_data, val] = split_train_val(all, vm["val-fraction"].as<double>(), t.seed);
  if (root && t.progress) {  // --quiet: the only line of a failed run is its error
    std::cerr << "training " << model.name() << " (" << model.parameter_count()
              << " parameters) on " << train_data.size() << " examples, validating on "
              << val.size() << "; " << threads << " threads, seed " << t.seed << std::endl;
  }

  const auto result = train_model(model, train_data, val, t);
  if (!root) return 0;

  const Dataset test = load_data(vm, Split::kTest);
  runtime::Executor exec(model);
  const auto eval = runtime::evaluate(exec, test);

  auto record = nlohmann::json::parse(result.to_json(t));
  record["metrics"] = {
      {"test_accuracy", eval.accuracy}, {"test_loss", eval.loss}, {"test_samples", eval.samples}};
  model.history.push_back(record.dump());
  model.recipe = command_line("train", args);
  model.seed = t.seed;
  SaveOptions save;
  save.overwrite = force;
  save_model(model, out, save);

  Table table({"model", "params", "epochs", "best_epoch", "val_acc", "test_acc", "test_loss",
               "train_time"});
  const auto& best =
      result.epochs.at(static_cast<size_t>(std::max<int64_t>(result.best_epoch, 1) - 1));
  table.add_row({model.name(), std::to_string(model.parameter_count()),
                 std::to_string(result.epochs.size()), std::to_string(result.best_epoch),
                 format_fixed(best.val_accuracy * 100, 2), format_fixed(eval.accuracy * 100, 2),
                 format_fixed(eval.loss, 4), format_fixed(result.seconds, 1) + "s"});
  std::cout << table.to_text() << "saved " << out << std::endl;
  if (result.world_size > 1) {
    std::cout << "data parallel: " << result.world_size << " ranks, "
              << static_cast<int64_t>(result.bytes_all_reduced_per_step)
              << " bytes all-reduced per step, "
              << format_fixed(result.collective_seconds_per_step * 1000, 3)
              << " ms per step in collectives (rank 0)" << std::endl;
  }
  return 0;
}

}  // namespace mcompress::cli
