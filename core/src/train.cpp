#include "mcompress/core/train.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "mcompress/core/distributed.h"
#include "mcompress/core/enum_names.h"
#include "mcompress/core/error.h"
#include "mcompress/core/graph_network.h"
#include "mcompress/core/progress.h"

namespace mcompress {
namespace {

double lr_at(const TrainOptions& o, int64_t epoch /*0-based*/) {
  switch (o.schedule) {
    case LrSchedule::kConstant:
      return o.lr;
    case LrSchedule::kStep:
      return o.lr * std::pow(o.gamma, static_cast<double>(epoch / o.step_size));
    case LrSchedule::kCosine:
      // Per-epoch cosine annealing to 0 at the end of the last epoch (torch's CosineAnnealingLR
      // with T_max = epochs, eta_min = 0).
      return 0.5 * o.lr *
             (1.0 + std::cos(M_PI * static_cast<double>(epoch) / static_cast<double>(o.epochs)));
  }
  return o.lr;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(TrainableNetwork& net,
                                                        const TrainOptions& o) {
  if (o.optimizer == OptimizerKind::kSgd) {
    return std::make_unique<torch::optim::SGD>(
        net.parameters(),
        torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(o.weight_decay));
  }
  return std::make_unique<torch::optim::Adam>(
      net.parameters(), torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
}

void set_lr(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

std::map<std::string, torch::Tensor> snapshot(const TrainableNetwork& net) {
  std::map<std::string, torch::Tensor> copy;
  for (const auto& [name, value] : net.state()) copy[name] = value.detach().clone();
  return copy;
}

void restore(TrainableNetwork& net, const std::map<std::string, torch::Tensor>& saved) {
  torch::NoGradGuard no_grad;
  for (auto& [name, value] : net.state()) value.copy_(saved.at(name));
}

// Every trainable parameter's gradient (zeros where backward left none, so that every rank
// packs the same layout), scaled by this rank's share of the global batch and summed over
// ranks: the mean gradient of the global batch, as one process would compute it.
void all_reduce_gradients(TrainableNetwork& net, Distributed& dist, double share) {
  std::vector<torch::Tensor> grads;
  for (auto& p : net.parameters()) {
    if (!p.requires_grad()) continue;
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    p.mutable_grad().mul_(share);
    grads.push_back(p.grad());
  }
  dist.all_reduce_sum(grads, "gradients");
}

// Batchnorm running statistics averaged over ranks: each rank saw only its shard of every
// batch, and the model every rank ends with must be the same.
void average_batchnorm_statistics(TrainableNetwork& net, Distributed& dist) {
  std::vector<torch::Tensor> stats;
  for (const auto& item : net.named_buffers()) {
    const auto& name = item.key();
    if (name.size() >= 12 && (name.rfind("running_mean") == name.size() - 12 ||
                              name.rfind("running_var") == name.size() - 11)) {
      stats.push_back(item.value());
    }
  }
  if (stats.empty()) return;
  dist.all_reduce_sum(stats, "batchnorm statistics");
  torch::NoGradGuard no_grad;
  for (auto& t : stats) t.div_(dist.world_size());
}

}  // namespace

Metrics evaluate_sharded(TrainableNetwork& net, const Dataset& data, int64_t batch_size) {
  Distributed& dist = distributed();
  if (!dist.active()) return evaluate_network(net, data, batch_size);
  const Shard shard = shard_of(data.size(), dist.rank(), dist.world_size());
  const Metrics local = evaluate_network(net, data.slice(shard.begin, shard.end), batch_size);
  auto sums = torch::tensor(
      {local.loss * static_cast<double>(local.samples),
       local.accuracy * static_cast<double>(local.samples), static_cast<double>(local.samples)},
      torch::kDouble);
  dist.all_reduce_sum({sums}, "validation figures");
  Metrics m;
  m.samples = static_cast<int64_t>(std::llround(sums[2].item<double>()));
  if (m.samples > 0) {
    m.loss = sums[0].item<double>() / static_cast<double>(m.samples);
    m.accuracy = std::round(sums[1].item<double>()) / static_cast<double>(m.samples);
  }
  return m;
}

constexpr std::array<EnumName<OptimizerKind>, 2> kOptimizers = {
    {{OptimizerKind::kSgd, "sgd"}, {OptimizerKind::kAdam, "adam"}}};
constexpr std::array<EnumName<LrSchedule>, 3> kLrSchedules = {{{LrSchedule::kConstant, "constant"},
                                                               {LrSchedule::kStep, "step"},
                                                               {LrSchedule::kCosine, "cosine"}}};

std::string to_string(OptimizerKind kind) { return enum_to_string(kOptimizers, kind); }
OptimizerKind parse_optimizer(const std::string& name) {
  return parse_enum<ConfigError>(kOptimizers, name, "optimizer");
}
std::string to_string(LrSchedule s) { return enum_to_string(kLrSchedules, s); }
LrSchedule parse_lr_schedule(const std::string& name) {
  return parse_enum<ConfigError>(kLrSchedules, name, "lr schedule");
}

void TrainOptions::validate() const {
  MCOMPRESS_CHECK(epochs >= 1, ConfigError, "epochs must be >= 1, got ", epochs);
  MCOMPRESS_CHECK(batch_size >= 1, ConfigError, "batch_size must be >= 1, got ", batch_size);
  MCOMPRESS_CHECK(lr > 0 && std::isfinite(lr), ConfigError, "lr must be > 0, got ", lr);
  MCOMPRESS_CHECK(momentum >= 0 && momentum < 1, ConfigError, "momentum must be in [0, 1), got ",
                  momentum);
  MCOMPRESS_CHECK(weight_decay >= 0 && std::isfinite(weight_decay), ConfigError,
                  "weight_decay must be >= 0, got ", weight_decay);
  MCOMPRESS_CHECK(step_size >= 1, ConfigError, "step_size must be >= 1, got ", step_size);
  MCOMPRESS_CHECK(gamma > 0 && gamma <= 1, ConfigError, "gamma must be in (0, 1], got ", gamma);
  MCOMPRESS_CHECK(early_stop_patience >= 0, ConfigError, "early_stop_patience must be >= 0, got ",
                  early_stop_patience);
}

Metrics evaluate_network(TrainableNetwork& net, const Dataset& data, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  const bool was_training = net.is_training();
  net.eval();
  Metrics m;
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t begin = 0; begin < data.size(); begin += batch_size) {
    const int64_t end = std::min(begin + batch_size, data.size());
    auto x = data.x.slice(0, begin, end);
    auto y = data.y.slice(0, begin, end);
    auto logits = net.forward(x);
    loss_sum += torch::cross_entropy_loss(logits, y, {}, at::Reduction::Sum).item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  m.samples = data.size();
  if (m.samples > 0) {
    m.accuracy = static_cast<double>(correct) / static_cast<double>(m.samples);
    m.loss = loss_sum / static_cast<double>(m.samples);
  }
  net.train(was_training);
  return m;
}

TrainResult train(TrainableNetwork& net, const Dataset& train_data, const Dataset& val,
                  const TrainOptions& o, const TrainHooks& hooks) {
  o.validate();
  MCOMPRESS_CHECK(train_data.size() > 0, DataError, "training data set '", train_data.source,
                  "' is empty");
  const auto t0 = std::chrono::steady_clock::now();
  Distributed& dist = distributed();
  // Dropout masks; other ranks draw their own (rank 0 draws what one process would).
  torch::manual_seed(o.seed + 7919ULL * static_cast<uint64_t>(dist.rank()));
  auto optimizer = make_optimizer(net, o);
  Progress progress(std::cerr, Progress::stderr_is_terminal(), o.progress && dist.is_root());
  const int64_t bytes_at_start = dist.bytes_reduced();
  const double collective_seconds_at_start = dist.seconds_in_collectives();
  const bool has_val = val.size() > 0;

  TrainResult result;
  double best_val = -1;
  int64_t epochs_without_gain = 0;
  std::map<std::string, torch::Tensor> best_state;
  const int64_t n = train_data.size();
  const int64_t batches = (n + o.batch_size - 1) / o.batch_size;
  int64_t step = 0;
  if (has_val && o.validate_start) {
    best_val = evaluate_sharded(net, val).accuracy;
    result.best_epoch = 0;
    if (o.restore_best) best_state = snapshot(net);
  }

  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    const auto e0 = std::chrono::steady_clock::now();
    EpochRecord record;
    record.epoch = epoch + 1;
    record.lr = lr_at(o, epoch);
    set_lr(*optimizer, record.lr);
    net.train();
    if (o.freeze_batchnorm) net.freeze_batchnorm();
    progress.begin_epoch(epoch + 1, o.epochs, batches);

    // Seeded per epoch so that resuming or re-running an epoch sees the same order.
    const auto order = torch::tensor(
        shuffled_indices(n, o.seed * 1000003ULL + static_cast<uint64_t>(epoch)), torch::kLong);
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    for (int64_t b = 0; b < batches; ++b) {
      const auto global = order.slice(0, b * o.batch_size, std::min(n, (b + 1) * o.batch_size));
      // Data parallel: this rank's contiguous part of the global batch.
      const Shard shard = shard_of(global.size(0), dist.rank(), dist.world_size());
      const auto idx = global.slice(0, shard.begin, shard.end);
      optimizer->zero_grad();
      if (shard.size() > 0) {
        const auto x = train_data.x.index_select(0, idx);
        const auto y = train_data.y.index_select(0, idx);
        if (hooks.before_batch) hooks.before_batch(idx);
        const auto logits = net.forward(x);
        const auto loss =
            hooks.loss ? hooks.loss(logits, x, y) : torch::cross_entropy_loss(logits, y);
        const double value = loss.item<double>();
        MCOMPRESS_CHECK(std::isfinite(value), Error, "training diverged at epoch ", epoch + 1,
                        " batch ", b + 1, " (loss is not finite); lower the lr");
        loss.backward();
        loss_sum += value * static_cast<double>(shard.size());
        correct += logits.argmax(1).eq(y).sum().item<int64_t>();
        seen += shard.size();
      }
      if (dist.active()) {
        all_reduce_gradients(
            net, dist, static_cast<double>(shard.size()) / static_cast<double>(global.size(0)));
      }
      optimizer->step();
      net.apply_masks();
      ++step;
      if (hooks.after_step) hooks.after_step(net, step);
      const double shown = static_cast<double>(std::max<int64_t>(seen, 1));
      progress.update(b + 1, loss_sum / shown, static_cast<double>(correct) / shown);
    }
    if (dist.active()) {
      auto sums = torch::tensor({loss_sum, static_cast<double>(correct)}, torch::kDouble);
      dist.all_reduce_sum({sums}, "training figures");
      loss_sum = sums[0].item<double>();
      correct = static_cast<int64_t>(std::llround(sums[1].item<double>()));
      if (!o.freeze_batchnorm) average_batchnorm_statistics(net, dist);
    }
    record.train_loss = loss_sum / static_cast<double>(n);
    record.train_accuracy = static_cast<double>(correct) / static_cast<double>(n);
    if (hooks.after_epoch) hooks.after_epoch(net, epoch + 1);

    std::ostringstream summary;
    if (has_val) {
      const auto m = evaluate_sharded(net, val);
      record.val_loss = m.loss;
      record.val_accuracy = m.accuracy;
      summary << "val_loss " << std::fixed;
      summary.precision(4);
      summary << m.loss << "  val_acc " << m.accuracy;
      if (m.accuracy > best_val) {
        best_val = m.accuracy;
        result.best_epoch = epoch + 1;
        epochs_without_gain = 0;
        if (o.restore_best) best_state = snapshot(net);
      } else {
        ++epochs_without_gain;
      }
    } else {
      result.best_epoch = epoch + 1;
    }
    record.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
    progress.end_epoch(summary.str());
    result.epochs.push_back(record);
    if (has_val && o.early_stop_patience > 0 && epochs_without_gain >= o.early_stop_patience) {
      result.stopped_early = epoch + 1 < o.epochs;
      break;
    }
  }
  if (has_val && o.restore_best && !best_state.empty()) restore(net, best_state);
  result.world_size = dist.world_size();
  if (step > 0) {
    result.bytes_all_reduced_per_step =
        static_cast<double>(dist.bytes_reduced() - bytes_at_start) / static_cast<double>(step);
    result.collective_seconds_per_step =
        (dist.seconds_in_collectives() - collective_seconds_at_start) / static_cast<double>(step);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

std::shared_ptr<TrainableNetwork> make_network(const Model& model) {
  std::shared_ptr<TrainableNetwork> net = GraphNetwork(model.graph()).ptr();
  net->load(model);
  return net;
}

TrainResult train_model(Model& model, const Dataset& train_data, const Dataset& val,
                        const TrainOptions& options, const TrainHooks& hooks) {
  const auto net = make_network(model);
  auto result = train(*net, train_data, val, options, hooks);
  net->store(model);
  return result;
}

namespace {
// Per-epoch figures with 6 significant digits: the history of a long fine-tuning is most of a
// compressed model's provenance, and digits beyond the sixth of a loss carry no information
// (a pruned mlp's history took 7.0 KB with 17 digits, most of the file's metadata).
double six_digits(double v) {
  if (v == 0.0 || !std::isfinite(v)) return v;
  char text[32];
  std::snprintf(text, sizeof(text), "%.6g", v);
  return std::strtod(text, nullptr);
}
}  // namespace

std::string TrainResult::to_json(const TrainOptions& o) const {
  nlohmann::json doc;
  doc["stage"] = "train";
  doc["options"] = {{"epochs", o.epochs},
                    {"batch_size", o.batch_size},
                    {"optimizer", to_string(o.optimizer)},
                    {"lr", o.lr},
                    {"momentum", o.momentum},
                    {"weight_decay", o.weight_decay},
                    {"schedule", to_string(o.schedule)},
                    {"early_stop_patience", o.early_stop_patience},
                    {"freeze_batchnorm", o.freeze_batchnorm},
                    {"validate_start", o.validate_start},
                    {"seed", o.seed}};
  auto& list = doc["epochs"] = nlohmann::json::array();
  for (const auto& e : epochs) {
    list.push_back({{"epoch", e.epoch},
                    {"lr", six_digits(e.lr)},
                    {"train_loss", six_digits(e.train_loss)},
                    {"train_accuracy", six_digits(e.train_accuracy)},
                    {"val_loss", six_digits(e.val_loss)},
                    {"val_accuracy", six_digits(e.val_accuracy)}});
  }
  doc["best_epoch"] = best_epoch;
  doc["stopped_early"] = stopped_early;
  // Only a data-parallel run says so: a one-process file stays byte for byte what it was.
  if (world_size > 1) {
    doc["distributed"] = {{"world_size", world_size},
                          {"bytes_all_reduced_per_step", bytes_all_reduced_per_step}};
  }
  return doc.dump();
}

}  // namespace mcompress
