#include "mcompress/prune/prune.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <set>

#include "mcompress/core/distributed.h"
#include "mcompress/core/enum_names.h"
#include "mcompress/core/error.h"
#include "mcompress/core/trainable_network.h"
#include "mcompress/prune/magnitude.h"
#include "mcompress/prune/schedule.h"
#include "mcompress/prune/structured.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::prune {
namespace {

using TensorMap = std::map<std::string, at::Tensor>;

std::string join(const std::vector<std::string>& items, const std::string& separator = ", ") {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : separator) + s;
  return out;
}

// "first" / "last" → the first / last prunable tensor; anything else must be prunable.
std::string resolve_name(const Model& model, const std::vector<std::string>& prunable,
                         const std::string& name, const char* option) {
  if (name == "first") return prunable.front();
  if (name == "last") return prunable.back();
  if (std::find(prunable.begin(), prunable.end(), name) != prunable.end()) return name;
  MCOMPRESS_CHECK(!model.has_tensor(name), ConfigError, option, ": tensor '", name,
                  "' is not prunable (only conv and linear weights are); prunable: ",
                  join(prunable), ", first, last");
  throw ConfigError(std::string(option) + ": unknown tensor '" + name +
                    "'; prunable: " + join(prunable) + ", first, last");
}

// Which tensors are pruned, how.
struct Plan {
  std::vector<std::string> prunable;                // every prunable tensor, model order
  std::vector<std::string> pool;                    // global scope: one shared threshold
  std::vector<std::pair<std::string, double>> own;  // each to its own final target
  std::set<std::string> excluded;
  std::map<std::string, double> overrides;  // resolved names
};

Plan make_plan(const Model& model, const PruneOptions& o) {
  Plan plan;
  plan.prunable = prunable_tensors(model);
  MCOMPRESS_CHECK(!plan.prunable.empty(), ConfigError, "model '", model.name(),
                  "' has no conv or linear weight to prune");
  for (const auto& name : o.exclude)
    plan.excluded.insert(resolve_name(model, plan.prunable, name, "exclude"));
  for (const auto& [name, target] : o.overrides) {
    const auto resolved = resolve_name(model, plan.prunable, name, "overrides");
    MCOMPRESS_CHECK(plan.excluded.count(resolved) == 0, ConfigError, "overrides: tensor '", name,
                    "' is also excluded; give it a target or exclude it, not both");
    plan.overrides[resolved] = target;
  }
  for (const auto& name : plan.prunable) {
    if (plan.excluded.count(name)) continue;
    const auto it = plan.overrides.find(name);
    if (it != plan.overrides.end()) {
      plan.own.emplace_back(name, it->second);
    } else if (o.scope == PruneScope::kGlobal) {
      plan.pool.push_back(name);
    } else {
      plan.own.emplace_back(name, o.target);
    }
  }
  return plan;
}

// Maps a final target to the sparsity the schedule asks for now.
using Scheduled = std::function<double(double final_target)>;

// The sparsity of round r of R for a final target t (see iterative_sparsities); overridden
// tensors with smaller targets than the pool's rounds simply get there earlier.
double round_sparsity(double t, int64_t r, int64_t rounds, double round_fraction) {
  if (r >= rounds) return t;
  if (round_fraction > 0)
    return std::min(t, 1 - std::pow(1 - round_fraction, static_cast<double>(r)));
  return 1 - std::pow(1 - t, static_cast<double>(r) / static_cast<double>(rounds));
}

// New masks of every pruned tensor, from the current weights and masks.
TensorMap magnitude_masks(const Plan& plan, double pool_target, const Scheduled& now,
                          const TensorMap& weights, const TensorMap& masks) {
  auto previous = [&masks](const std::string& name) {
    const auto it = masks.find(name);
    return it == masks.end() ? at::Tensor() : it->second;
  };
  TensorMap out;
  if (!plan.pool.empty()) {
    std::vector<at::Tensor> ws, prev;
    for (const auto& name : plan.pool) {
      ws.push_back(weights.at(name));
      prev.push_back(previous(name));
    }
    const auto ms = global_magnitude_masks(ws, now(pool_target), prev);
    for (size_t i = 0; i < ms.size(); ++i) out[plan.pool[i]] = ms[i];
  }
  for (const auto& [name, target] : plan.own) {
    out[name] = layer_magnitude_mask(weights.at(name), now(target), previous(name));
  }
  return out;
}

