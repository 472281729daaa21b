#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "cli.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/table.h"
#include "mcompress/interop/torchscript.h"

namespace mcompress::cli {
namespace {

// "1,28,28" -> {1, 28, 28}; ConfigError naming the option for anything else.
template <typename T>
std::vector<T> parse_list(const std::string& option, const std::string& text) {
  std::vector<T> out;
  std::istringstream items(text);
  std::string item;
  while (std::getline(items, item, ',')) {
    std::istringstream in(item);
    T value{};
    in >> value;
    MCOMPRESS_CHECK(!item.empty() && !in.fail() && (in >> std::ws).eof(), ConfigError, "--", option,
                    " expects comma-separated numbers, got '", text, "'");
    out.push_back(value);
  }
  MCOMPRESS_CHECK(!out.empty(), ConfigError, "--", option, " expects comma-separated numbers");
  return out;
}

}  // namespace

int run_import(const Args& args) {
  po::options_description options("import options");
  // clang-format off: one option per line reads better than the formatter's packing
  options.add_options()("model", po::value<std::string>()->required(),
                        "TorchScript file saved by torch.jit.save (.pt)")(
      "out,o", po::value<std::string>()->required(), "output model file (.h5)")(
      "force", po::bool_switch(), "overwrite an existing output file")(
      "input-shape", po::value<std::string>(),
      "one input without the batch dimension, C,H,W or D (default: the shape recorded by "
      "mcompress export, else 1,28,28)")(
      "mean", po::value<std::string>(),
      "per-channel mean the Python model expects its inputs normalised with (default: none)")(
      "std", po::value<std::string>(),
      "per-channel std the Python model expects its inputs normalised with (default: none)")(
      "name", po::value<std::string>()->default_value(""),
      "architecture name (default: the file name)")(
      "forward-timeout", po::value<double>()->default_value(10),
      "seconds the module's forward may run in the import's check (a .pt file is code: it runs "
      "in a separate process, its output discarded, killed after this)");
  // clang-format on
  po::variables_map vm;
  if (!parse("import", "MODEL.pt --out FILE [options]", args, options, vm, "model")) return 0;

  interop::TorchScriptImportOptions io;
  if (vm.count("input-shape")) {
    io.input_shape = parse_list<int64_t>("input-shape", vm["input-shape"].as<std::string>());
  }
  if (vm.count("mean")) io.mean = parse_list<double>("mean", vm["mean"].as<std::string>());
  if (vm.count("std")) io.std = parse_list<double>("std", vm["std"].as<std::string>());
  MCOMPRESS_CHECK(io.mean.has_value() == io.std.has_value(), ConfigError,
                  "give --mean and --std together");
  io.name = vm["name"].as<std::string>();
  io.forward_timeout = vm["forward-timeout"].as<double>();
  MCOMPRESS_CHECK(io.forward_timeout > 0 && io.forward_timeout <= 3600, ConfigError,
                  "--forward-timeout must be in (0, 3600] seconds, got ", io.forward_timeout);
  const auto in = vm["model"].as<std::string>();
  const auto out = vm["out"].as<std::string>();
  check_output_path(out, vm["force"].as<bool>(), {in});

  const auto start = std::chrono::steady_clock::now();
  interop::TorchScriptImportReport report;
  Model model = interop::import_torchscript(in, io, &report);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const ArchSpec& spec = model.spec();
  nlohmann::json record = {{"stage", "import"},
                           {"options",
                            {{"source", in},
                             {"format", "torchscript"},
                             {"input_shape", spec.input_shape},
                             {"mean", spec.mean},
                             {"std", spec.std},
                             {"normalisation_in_module", report.normalisation_in_module}}},
                           {"metrics",
                            {{"layer_sources", report.layer_sources},
                             {"forward_max_abs_difference", report.max_abs_difference},
                             {"forward_max_abs_output", report.max_abs_output}}},
                           {"seconds", seconds}};
  model.history.push_back(record.dump());
  model.recipe = command_line("import", args);
  SaveOptions save;
  save.overwrite = vm["force"].as<bool>();
  save_model(model, out, save);

  Table layers({"layer", "type", "from module"});
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    layers.add_row({std::to_string(i), to_string(spec.layers[i].type), report.layer_sources[i]});
  }
  std::cout << layers.to_text() << "input " << shape_to_string(spec.input_shape) << ", "
            << spec.num_classes << " classes, " << spec.parameter_count() << " parameters\n"
            << "forward check: max |difference| " << report.max_abs_difference << " (max |logit| "
            << report.max_abs_output << ")\nsaved " << out << std::endl;
  return 0;
}

}  // namespace mcompress::cli
