#include "mcompress/prune/stages.h"

#include <nlohmann/json.hpp>

#include <optional>

#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/stage_training.h"
#include "mcompress/prune/prune.h"
#include "mcompress/prune/schedule.h"

namespace mcompress::prune {

PruneOptions prune_options(const StageOptions& o) {
  PruneOptions p;
  p.method = parse_prune_method(o.choice("method", {"magnitude", "structured"}));
  p.scope = parse_prune_scope(o.choice("scope", {"layer", "global"}));
  p.target = o.number("target", 0, 1, /*hi_open=*/true);
  p.schedule = parse_prune_schedule(o.choice("schedule", {"one-shot", "iterative", "gradual"}));
  p.rounds = o.integer("rounds", 1, 1000);
  p.round_fraction = o.number("round_fraction", 0, 1, true);
  p.gradual.initial_sparsity = o.number("initial_sparsity", 0, 1, true);
  p.gradual.begin_step = o.integer("begin_step", 0);
  p.gradual.end_step = o.integer("end_step", 0);
  p.gradual.frequency = o.integer("frequency", 1);
  p.exclude = o.list("exclude");
  p.overrides = o.number_map("overrides", 0, 1);
  p.finetune_epochs = o.integer("finetune_epochs", 0, 1000);
  read_training_options(o, p.finetune);
  // Without rounds, as many rounds of round_fraction as the target needs.
  if (p.round_fraction > 0 && !o.has("rounds")) {
    p.rounds = rounds_for_fraction(p.target, p.round_fraction);
  }
  o.validate([&] { p.validate(); });
  return p;
}

namespace {

constexpr const char* kNoRewind = "none";
constexpr const char* kRewindInit = "init";

class PruneStage : public Stage {
 public:
  explicit PruneStage(const StageOptions& o)
      : options_(prune_options(o)), rewind_(o.text("rewind")) {
    if (rewind_.empty()) o.fail("rewind", "must be none, init or a model file, got ''");
  }

  std::string cannot_follow(const ModelTraits& traits) const override {
    if (traits.quant_mode.empty()) return "";
    return "pruning would change weights whose " + traits.quant_mode +
           " encoding is already decided; prune before quantize";
  }
  void update(ModelTraits& traits) const override {
    if (options_.method == PruneMethod::kMagnitude) traits.pruned = true;
  }

  StageReport apply(Model& model, const StageContext& ctx) override {
    PruneOptions o = options_;
    o.finetune.seed = ctx.seed;
    o.finetune.progress = ctx.progress;
    o.validate(model);
    std::optional<Model> init;
    if (rewind_ == kRewindInit) {
      init.emplace(model.is_sequential() ? Model::initialize(model.spec(), model.seed)
                                         : Model::initialize(model.graph(), model.seed));
    } else if (rewind_ != kNoRewind) {
      init.emplace(load_model(rewind_));
    }
    PruneReport report = prune_model(model, o, ctx.train, ctx.val, init ? &*init : nullptr);
    return report_with_metrics(std::move(report));
  }

 private:
  PruneOptions options_;
  std::string rewind_;  // none, init or a model file
};

}  // namespace

void register_stages(StageRegistry& registry) {
  registry.add(
      {"prune",
       "magnitude pruning (layer or global threshold; one-shot, iterative or gradual) or "
       "structured filter pruning, with fine-tuning",
       {{"method", "magnitude", "magnitude (unstructured, masks) or structured (removes filters)"},
        {"scope", "layer",
         "magnitude: layer (each tensor to the target) or global (one threshold)"},
        {"target", "0.5", "fraction of weights (structured: of filters) removed, [0, 1)"},
        {"schedule", "one-shot", "one-shot, iterative or gradual (Zhu & Gupta)"},
        {"rounds", "5",
         "iterative: rounds of pruning + fine-tuning (with round_fraction and no rounds: as many "
         "as the target needs)"},
        {"round_fraction", "0",
         "iterative: fraction of the remaining weights each round removes (0.2: lottery ticket; "
         "0: the same keep ratio every round)"},
        {"initial_sparsity", "0", "gradual: sparsity at the first step"},
        {"begin_step", "0", "gradual: first pruning step t0"},
        {"end_step", "0",
         "gradual: step where the target is reached (0: at 3/4 of the fine-tuning)"},
        {"frequency", "100", "gradual: optimizer steps between mask updates"},
        {"exclude", "[]", "tensors left dense: names, or first / last"},
        {"overrides", "{}", "per-tensor targets, e.g. {0.weight: 0.5}"},
        {"finetune_epochs", "1", "fine-tuning epochs per round (gradual: in all)"},
        {"lr", "1e-3", "fine-tuning learning rate"},
        {"optimizer", "adam", "fine-tuning optimizer: adam or sgd"},
        {"momentum", "0.9", "fine-tuning SGD momentum, [0, 1]"},
        {"weight_decay", "0", "fine-tuning L2 weight decay, [0, 1]"},
        {"lr_schedule", "cosine",
         "fine-tuning lr schedule within each round: constant, step or cosine"},
        {"batch_size", "128", "fine-tuning batch size"},
        {"rewind", "none",
         "lottery ticket: survivors reset before fine-tuning to none, init (the initialisation "
         "of the model's seed) or a model file (e.g. an early-epoch checkpoint)"}},
       [](const StageOptions& o) { return std::make_unique<PruneStage>(o); }});
}

}  // namespace mcompress::prune