// Masks are decided once, on rank 0, and broadcast: every rank computes the same ones from the
// same weights, but a magnitude tie ordered differently must never leave ranks training
// different sparsity patterns. A world of 1 broadcasts nothing.
TensorMap decided_on_rank0(TensorMap masks) {
  std::vector<at::Tensor> list;
  for (const auto& [name, mask] : masks) list.push_back(mask);  // map order: same on every rank
  distributed().broadcast(list, "pruning masks");
  return masks;
}

// Kept entries of one tensor: its mask's, or its nonzeros without a mask.
Density kept_of(const std::string& name, const TensorMap& weights, const TensorMap& masks) {
  const auto it = masks.find(name);
  return it != masks.end() ? mask_density(it->second) : nonzero_density(weights.at(name));
}

Density prunable_density(const Plan& plan, const TensorMap& weights, const TensorMap& masks) {
  Density d;
  for (const auto& name : plan.prunable) d += kept_of(name, weights, masks);
  return d;
}

int64_t nonzero_parameters(const Model& model, const TensorMap& weights) {
  int64_t n = 0;
  for (const auto& info : model.tensor_infos()) {
    if (info.role == TensorRole::kWeight || info.role == TensorRole::kBias) {
      n += nonzero_density(weights.at(info.name)).kept;
    }
  }
  return n;
}

double val_accuracy(const Model& model, const Dataset& val) {
  if (val.size() == 0) return -1;
  runtime::ExecutorOptions eo;
  eo.policy = runtime::KernelPolicy::kFp32;
  return runtime::evaluate(runtime::Executor(model, eo), val).accuracy;
}

TrainOptions finetune_options(const PruneOptions& o, int64_t round) {
  TrainOptions t = o.finetune;
  t.epochs = o.finetune_epochs;
  // A fresh data order every round, still fixed by the seed.
  t.seed = o.finetune.seed + static_cast<uint64_t>(round - 1);
  return t;
}

void finetune(Model& model, const PruneOptions& o, const Dataset& train, const Dataset& val,
              int64_t round) {
  if (o.finetune_epochs == 0) return;
  train_model(model, train, val, finetune_options(o, round));
}

// Every tensor back to the rewind point, then the masks again (lottery-ticket rewinding).
void rewind(Model& model, const Model& to) {
  torch::NoGradGuard no_grad;
  for (const auto& info : model.tensor_infos()) model.tensor(info.name).copy_(to.tensor(info.name));
  for (const auto& [name, mask] : model.masks)
    model.tensor(name).masked_fill_(mask.logical_not(), 0.0f);
}

void check_rewind_model(const Model& model, const Model& to) {
  const auto& mine = model.tensor_infos();
  const auto& theirs = to.tensor_infos();
  MCOMPRESS_CHECK(mine.size() == theirs.size(), ModelError, "rewind model has ", theirs.size(),
                  " tensors, the pruned model ", mine.size());
  for (size_t i = 0; i < mine.size(); ++i) {
    MCOMPRESS_CHECK(mine[i].name == theirs[i].name && mine[i].shape == theirs[i].shape, ModelError,
                    "rewind model's tensor ", i, " is '", theirs[i].name, "' ",
                    shape_to_string(theirs[i].shape), ", expected '", mine[i].name, "' ",
                    shape_to_string(mine[i].shape));
  }
}

RoundReport round_report(const Model& model, const Plan& plan, int64_t round, double target,
                         const Dataset& val) {
  RoundReport r;
  r.round = round;
  r.target = target;
  r.sparsity = prunable_density(plan, model.tensors(), model.masks).sparsity();
  r.nonzero = nonzero_parameters(model, model.tensors());
  r.val_accuracy = val_accuracy(model, val);
  return r;
}

