#include <nlohmann/json.hpp>

#include <iostream>

#include "cli.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/table.h"

namespace mcompress::cli {

int run_inspect(const Args& args) {
  po::options_description options("inspect options");
  options.add_options()("model", po::value<std::string>()->required(), "model file (.h5)")(
      "history", po::bool_switch(), "also print the stage history (JSON)");
  po::variables_map vm;
  if (!parse("inspect", "MODEL [options]", args, options, vm, "model")) return 0;

  const auto summary = inspect_model_file(vm["model"].as<std::string>());
  const auto arch = nlohmann::json::parse(summary.arch_json);
  std::cout << summary.path << ": " << arch.value("name", std::string("?")) << ", format v"
            << summary.format_version << " (" << summary.container << " container), written by "
            << summary.producer << "\n\n";

  Table table({"tensor", "shape", "encoding", "layout", "params", "nonzeros", "density", "bytes"});
  int64_t params = 0, nonzeros = 0, bytes = 0;
  for (const auto& t : summary.tensors) {
    table.add_row({t.name, shape_to_string(t.shape), t.encoding, t.layout,
                   std::to_string(t.parameters), std::to_string(t.nonzeros),
                   format_fixed(t.parameters ? double(t.nonzeros) / double(t.parameters) : 0, 3),
                   std::to_string(t.bytes_on_disk)});
    params += t.parameters;
    nonzeros += t.nonzeros;
    bytes += t.bytes_on_disk;
  }
  table.add_row({"total", "", "", "", std::to_string(params), std::to_string(nonzeros),
                 format_fixed(params ? double(nonzeros) / double(params) : 0, 3),
                 std::to_string(bytes)});
  std::cout << table.to_text();
  const double dense_fp32 = 4.0 * static_cast<double>(params);
  std::cout << "\nfp32 dense tensors: " << format_bytes(dense_fp32)
            << "; stored tensors: " << format_bytes(static_cast<double>(bytes)) << " ("
            << format_fixed(bytes ? dense_fp32 / double(bytes) : 0, 2)
            << "x smaller); file: " << format_bytes(static_cast<double>(summary.file_bytes)) << " ("
            << format_fixed(summary.file_bytes ? dense_fp32 / double(summary.file_bytes) : 0, 2)
            << "x)\n";
  if (vm["history"].as<bool>()) {
    std::cout << "\nhistory:\n";
    for (const auto& h : summary.history) std::cout << "  " << h << "\n";
  }
  return 0;
}

}  // namespace mcompress::cli
