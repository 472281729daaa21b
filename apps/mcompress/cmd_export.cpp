#include <filesystem>
#include <functional>
#include <iostream>

#include "cli.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/table.h"
#if MCOMPRESS_WITH_ONNX
#include "mcompress/interop/onnx.h"
#endif
#include "mcompress/interop/torchscript.h"

namespace mcompress::cli {
namespace {

struct ExportFormat {
  const char* name;
  const char* summary;
  std::function<void(const Model&, const std::string& out, bool overwrite)> write;
};

// One row per format; --format picks one.
const std::vector<ExportFormat>& export_formats() {
  static const std::vector<ExportFormat> formats = {
    {"torchscript", "TorchScript module for torch.jit.load (normalisation baked in)",
     [](const Model& model, const std::string& out, bool overwrite) {
       interop::TorchScriptExportOptions o;
       o.overwrite = overwrite;
       interop::export_torchscript(model, out, o);
     }},
#if MCOMPRESS_WITH_ONNX  // a build configured with -DMCOMPRESS_WITH_ONNX=OFF has no libonnx
    {"onnx", "ONNX opset 13 graph of what the runtime runs (int8 as QDQ, fp16 with Cast)",
     [](const Model& model, const std::string& out, bool /*overwrite: checked before*/) {
       const auto info = interop::export_onnx(model, out);
       std::string ops;
       for (const auto& [op, n] : info.op_counts) {
         ops += (ops.empty() ? "" : ", ") + op + " " + std::to_string(n);
       }
       std::cout << "ONNX opset " << info.opset << ", " << info.nodes << " nodes, "
                 << info.initializers << " initializers; weights: " << info.weight_form
                 << "\nops: " << ops << "\n";
     }},
#endif
  };
  return formats;
}

const ExportFormat& find_format(const std::string& name) {
  std::string accepted;
  for (const auto& f : export_formats()) {
    if (name == f.name) return f;
    accepted += (accepted.empty() ? "" : ", ") + std::string(f.name);
  }
  throw ConfigError("unknown --format '" + name + "'; accepted: " + accepted);
}

}  // namespace

int run_export(const Args& args) {
  po::options_description options("export options");
  std::string formats;
  for (const auto& f : export_formats()) {
    formats += std::string(formats.empty() ? "" : "; ") + f.name + ": " + f.summary;
  }
  // clang-format off: one option per line reads better than the formatter's packing
  options.add_options()("model", po::value<std::string>()->required(), "model file (.h5)")(
      "format", po::value<std::string>()->required(), formats.c_str())(
      "out,o", po::value<std::string>()->required(), "output file")(
      "force", po::bool_switch(), "overwrite an existing output file");
  // clang-format on
  po::variables_map vm;
  if (!parse("export", "MODEL --format FORMAT --out FILE", args, options, vm, "model")) {
    return 0;
  }
  const ExportFormat& format = find_format(vm["format"].as<std::string>());
  const auto in = vm["model"].as<std::string>();
  const auto out = vm["out"].as<std::string>();
  check_output_path(out, vm["force"].as<bool>(), {in});

  const Model model = load_model(in);
  format.write(model, out, vm["force"].as<bool>());
  const std::string mode = model.quant.mode.empty() ? "fp32" : model.quant.mode;
  std::cout << "exported " << in << " (" << model.name() << ", " << mode
            << (model.masks.empty() ? "" : ", pruned") << ") as " << format.name << ": " << out
            << " (" << format_bytes(static_cast<double>(std::filesystem::file_size(out))) << ")"
            << std::endl;
  return 0;
}

}  // namespace mcompress::cli
