#include <iostream>

#include "cli.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/table.h"
#include "mcompress/interop/onnx.h"

namespace mcompress::cli {
namespace {

// --format onnx: an ONNX (opset 13) graph of what the runtime runs (docs/interop.md).
int export_onnx(const Model& model, const std::string& out) {
  const auto info = interop::export_onnx(model, out);
  std::string ops;
  for (const auto& [op, n] : info.op_counts) {
    ops += (ops.empty() ? "" : ", ") + op + " " + std::to_string(n);
  }
  std::cout << "wrote " << out << ": ONNX opset " << info.opset << ", " << info.nodes << " nodes, "
            << info.initializers << " initializers, "
            << format_bytes(static_cast<double>(info.bytes)) << "; weights: " << info.weight_form
            << "\nops: " << ops << "\n";
  return 0;
}

}  // namespace

int run_export(const Args& args) {
  po::options_description options("export options");
  options.add_options()("model", po::value<std::string>()->required(), "model file (.h5)")(
      "format", po::value<std::string>()->required(), "onnx")(
      "out", po::value<std::string>()->required(), "output file")(
      "force", po::bool_switch(), "overwrite an existing output file");
  po::positional_options_description positional;
  positional.add("model", 1);
  po::variables_map vm;
  if (!parse("export", "MODEL --format onnx --out FILE [options]", args, options, vm,
             &positional)) {
    return 0;
  }
  const auto format = vm["format"].as<std::string>();
  const auto out = vm["out"].as<std::string>();
  MCOMPRESS_CHECK(format == "onnx", ConfigError, "unknown --format '", format, "'; accepted: onnx");
  check_output_path(out, vm["force"].as<bool>());
  const Model model = load_model(vm["model"].as<std::string>());
  return export_onnx(model, out);
}

}  // namespace mcompress::cli
