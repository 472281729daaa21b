// The run loop: the data, the start model (trained, cached or loaded), then each stage in
// order on every rank, with rank 0 measuring (measurement.h), checkpointing (checkpoints.h)
// and writing the reports (reports.h).

#include "mcompress/pipeline/runner.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include <torch/torch.h>
#include <unistd.h>

#include "checkpoints.h"
#include "mcompress/core/architecture.h"
#include "mcompress/core/atomic_file.h"
#include "mcompress/core/dataset.h"
#include "mcompress/core/distributed.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/version.h"
#include "measurement.h"
#include "reports.h"

namespace mcompress::pipeline {
namespace fs = std::filesystem;
namespace {

using detail::Checkpoints;
using detail::flag;
using detail::guard_violation;
using detail::log_header;
using detail::log_row;
using detail::measure;
using detail::remove_stale_temps;
using detail::RunData;
using detail::write_reports;

constexpr int64_t kCalibBatchSize = 64;

RunData load_run_data(const DataConfig& d, uint64_t seed) {
  RunData r;
  Dataset all = load_dataset(d.path, Split::kTrain);
  if (d.limit > 0 && d.limit < all.size()) all = all.slice(0, d.limit);
  MCOMPRESS_CHECK(all.size() > 0, DataError, "data: the training split of '", d.path, "' is empty");
  std::tie(r.train, r.val) = split_train_val(all, d.val_fraction, seed);
  MCOMPRESS_CHECK(r.val.size() > 0, DataError, "data: val_fraction ", d.val_fraction, " of ",
                  all.size(), " examples leaves no validation examples");
  const auto order = shuffled_indices(r.train.size(), seed + 1);
  const int64_t n = std::min<int64_t>(r.train.size(), d.calib_batches * kCalibBatchSize);
  r.calib = r.train.subset(std::vector<int64_t>(order.begin(), order.begin() + n));
  r.test = load_dataset(d.path, Split::kTest);
  if (d.test_limit > 0 && d.test_limit < r.test.size()) r.test = r.test.slice(0, d.test_limit);
  MCOMPRESS_CHECK(r.test.size() > 0, DataError, "data: the test split of '", d.path, "' is empty");
  return r;
}

// A seed per stage position, so that inserting a stage does not change what the ones before
// it draw.
uint64_t stage_seed(uint64_t seed, size_t index) { return seed * 1000003ULL + index + 1; }

// save_model's options for the files the run writes over: its checkpoints, the start-model
// cache and the output (run_recipe refused an existing output without --force before the
// first stage).
SaveOptions overwriting() {
  SaveOptions options;
  options.overwrite = true;
  return options;
}

std::string history_entry(const std::string& stage, const std::string& path, const StageReport& r,
                          double seconds) {
  nlohmann::json doc;
  doc["stage"] = stage;
  doc["recipe_path"] = path;
  doc["options"] = r.options;
  doc["metrics"] = r.metrics;
  if (!r.warnings.empty()) doc["warnings"] = r.warnings;
  doc["seconds"] = seconds;
  doc["producer"] = version_details();
  return doc.dump();
}

// How long the other ranks wait while rank 0 alone measures a stage's model and writes its
// checkpoint (minutes for a large model; the group's timeout is for a training step). A rank 0
// that dies meanwhile is noticed at once all the same: its connections close.
constexpr std::chrono::milliseconds kRootWorkWait = std::chrono::hours(6);

// Data parallel: rank 0's text on every rank (others pass ""); a world of 1 returns it as is.
// `timeout` as Distributed::broadcast's.
std::string text_from_rank0(const std::string& text, const std::string& what,
                            std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
  Distributed& dist = distributed();
  if (!dist.active()) return text;
  auto size = torch::tensor({static_cast<int64_t>(text.size())}, torch::kLong);
  dist.broadcast({size}, what, timeout);
  if (size.item<int64_t>() == 0) return "";
  auto bytes = torch::zeros({size.item<int64_t>()}, torch::kUInt8);
  if (dist.is_root()) std::memcpy(bytes.data_ptr(), text.data(), text.size());
  dist.broadcast({bytes}, what);
  return std::string(reinterpret_cast<const char*>(bytes.data_ptr()),
                     static_cast<size_t>(bytes.numel()));
}

// Data parallel: rank 0's model on every rank, sent as its model file's bytes (built and read
// in memory), so that input models, caches and checkpoints need to exist only on rank 0's
// machine.
Model model_from_rank0(std::optional<Model> on_root, const std::string& what) {
  Distributed& dist = distributed();
  if (!dist.active()) return std::move(*on_root);
  std::string bytes;
  if (dist.is_root()) bytes = save_model_to_bytes(*on_root);
  bytes = text_from_rank0(bytes, what);
  if (dist.is_root()) return std::move(*on_root);
  return load_model_from_bytes(bytes, "rank 0's " + what);
}

Model start_model(const Recipe& recipe, const RunData& data, const RunOptions& o,
                  StageReport& report, double& seconds) {
  const auto t0 = std::chrono::steady_clock::now();
  Distributed& dist = distributed();
  if (!recipe.model.path.empty()) {
    Model model =
        dist.active()
            ? model_from_rank0(dist.is_root() ? std::optional<Model>(load_model(recipe.model.path))
                                              : std::nullopt,
                               "start model")
            : load_model(recipe.model.path);
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return model;
  }
  const AnyArchitecture arch = resolve_architecture(recipe.model.arch);
  TrainOptions t = recipe.model.train;
  t.seed = recipe.seed;
  t.progress = o.progress;
  // What identifies a trained start model: the architecture, the data and how it was trained.
  const nlohmann::json identity = {
      {"arch", nlohmann::json::parse(architecture_json(arch))},
      {"data", recipe.data.path},
      {"limit", recipe.data.limit},
      {"val_fraction", recipe.data.val_fraction},
      {"train", nlohmann::json::parse(TrainResult{}.to_json(t)).at("options")}};
  report.options = {{"arch", recipe.model.arch}, {"epochs", t.epochs}, {"lr", t.lr}};
  const std::string& cache = recipe.model.cache;
  // The cache lives on rank 0's disk: rank 0 decides whether it serves, and sends it.
  std::optional<Model> cached;
  if (dist.is_root() && !cache.empty() && fs::exists(cache)) {
    cached.emplace(load_model(cache));
    if (cached->history.empty() || cached->recipe != identity.dump()) {
      cached.reset();
      if (o.log) *o.log << "cache " << cache << " was trained differently; training again\n";
    }
  }
  if (text_from_rank0(cached ? "cached" : "", "the start-model cache decision") == "cached") {
    report.metrics = {{"cached", cache}};
    Model model = model_from_rank0(std::move(cached), "cached start model");
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return model;
  }
  Model model = initialize_model(arch, recipe.seed);
  check_dataset(data.train, model.input_shape(), model.num_classes(), "data");
  const auto result = train_model(model, data.train, data.val, t);
  model.history.push_back(result.to_json(t));
  report.metrics = {{"best_epoch", result.best_epoch}};
  if (!cache.empty() && dist.is_root()) {
    Model copy = model.clone();
    copy.recipe = identity.dump();  // the cache's own provenance: what it was trained from
    copy.seed = recipe.seed;
    save_model(copy, cache, overwriting());
  }
  seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return model;
}

}  // namespace

RunResult run_recipe(const Recipe& recipe, const RunOptions& o) {
  // Data parallel: every rank runs every stage (their training is shared); rank 0 alone
  // writes checkpoints, the output and the reports, measures, and decides the guards.
  Distributed& dist = distributed();
  const bool root = dist.is_root();
  // Fail before hours of work on what can be known now: the output, its folder, and that it
  // is not the input model under another name.
  if (root) check_output_file(recipe.output, o.overwrite || o.resume, {recipe.model.path});

  const RunData data = load_run_data(recipe.data, recipe.seed);
  Checkpoints ckpt(recipe);
  if (root) remove_stale_temps(ckpt.targets(), o.log);
  std::vector<StageRow> rows;
  std::optional<Model> current;  // the model as the stages leave it
  if (o.resume) {
    std::optional<Model> last;
    std::string state;
    if (root) {
      auto [done, model] = ckpt.resume();
      for (const auto& r : done) state += r.to_json().dump() + "\n";
      last.emplace(std::move(model));
    }
    for (std::istringstream lines(text_from_rank0(state, "checkpoint state"));
         std::getline(lines, state);) {
      rows.push_back(StageRow::from_json(nlohmann::json::parse(state)));
    }
    current.emplace(model_from_rank0(std::move(last), "checkpoint model"));
    MCOMPRESS_CHECK(rows.size() >= 1 && rows.size() <= recipe.stages.size() + 1, FormatError,
                    ckpt.dir().string(), ": checkpoint state does not fit the recipe");
    if (o.log) {
      *o.log << "resuming after " << rows.size() - 1 << " of " << recipe.stages.size()
             << " stages (" << ckpt.dir().string() << ")\n";
    }
  } else {
    StageReport report;
    double seconds = 0;
    current.emplace(start_model(recipe, data, o, report, seconds));
    // Only now: a start model that cannot be read leaves no checkpoint folder behind.
    if (root) ckpt.start_fresh();
    Model& model = *current;
    model.recipe = recipe.text;
    model.seed = recipe.seed;
    const std::string file = ckpt.file(0, recipe.model.path.empty() ? "train" : "start");
    StageRow row;
    if (root) {
      save_model(model, file, overwriting());
      row = measure(model, file, data, recipe, o);
    }
    row.stage = recipe.model.path.empty() ? "train " + recipe.model.arch : "start";
    row.status = "ok";
    row.seconds = seconds;
    row.options = report.options;
    row.metrics = report.metrics;
    rows.push_back(row);
    if (root) ckpt.commit(rows, file);
    dist.barrier("rank 0's measurement of the start model", kRootWorkWait);
  }
  Model& model = *current;
  check_dataset(data.train, model.input_shape(), model.num_classes(), "data");
  ModelTraits traits;
  traits.quant_mode = model.quant.mode;
  traits.pruned = !model.masks.empty();
  // On resume the model already carries the completed stages; check the rest from there.
  Recipe rest = recipe;
  rest.stages.erase(rest.stages.begin(), rest.stages.begin() + static_cast<long>(rows.size() - 1));
  if (const std::string why = check_stage_order(rest, traits); !why.empty()) {
    throw ConfigError(recipe.source + ": " + why);
  }

  if (o.log) {
    // Printed once the work has started, so a recipe that fails on its inputs prints one line.
    *o.log << "recipe " << recipe.source << ", seed " << recipe.seed << ", " << o.threads
           << " thread(s)\n";
    log_header(*o.log);
    for (const auto& r : rows) log_row(*o.log, r, rows.front());
  }
  // The last row whose model was kept: flags and per-stage guards compare against it.
  size_t kept = rows.size() - 1;
  for (size_t k = rows.size(); k-- > 0;) {
    if (rows[k].status.rfind("skipped", 0) != 0) {
      kept = k;
      break;
    }
  }
  for (size_t i = rows.size() - 1; i < recipe.stages.size(); ++i) {
    const RecipeStage& s = recipe.stages[i];
    Model before = model.clone();
    const StageContext ctx{data.train, data.val,  data.calib, stage_seed(recipe.seed, i),
                           o.threads,  o.progress};
    const auto t0 = std::chrono::steady_clock::now();
    StageReport report = s.stage->apply(model, ctx);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    report.options = s.options;
    model.history.push_back(history_entry(s.name, s.path, report, seconds));
    const std::string file = ckpt.file(i + 1, s.name);
    StageRow row;
    if (root) {
      save_model(model, file, overwriting());
      row = measure(model, file, data, recipe, o);
    }
    row.stage = s.name;
    row.path = s.path;
    row.status = "ok";
    row.seconds = seconds;
    row.options = s.options;
    row.metrics = report.metrics;
    row.warnings = report.warnings;
    std::string why;
    if (root) {
      flag(row, rows[kept], before, model, o.latency_seconds);
      why = guard_violation(row, rows[kept], rows.front(), s, recipe);
    }
    // Rank 0 measured; every rank follows its verdict.
    why = text_from_rank0(why, "the guard's verdict", kRootWorkWait);
    if (!why.empty()) {
      if (!(s.guard.max_accuracy_drop >= 0 ? s.guard.skip : recipe.guard.skip)) {
        if (!root) {
          throw Error("rank " + std::to_string(dist.rank()) + ": rank 0 stopped the run at " +
                      s.path + " (guard on_violation: fail)");
        }
        fs::remove(file);
        if (o.log) log_row(*o.log, row, rows.front());
        throw Error(s.path + ": " + why +
                    "; stopped (guard on_violation: fail). The stages "
                    "before it are checkpointed in '" +
                    ckpt.dir().string() + "'");
      }
      row.status = "skipped: " + why;
      model = std::move(before);  // undo the stage
      if (root) save_model(model, file, overwriting());
    } else {
      kept = rows.size();
    }
    rows.push_back(row);
    if (root) ckpt.commit(rows, file);
    if (o.log) log_row(*o.log, rows.back(), rows.front());
  }
  RunResult result;
  result.output = recipe.output;
  if (!root) return result;

  // The output: the last kept model, with the whole run's measurements as provenance.
  nlohmann::json summary;
  summary["stage"] = "pipeline";
  summary["recipe_source"] = recipe.source;
  summary["seed"] = recipe.seed;
  summary["threads"] = o.threads;
  summary["producer"] = version_details();
  summary["rows"] = nlohmann::json::array();
  for (const auto& r : rows) {
    auto j = r.to_json();
    j.erase("options");
    j.erase("metrics");
    summary["rows"].push_back(j);
  }
  model.history.push_back(summary.dump());
  save_model(model, recipe.output, overwriting());
  result.rows = rows;
  result.reports = report_paths(recipe.output);
  write_reports(recipe, o, rows, result.reports);
  return result;
}

}  // namespace mcompress::pipeline