// One-shot (one round) and iterative magnitude pruning.
void run_rounds(Model& model, const Plan& plan, const PruneOptions& o, const Dataset& train,
                const Dataset& val, const Model* rewind_to, PruneReport& report) {
  const bool iterative = o.schedule == PruneSchedule::kIterative;
  const int64_t rounds = iterative ? o.rounds : 1;
  const double fraction = iterative ? o.round_fraction : 0;
  const auto targets = iterative_sparsities(o.target, rounds, fraction);
  for (int64_t r = 1; r <= rounds; ++r) {
    const Scheduled now = [=](double t) { return round_sparsity(t, r, rounds, fraction); };
    for (const auto& [name, mask] :
         decided_on_rank0(magnitude_masks(plan, o.target, now, model.tensors(), model.masks))) {
      model.set_mask(name, mask);
    }
    if (rewind_to != nullptr) rewind(model, *rewind_to);
    finetune(model, o, train, val, r);
    report.rounds.push_back(round_report(model, plan, r, targets[static_cast<size_t>(r - 1)], val));
  }
}

GradualSchedule gradual_schedule(const PruneOptions& o, int64_t steps) {
  GradualSchedule g;
  g.initial_sparsity = o.gradual.initial_sparsity;
  g.final_sparsity = o.target;
  g.begin_step = o.gradual.begin_step;
  g.end_step =
      o.gradual.end_step > 0 ? o.gradual.end_step : g.begin_step + 3 * (steps - g.begin_step) / 4;
  g.frequency = o.gradual.frequency;
  MCOMPRESS_CHECK(g.end_step > g.begin_step && g.end_step <= steps, ConfigError,
                  "gradual.end_step ", g.end_step, " must be after gradual.begin_step ",
                  g.begin_step, " and within the ", steps, " fine-tuning steps (",
                  o.finetune_epochs, " epochs), or the target is never reached");
  return g;
}

// Zhu & Gupta: masks follow the polynomial schedule during one fine-tuning run.
void run_gradual(Model& model, const Plan& plan, const PruneOptions& o, const Dataset& train,
                 const Dataset& val, PruneReport& report) {
  TrainOptions t = finetune_options(o, 1);
  t.restore_best = false;  // an earlier epoch is less sparse
  t.early_stop_patience = 0;
  const int64_t steps_per_epoch = (train.size() + t.batch_size - 1) / t.batch_size;
  const GradualSchedule g = gradual_schedule(o, t.epochs * steps_per_epoch);
  const auto at_step = [&g](int64_t step) -> Scheduled {
    return [g, step](double target) {
      GradualSchedule s = g;
      s.final_sparsity = target;
      s.initial_sparsity = std::min(g.initial_sparsity, target);
      return s.sparsity_at(step);
    };
  };
  if (g.prunes_at(0)) {
    for (const auto& [name, mask] : decided_on_rank0(
             magnitude_masks(plan, o.target, at_step(0), model.tensors(), model.masks))) {
      model.set_mask(name, mask);
    }
  }
  TrainHooks hooks;
  hooks.after_step = [&](TrainableNetwork& n, int64_t step) {
    if (!g.prunes_at(step)) return;
    for (const auto& [name, mask] :
         decided_on_rank0(magnitude_masks(plan, o.target, at_step(step), n.state(), n.masks()))) {
      n.set_mask(name, mask);
    }
  };
  std::vector<RoundReport> epochs;
  TensorMap final_masks;
  hooks.after_epoch = [&](TrainableNetwork& n, int64_t epoch) {
    const auto state = n.state();
    RoundReport r;
    r.round = epoch;
    // What the masks were last set to, not the formula at the epoch's end.
    const int64_t last = g.last_update(epoch * steps_per_epoch);
    r.target = last < 0 ? 0.0 : g.sparsity_at(last);
    r.sparsity = prunable_density(plan, state, n.masks()).sparsity();
    r.nonzero = nonzero_parameters(model, state);
    epochs.push_back(r);
    // The masks as training leaves them (restore_best is off, so the last epoch's are final).
    final_masks.clear();
    for (const auto& [name, mask] : n.masks()) final_masks[name] = mask.clone();
  };
  const auto result = train_model(model, train, val, t, hooks);
  model.masks = std::move(final_masks);
  for (size_t e = 0; e < epochs.size(); ++e) {
    if (val.size() > 0) epochs[e].val_accuracy = result.epochs.at(e).val_accuracy;
    report.rounds.push_back(epochs[e]);
  }
  // The training network scored the epochs; the last one is rescored by the runtime.
  if (!report.rounds.empty()) report.rounds.back().val_accuracy = val_accuracy(model, val);
}

