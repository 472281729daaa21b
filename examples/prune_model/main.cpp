// Prunes a trained model to a global sparsity with iterative magnitude pruning and fine-tuning,
// then saves it (the model file stores the pruned tensors in CSR form):
//   prune_model MODEL.h5 DATA OUT.h5 [SPARSITY=0.8] [TRAIN_EXAMPLES]
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <string>

#include "mcompress/core/dataset.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/prune/prune.h"

namespace mc = mcompress;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: prune_model MODEL.h5 DATA OUT.h5 [SPARSITY=0.8] [TRAIN_EXAMPLES]\n";
    return 2;
  }
  try {
    mc::Model model = mc::load_model(argv[1]);
    mc::Dataset all = mc::load_dataset(argv[2], mc::Split::kTrain);
    if (argc > 5) all = all.slice(0, std::min<int64_t>(std::atoll(argv[5]), all.size()));
    auto [train, val] = mc::split_train_val(all, 0.1, /*seed=*/0);

    mc::prune::PruneOptions options;
    options.scope = mc::prune::PruneScope::kGlobal;  // one threshold across all layers
    options.target = argc > 4 ? std::atof(argv[4]) : 0.8;
    options.schedule = mc::prune::PruneSchedule::kIterative;
    options.rounds = 2;
    options.finetune_epochs = 1;
    options.validate(model);  // ConfigError naming the option, e.g. a target of 1.5

    mc::prune::PruneReport report = mc::prune::prune_model(model, options, train, val);
    model.history.push_back(report.to_json());
    mc::save_model(model, argv[3]);

    std::cout << std::fixed << std::setprecision(2);
    for (const auto& round : report.rounds)
      std::cout << "round " << round.round << ": sparsity " << 100 * round.sparsity
                << "%, val accuracy " << 100 * round.val_accuracy << "%\n";
    for (const auto& t : report.tensors)
      std::cout << "  " << t.name << ": " << t.kept << " of " << t.total << " kept\n";
    std::cout << "val accuracy " << 100 * report.val_accuracy_before << "% -> "
              << 100 * report.val_accuracy_after << "%; wrote " << argv[3] << "\n";
  } catch (const mc::Error& e) {
    std::cerr << "prune_model: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
