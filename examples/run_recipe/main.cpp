// Runs a compression recipe from code, as `mcompress compress` does:
//   run_recipe RECIPE.yaml [--set stages[0].prune.target=0.9 ...]
// quick.yaml next to this file is a one-minute recipe: train an mlp briefly, prune, quantize.
#include <iostream>
#include <string>
#include <vector>

#include "mcompress/core/error.h"
#include "mcompress/pipeline/recipe.h"
#include "mcompress/pipeline/registry.h"
#include "mcompress/pipeline/runner.h"

namespace mc = mcompress;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: run_recipe RECIPE.yaml [--set PATH=VALUE ...]\n";
    return 2;
  }
  std::vector<std::string> sets;
  for (int i = 2; i + 1 < argc; i += 2)
    if (std::string(argv[i]) == "--set") sets.emplace_back(argv[i + 1]);
  try {
    // Validates the whole recipe (every stage, option and value) before anything runs.
    const mc::pipeline::Recipe recipe =
        mc::pipeline::load_recipe(argv[1], mc::pipeline::default_registry(), sets);
    mc::pipeline::RunOptions options;
    options.overwrite = true;
    options.log = &std::cout;  // one table row per stage as it finishes
    const mc::pipeline::RunResult result = mc::pipeline::run_recipe(recipe, options);
    std::cout << "\n" << mc::pipeline::rows_markdown(result.rows) << "wrote " << result.output;
    for (const auto& report : result.reports) std::cout << ", " << report;
    std::cout << "\n";
  } catch (const mc::Error& e) {
    std::cerr << "run_recipe: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