// The fraction of the prunable tensors' original entries that structured pruning removed.
double removed_fraction(const Plan& plan, const Model& model,
                        const std::map<std::string, int64_t>& numel_before) {
  Density d;
  for (const auto& name : plan.prunable) d += {model.tensor(name).numel(), numel_before.at(name)};
  return d.sparsity();
}

// Structured pruning: every chain's producer loses round(s · width) of its original filters.
// The chains structured pruning narrows, each with its final fraction of filters removed.
// ConfigError when there is none, or when an override names a layer it cannot narrow.
std::vector<std::pair<ChannelChain, double>> structured_targets(const ArchSpec& spec,
                                                                const Plan& plan,
                                                                const PruneOptions& o,
                                                                std::vector<std::string>& skipped) {
  const auto chains = channel_chains(spec, &skipped);
  std::set<std::string> producers;
  for (const auto& c : chains) producers.insert(std::to_string(c.producer) + ".weight");
  const auto why_not = [&skipped](const std::string& name) {
    const std::string layer = "layer " + name.substr(0, name.find('.')) + " ";
    for (const auto& s : skipped) {
      if (s.rfind(layer, 0) == 0) return s;
    }
    return name + " is inside a residual block";
  };
  for (const auto& [name, target] : plan.overrides) {
    MCOMPRESS_CHECK(producers.count(name), ConfigError, "overrides: '", name,
                    "' cannot be pruned structurally: ", why_not(name));
  }
  std::vector<std::pair<ChannelChain, double>> targets;
  for (const auto& c : chains) {
    const std::string name = std::to_string(c.producer) + ".weight";
    if (plan.excluded.count(name)) continue;
    const auto it = plan.overrides.find(name);
    targets.emplace_back(c, it != plan.overrides.end() ? it->second : o.target);
  }
  MCOMPRESS_CHECK(!targets.empty(), ConfigError, "structured pruning has no layer to prune in '",
                  spec.name, "': ", join(skipped, "; "),
                  plan.excluded.empty() ? "" : "; the others are excluded",
                  "; use method magnitude instead");
  return targets;
}

// Structured pruning: every chain's producer loses round(s · width) of its original filters.
void run_structured(Model& model, const Plan& plan, const PruneOptions& o, const Dataset& train,
                    const Dataset& val, const std::map<std::string, int64_t>& numel_before,
                    PruneReport& report) {
  std::vector<std::string> skipped;
  const auto targets = structured_targets(model.spec(), plan, o, skipped);
  for (const auto& s : skipped) report.notes.push_back("not pruned: " + s);
  std::map<int64_t, int64_t> original;  // producer → its width before pruning
  for (const auto& [chain, target] : targets) {
    original[chain.producer] =
        prunable_width(model.spec().layers[static_cast<size_t>(chain.producer)]);
  }

  const bool iterative = o.schedule == PruneSchedule::kIterative;
  const int64_t rounds = iterative ? o.rounds : 1;
  const double fraction = iterative ? o.round_fraction : 0;
  const auto scheduled = iterative_sparsities(o.target, rounds, fraction);
  for (int64_t r = 1; r <= rounds; ++r) {
    for (const auto& [chain, target] : targets) {
      const int64_t width0 = original.at(chain.producer);
      const double s = round_sparsity(target, r, rounds, fraction);
      const int64_t keep =
          std::max<int64_t>(1, width0 - std::llround(s * static_cast<double>(width0)));
      const std::string weight = std::to_string(chain.producer) + ".weight";
      if (keep >= model.tensor(weight).size(0)) continue;
      model = remove_channels(model, chain,
                              channels_to_keep(filter_l1_norms(model.tensor(weight)), keep));
    }
    finetune(model, o, train, val, r);
    auto round = round_report(model, plan, r, scheduled[static_cast<size_t>(r - 1)], val);
    round.sparsity = removed_fraction(plan, model, numel_before);
    report.rounds.push_back(round);
  }
  for (const auto& [chain, target] : targets) {
    const auto& l = model.spec().layers[static_cast<size_t>(chain.producer)];
    report.widths.push_back({std::to_string(chain.producer) + " (" + to_string(l.type) + ")",
                             original.at(chain.producer), prunable_width(l)});
  }
}

