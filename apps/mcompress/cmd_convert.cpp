#include <iostream>

#include "cli.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/table.h"

namespace mcompress::cli {

// Re-saves a model file in either container (docs/format.md §1), tensors unchanged: loading
// validates everything, so this also upgrades v1/v2 files and checks a file end to end.
int run_convert(const Args& args) {
  po::options_description options("convert options");
  // clang-format off
  options.add_options()
      ("model", po::value<std::string>()->required(), "model file (.h5), any format version")
      ("out", po::value<std::string>()->required(), "output model file (.h5)")
      ("container", po::value<std::string>()->default_value("packed"),
       "packed (format v3: manifest + blob, smallest) or groups (format v2: one HDF5 dataset "
       "per array)")
      ("force", po::bool_switch(), "overwrite an existing output file");
  // clang-format on
  po::variables_map vm;
  if (!parse("convert", "MODEL --out FILE [options]", args, options, vm, "model")) return 0;

  const std::string container = vm["container"].as<std::string>();
  MCOMPRESS_CHECK(container == "packed" || container == "groups", ConfigError,
                  "--container must be packed or groups, got '", container, "'");
  const std::string in = vm["model"].as<std::string>();
  const std::string out = vm["out"].as<std::string>();
  const bool force = vm["force"].as<bool>();
  check_output_path(out, force, {in});
  const Model model = load_model(in);
  SaveOptions save;
  save.overwrite = force;
  save.container = container == "groups" ? ModelContainer::kGroups : ModelContainer::kPacked;
  save_model(model, out, save);
  const ModelFileSummary before = inspect_model_file(in);
  const ModelFileSummary after = inspect_model_file(out);
  std::cout << in << " (format v" << before.format_version << ", " << before.container << ", "
            << before.file_bytes << " bytes) -> " << out << " (format v" << after.format_version
            << ", " << after.container << ", " << after.file_bytes << " bytes)\n";
  return 0;
}

}  // namespace mcompress::cli
