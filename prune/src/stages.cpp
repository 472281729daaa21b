#include "mcompress/prune/stages.h"

#include <nlohmann/json.hpp>

#include <optional>

#include "mcompress/core/error.h"
#include "mcompress/prune/prune.h"

namespace mcompress::prune {
namespace {

class PruneStage : public Stage {
 public:
  explicit PruneStage(const StageOptions& o) {
    options_.method = parse_prune_method(o.choice("method", {"magnitude", "structured"}));
    options_.scope = parse_prune_scope(o.choice("scope", {"layer", "global"}));
    options_.target = o.number("target", 0, 1, /*hi_open=*/true);
    options_.schedule =
        parse_prune_schedule(o.choice("schedule", {"one-shot", "iterative", "gradual"}));
    options_.rounds = o.integer("rounds", 1, 1000);
    options_.round_fraction = o.number("round_fraction", 0, 1, true);
    options_.gradual.initial_sparsity = o.number("initial_sparsity", 0, 1, true);
    options_.gradual.frequency = o.integer("frequency", 1);
    options_.exclude = o.list("exclude");
    options_.overrides = o.number_map("overrides", 0, 1);
    options_.finetune_epochs = o.integer("finetune_epochs", 0, 1000);
    options_.finetune.lr = o.number("lr", 1e-8, 10);
    options_.finetune.batch_size = o.integer("batch_size", 1, 1 << 16);
    rewind_ = o.choice("rewind", {"none", "init"}) == "init";
    o.validate([&] { options_.validate(); });
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
    o.validate(model.spec());
    std::optional<Model> init;
    if (rewind_) init.emplace(Model::initialize(model.spec(), model.seed));
    const PruneReport report = prune_model(model, o, ctx.train, ctx.val, init ? &*init : nullptr);
    StageReport out;
    out.metrics =
        nlohmann::json::parse(report.to_json()).value("metrics", nlohmann::json::object());
    return out;
  }

 private:
  PruneOptions options_;
  bool rewind_ = false;
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
        {"rounds", "5", "iterative: rounds of pruning + fine-tuning"},
        {"round_fraction", "0",
         "iterative: fraction of the remaining weights each round removes (0: equal rounds)"},
        {"initial_sparsity", "0", "gradual: sparsity at the first step"},
        {"frequency", "100", "gradual: optimizer steps between mask updates"},
        {"exclude", "[]", "tensors left dense: names, or first / last"},
        {"overrides", "{}", "per-tensor targets, e.g. {0.weight: 0.5}"},
        {"finetune_epochs", "1", "fine-tuning epochs per round (gradual: in all)"},
        {"lr", "1e-3", "fine-tuning learning rate (Adam, cosine)"},
        {"batch_size", "128", "fine-tuning batch size"},
        {"rewind", "none", "lottery ticket: none, or init (survivors reset to initialisation)"}},
       [](const StageOptions& o) { return std::make_unique<PruneStage>(o); }});
}

}  // namespace mcompress::prune