// How a prunable tensor was treated, for the report.
std::string rule_of(const std::string& name, const Plan& plan, const PruneOptions& o,
                    const std::set<std::string>& structured_producers) {
  if (plan.excluded.count(name)) return "excluded";
  // Structured: a layer without a channel chain (the classes, residual convolutions) keeps its
  // width; it may still lose input channels.
  if (o.method == PruneMethod::kStructured && structured_producers.count(name) == 0) return "fixed";
  if (plan.overrides.count(name)) return "override";
  return o.scope == PruneScope::kGlobal && o.method == PruneMethod::kMagnitude ? "global" : "layer";
}

}  // namespace

constexpr std::array<EnumName<PruneMethod>, 2> kPruneMethods = {
    {{PruneMethod::kMagnitude, "magnitude"}, {PruneMethod::kStructured, "structured"}}};
constexpr std::array<EnumName<PruneScope>, 2> kPruneScopes = {
    {{PruneScope::kLayer, "layer"}, {PruneScope::kGlobal, "global"}}};
constexpr std::array<EnumName<PruneSchedule>, 3> kPruneSchedules = {
    {{PruneSchedule::kOneShot, "one-shot"},
     {PruneSchedule::kIterative, "iterative"},
     {PruneSchedule::kGradual, "gradual"}}};

std::string to_string(PruneMethod m) { return enum_to_string(kPruneMethods, m); }
PruneMethod parse_prune_method(const std::string& name) {
  return parse_enum<ConfigError>(kPruneMethods, name, "pruning method");
}
std::string to_string(PruneScope s) { return enum_to_string(kPruneScopes, s); }
PruneScope parse_prune_scope(const std::string& name) {
  return parse_enum<ConfigError>(kPruneScopes, name, "pruning scope");
}
std::string to_string(PruneSchedule s) { return enum_to_string(kPruneSchedules, s); }
PruneSchedule parse_prune_schedule(const std::string& name) {
  return parse_enum<ConfigError>(kPruneSchedules, name, "pruning schedule");
}

