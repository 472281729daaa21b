#include <algorithm>
#include <iostream>

#include "cli.h"
#include "mcompress/pipeline/recipe.h"
#include "mcompress/pipeline/registry.h"
#include "mcompress/pipeline/runner.h"

namespace mcompress::cli {

int run_compress(const Args& args) {
  po::options_description options("compress options");
  // clang-format off: one option per line reads better than the formatter's packing
  options.add_options()("recipe,r", po::value<std::string>()->required(), "recipe file (YAML)")(
      "set", po::value<std::vector<std::string>>()->composing(),
      "override a recipe value, e.g. --set stages[1].prune.target=0.95 (repeatable)")(
      "resume", po::bool_switch(), "continue after the last completed stage of the checkpoint")(
      "force", po::bool_switch(), "overwrite an existing output file")(
      "check", po::bool_switch(), "validate the recipe and exit");
  // clang-format on
  add_threads_option(options);
  add_distributed_options(options);
  po::variables_map vm;
  if (!parse("compress", "--recipe FILE [--set PATH=VALUE]... [options]", args, options, vm,
             "recipe")) {
    return 0;
  }
  const auto sets =
      vm.count("set") ? vm["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
  const auto recipe =
      pipeline::load_recipe(vm["recipe"].as<std::string>(), pipeline::default_registry(), sets);
  if (vm["check"].as<bool>()) {
    std::cout << recipe.source << ": valid (" << recipe.stages.size() << " stages)\n";
    return 0;
  }
  // Data parallel: every rank runs the stages, rank 0 alone logs, reports and writes.
  const bool root = apply_distributed(vm);
  pipeline::RunOptions run;
  run.threads = apply_threads(vm);
  run.resume = vm["resume"].as<bool>();
  run.overwrite = vm["force"].as<bool>();
  run.log = root ? &std::cout : nullptr;
  const auto result = pipeline::run_recipe(recipe, run);
  if (!root) return 0;
  std::cout << "saved " << result.output << "\nreports:";
  for (const auto& r : result.reports) std::cout << " " << r;
  std::cout << std::endl;
  return 0;
}

int run_stages(const Args& args) {
  po::options_description options("stages options");
  po::variables_map vm;
  if (!parse("stages", "", args, options, vm)) return 0;
  for (const auto& s : pipeline::default_registry().stages()) {
    std::cout << s.name << ": " << s.summary << "\n";
    // `mcompress quantize|prune|distill` take the same options as flags (stage_flags.h).
    const bool command = std::any_of(commands().begin(), commands().end(),
                                     [&](const Command& c) { return s.name == c.name; });
    if (command && !s.options.empty()) {
      auto example = std::find_if(s.options.begin(), s.options.end(), [](const OptionDoc& o) {
        return o.name.find('_') != std::string::npos;
      });
      if (example == s.options.end()) example = s.options.begin();
      std::cout << "  (also `mcompress " << s.name << "`, each option a flag: " << example->name
                << " is " << option_flag(example->name) << ")\n";
    }
    for (const auto& o : s.options) {
      std::cout << "  " << o.name
                << " (default: " << (o.default_value.empty() ? "required" : o.default_value)
                << ")  " << o.help << "\n";
    }
    std::cout << "\n";
  }
  return 0;
}

}  // namespace mcompress::cli