void PruneOptions::validate() const {
  MCOMPRESS_CHECK(target >= 0 && target < 1, ConfigError, "target must be in [0, 1), got ", target);
  MCOMPRESS_CHECK(rounds >= 1, ConfigError, "rounds must be >= 1, got ", rounds);
  MCOMPRESS_CHECK(round_fraction >= 0 && round_fraction < 1, ConfigError,
                  "round_fraction must be in [0, 1) (0 = the same fraction every round), got ",
                  round_fraction);
  if (schedule == PruneSchedule::kIterative) iterative_sparsities(target, rounds, round_fraction);
  MCOMPRESS_CHECK(finetune_epochs >= 0, ConfigError, "finetune_epochs must be >= 0, got ",
                  finetune_epochs);
  TrainOptions t = finetune;
  t.epochs = 1;  // the count comes from finetune_epochs, checked above
  t.validate();
  for (const auto& [name, t_override] : overrides) {
    MCOMPRESS_CHECK(t_override >= 0 && t_override < 1, ConfigError, "overrides: target of '", name,
                    "' must be in [0, 1), got ", t_override);
  }
  if (schedule == PruneSchedule::kGradual) {
    MCOMPRESS_CHECK(finetune_epochs >= 1, ConfigError,
                    "finetune_epochs must be >= 1 for the gradual schedule (it prunes while "
                    "fine-tuning), got ",
                    finetune_epochs);
    MCOMPRESS_CHECK(gradual.initial_sparsity >= 0 && gradual.initial_sparsity <= target,
                    ConfigError, "gradual.initial_sparsity must be in [0, target = ", target,
                    "], got ", gradual.initial_sparsity);
    MCOMPRESS_CHECK(gradual.begin_step >= 0, ConfigError, "gradual.begin_step must be >= 0, got ",
                    gradual.begin_step);
    MCOMPRESS_CHECK(gradual.end_step == 0 || gradual.end_step > gradual.begin_step, ConfigError,
                    "gradual.end_step must be after gradual.begin_step (", gradual.begin_step,
                    "), or 0 for three quarters of the fine-tuning, got ", gradual.end_step);
    MCOMPRESS_CHECK(gradual.frequency >= 1, ConfigError, "gradual.frequency must be >= 1, got ",
                    gradual.frequency);
  }
  if (method == PruneMethod::kStructured) {
    MCOMPRESS_CHECK(scope == PruneScope::kLayer, ConfigError,
                    "scope must be layer for structured pruning (filter norms of different "
                    "layers are not comparable), got ",
                    to_string(scope));
    MCOMPRESS_CHECK(schedule != PruneSchedule::kGradual, ConfigError,
                    "schedule gradual applies to magnitude pruning; structured takes one-shot "
                    "or iterative");
  }
}

void PruneOptions::validate(const Model& model) const {
  validate();
  const Plan plan = make_plan(model, *this);
  if (method != PruneMethod::kStructured) return;
  MCOMPRESS_CHECK(model.is_sequential(), ConfigError, "method structured: '", model.name(),
                  "' is a graph model, and structured pruning follows layer chains only so far; "
                  "use method magnitude");
  std::vector<std::string> skipped;
  structured_targets(model.spec(), plan, *this, skipped);
}

double TensorReport::density() const {
  return total > 0 ? static_cast<double>(kept) / static_cast<double>(total) : 1.0;
}

double PruneReport::sparsity() const {
  return total > 0 ? 1.0 - static_cast<double>(kept) / static_cast<double>(total) : 0.0;
}

PruneReport prune_model(Model& model, const PruneOptions& o, const Dataset& train,
                        const Dataset& val, const Model* rewind_to) {
  const auto t0 = std::chrono::steady_clock::now();
  o.validate(model);
  MCOMPRESS_CHECK(model.quant.empty(), ConfigError, "the model is quantized (", model.quant.mode,
                  "); prune its fp32 original, then quantize");
  if (o.finetune_epochs > 0)
    check_dataset(train, model.input_shape(), model.num_classes(), "fine-tuning");
  if (val.size() > 0) check_dataset(val, model.input_shape(), model.num_classes(), "validation");
  if (rewind_to != nullptr) {
    MCOMPRESS_CHECK(o.method == PruneMethod::kMagnitude && o.schedule != PruneSchedule::kGradual,
                    ConfigError, "rewind applies to one-shot and iterative magnitude pruning, not ",
                    to_string(o.method), " ", to_string(o.schedule));
    check_rewind_model(model, *rewind_to);
  }

  const Plan plan = make_plan(model, o);
  PruneReport report;
  report.options = o;
  report.rewound = rewind_to != nullptr;
  report.spec_before = model.architecture_json();
  report.parameters_before = model.parameter_count();
  report.nonzero_before = nonzero_parameters(model, model.tensors());
  report.val_accuracy_before = val_accuracy(model, val);
  std::map<std::string, int64_t> numel_before;
  for (const auto& info : model.tensor_infos()) {
    numel_before[info.name] = model.tensor(info.name).numel();
  }

  if (o.method == PruneMethod::kStructured) {
    run_structured(model, plan, o, train, val, numel_before, report);
  } else if (o.schedule == PruneSchedule::kGradual) {
    run_gradual(model, plan, o, train, val, report);
  } else {
    run_rounds(model, plan, o, train, val, rewind_to, report);
  }

  std::set<std::string> structured_producers;
  if (o.method == PruneMethod::kStructured) {
    for (const auto& c : channel_chains(model.spec()))
      structured_producers.insert(std::to_string(c.producer) + ".weight");
  }
  for (const auto& name : plan.prunable) {
    TensorReport t;
    t.name = name;
    const auto& w = model.tensor(name);
    t.shape = w.sizes().vec();
    if (o.method == PruneMethod::kStructured) {
      t.kept = w.numel();
      t.total = numel_before.at(name);
    } else {
      const auto d = kept_of(name, model.tensors(), model.masks);
      t.kept = d.kept;
      t.total = d.total;
    }
    t.rule = rule_of(name, plan, o, structured_producers);
    const auto it = plan.overrides.find(name);
    t.target = t.rule == "excluded" || t.rule == "fixed" ? 0
               : it != plan.overrides.end()              ? it->second
                                                         : o.target;
    report.kept += t.kept;
    report.total += t.total;
    report.tensors.push_back(std::move(t));
  }
  report.spec_after = model.architecture_json();
  report.parameters_after = model.parameter_count();
  report.nonzero_after = nonzero_parameters(model, model.tensors());
  report.val_accuracy_after =
      report.rounds.empty() ? val_accuracy(model, val) : report.rounds.back().val_accuracy;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

std::string PruneReport::to_json() const {
  using json = nlohmann::json;
  const PruneOptions& o = options;
  json doc;
  doc["stage"] = "prune";
  doc["options"] = {{"method", to_string(o.method)},
                    {"scope", to_string(o.scope)},
                    {"target", o.target},
                    {"schedule", to_string(o.schedule)},
                    {"rounds", o.rounds},
                    {"round_fraction", o.round_fraction},
                    {"gradual",
                     {{"initial_sparsity", o.gradual.initial_sparsity},
                      {"begin_step", o.gradual.begin_step},
                      {"end_step", o.gradual.end_step},
                      {"frequency", o.gradual.frequency}}},
                    {"exclude", o.exclude},
                    {"overrides", o.overrides},
                    {"finetune_epochs", o.finetune_epochs},
                    {"finetune", json::parse(TrainResult{}.to_json(o.finetune)).at("options")},
                    {"rewind", rewound}};
  doc["metrics"] = {{"sparsity", sparsity()},
                    {"kept", kept},
                    {"total", total},
                    {"parameters_before", parameters_before},
                    {"parameters_after", parameters_after},
                    {"nonzero_before", nonzero_before},
                    {"nonzero_after", nonzero_after},
                    {"val_accuracy_before", val_accuracy_before},
                    {"val_accuracy_after", val_accuracy_after}};
  auto& ts = doc["tensors"] = json::array();
  for (const auto& t : tensors) {
    ts.push_back({{"name", t.name},
                  {"shape", t.shape},
                  {"kept", t.kept},
                  {"total", t.total},
                  {"density", t.density()},
                  {"rule", t.rule},
                  {"target", t.target}});
  }
  auto& rs = doc["rounds"] = json::array();
  for (const auto& r : rounds) {
    rs.push_back({{"round", r.round},
                  {"target", r.target},
                  {"sparsity", r.sparsity},
                  {"nonzero", r.nonzero},
                  {"val_accuracy", r.val_accuracy}});
  }
  auto& ws = doc["widths"] = json::array();
  for (const auto& w : widths)
    ws.push_back({{"layer", w.layer}, {"before", w.before}, {"after", w.after}});
  if (!widths.empty()) {
    doc["spec_before"] = json::parse(spec_before);
    doc["spec_after"] = json::parse(spec_after);
  }
  doc["notes"] = notes;
  doc["seconds"] = seconds;
  return doc.dump();
}

}  // namespace mcompress::prune
