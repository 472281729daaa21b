#include "mcompress/pipeline/runner.h"

#include <ATen/Parallel.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <sstream>
#include <utility>

#include <torch/torch.h>
#include <unistd.h>

#include "mcompress/core/atomic_file.h"
#include "mcompress/core/dataset.h"
#include "mcompress/core/distributed.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/table.h"
#include "mcompress/core/version.h"
#include "mcompress/core/zoo.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::pipeline {
namespace fs = std::filesystem;
namespace {

constexpr int64_t kCalibBatchSize = 64;
constexpr double kSlowerThreshold = 1.10;  // latency ratios below this are timing noise

struct RunData {
  Dataset train, val, calib, test;
};

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

std::string checkpoint_name(size_t index, const std::string& stage) {
  char prefix[24];
  std::snprintf(prefix, sizeof prefix, "%02zu-", index);
  return prefix + stage + ".h5";
}

// Parameters (conv/linear/batchnorm weights and biases; not running statistics) and their
// non-zeros.
std::pair<int64_t, int64_t> count_parameters(const Model& model) {
  int64_t total = 0, nonzero = 0;
  for (const auto& info : model.tensor_infos()) {
    if (info.role != TensorRole::kWeight && info.role != TensorRole::kBias) continue;
    const auto& t = model.tensor(info.name);
    total += t.numel();
    nonzero += t.count_nonzero().item<int64_t>();
  }
  return {total, nonzero};
}

StageRow measure(const Model& model, const std::string& file, const RunData& data,
                 const Recipe& recipe, const RunOptions& o) {
  StageRow row;
  row.file_bytes = static_cast<int64_t>(fs::file_size(file));
  std::tie(row.parameters, row.nonzeros) = count_parameters(model);
  runtime::ExecutorOptions deploy;
  deploy.batch_size = recipe.deploy_batch;
  const runtime::Executor exec(model, deploy);
  const auto test = runtime::evaluate(exec, data.test);
  row.test_accuracy = test.accuracy;
  row.test_loss = test.loss;
  row.val_accuracy = runtime::evaluate(exec, data.val).accuracy;
  // Latency with the kernels the auto policy picks for each batch size.
  runtime::ExecutorOptions b1 = deploy, b64 = deploy;
  b1.batch_size = 1;
  b64.batch_size = 64;
  row.latency_b1_ms =
      runtime::measure_latency(runtime::Executor(model, b1), 1, o.latency_seconds).median_ms;
  row.latency_b64_ms =
      recipe.deploy_batch == 64
          ? runtime::measure_latency(exec, 64, o.latency_seconds).median_ms
          : runtime::measure_latency(runtime::Executor(model, b64), 64, o.latency_seconds)
                .median_ms;
  return row;
}

// The latencies of `before` and `after` at one batch size measured side by side, alternating
// three times and keeping each model's fastest median: a stage's row and the previous row
// were measured minutes apart, and a busy machine in between looks like a slower model.
std::pair<double, double> latency_side_by_side(const Model& before, const Model& after,
                                               int64_t batch, double seconds) {
  runtime::ExecutorOptions options;
  options.batch_size = batch;
  const runtime::Executor a(before, options), b(after, options);
  double was = std::numeric_limits<double>::max(), now = was;
  for (int round = 0; round < 3; ++round) {
    was = std::min(was, runtime::measure_latency(a, batch, seconds).median_ms);
    now = std::min(now, runtime::measure_latency(b, batch, seconds).median_ms);
  }
  return {was, now};
}

// "Did not pay off" flags against the previous kept row (`before` is its model). Every stage
// is timed again side by side with the previous model, and flagged when it is slower there;
// the flag gives the side-by-side figures.
void flag(StageRow& row, const StageRow& previous, const Model& before, const Model& after,
          double seconds) {
  if (row.file_bytes >= previous.file_bytes) {
    row.flags.push_back(
        "not smaller on disk: " + format_bytes(static_cast<double>(previous.file_bytes)) + " -> " +
        format_bytes(static_cast<double>(row.file_bytes)));
  }
  auto slower = [&](int64_t batch, double was, double now) {
    // Rows measured apart mislead both ways (a busy moment inflates either one; in CI a start
    // row inflated to 6.5 ms at batch 64 made a model 424 times larger look 1.6x faster), so
    // no row pair is trusted.
    if (was <= 0 || now <= 0) return;
    std::tie(was, now) = latency_side_by_side(before, after, batch, seconds);
    if (now <= was * kSlowerThreshold) return;
    row.flags.push_back("slower at batch " + std::to_string(batch) + ": " + format_fixed(was, 3) +
                        " -> " + format_fixed(now, 3) + " ms (+" +
                        format_fixed((now / was - 1) * 100, 0) + "%, timed side by side)");
  };
  slower(1, previous.latency_b1_ms, row.latency_b1_ms);
  slower(64, previous.latency_b64_ms, row.latency_b64_ms);
}

// "" when within the guards, else why not.
std::string guard_violation(const StageRow& row, const StageRow& previous, const StageRow& start,
                            const RecipeStage& stage, const Recipe& recipe) {
  auto check = [&](const GuardConfig& g, const StageRow& ref, const std::string& what,
                   const std::string& option) -> std::string {
    if (g.max_accuracy_drop < 0) return "";
    const double drop = (ref.val_accuracy - row.val_accuracy) * 100;
    if (drop <= g.max_accuracy_drop) return "";
    return "validation accuracy " + format_fixed(row.val_accuracy * 100, 2) + "% is " +
           format_fixed(drop, 2) + " points below " + what + " (" +
           format_fixed(ref.val_accuracy * 100, 2) + "%), more than " + option + " " +
           format_fixed(g.max_accuracy_drop, 2);
  };
  std::string why = check(stage.guard, previous, "the previous stage's",
                          stage.path.substr(0, stage.path.rfind('.')) + ".guard.max_accuracy_drop");
  if (why.empty()) why = check(recipe.guard, start, "the start model's", "guard.max_accuracy_drop");
  return why;
}

// A temporary file that an interrupted run (SIGKILL, power loss) left next to one of the files
// it writes: save_model's "<name>.tmp-<pid>-<n>" whose process is gone, or
// write_file_atomically's ".<name>.tmp-XXXXXX" (docs/format.md: safe to delete). The run owns
// these names: two runs with the same output cannot share a checkpoint folder either.
bool is_stale_temp(const std::string& entry, const std::string& target) {
  const std::string dotted = "." + target + ".tmp-";
  if (entry.size() > dotted.size() && entry.compare(0, dotted.size(), dotted) == 0) return true;
  const std::string plain = target + ".tmp-";
  if (entry.size() <= plain.size() || entry.compare(0, plain.size(), plain) != 0) return false;
  const std::string rest = entry.substr(plain.size());
  const size_t dash = rest.find('-');
  if (dash == 0 || dash == std::string::npos) return false;
  const std::string pid = rest.substr(0, dash);
  if (pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string::npos) return false;
  if (rest.find_first_not_of("0123456789", dash + 1) != std::string::npos) return false;
  return ::kill(static_cast<pid_t>(std::stol(pid)), 0) != 0 && errno == ESRCH;
}

// Removes the stale temporary files of `targets` (paths this run writes); never throws.
void remove_stale_temps(const std::vector<fs::path>& targets, std::ostream* log) {
  std::map<fs::path, std::vector<std::string>> by_folder;
  for (const auto& t : targets) {
    by_folder[t.has_parent_path() ? t.parent_path() : fs::path(".")].push_back(
        t.filename().string());
  }
  for (const auto& [folder, names] : by_folder) {
    std::error_code ec;
    fs::directory_iterator it(folder, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      const std::string entry = it->path().filename().string();
      for (const auto& name : names) {
        if (!is_stale_temp(entry, name)) continue;
        std::error_code removed;
        if (fs::remove(it->path(), removed) && log != nullptr) {
          *log << "removed " << it->path().string() << ", left by an interrupted run\n";
        }
        break;
      }
    }
  }
}

class Checkpoints {
 public:
  Checkpoints(const Recipe& recipe) : recipe_(recipe), dir_(recipe.output + ".ckpt") {}

  const fs::path& dir() const { return dir_; }
  std::string file(size_t index, const std::string& stage) const {
    return (dir_ / checkpoint_name(index, stage)).string();
  }

  // A fresh run: the folder, emptied of an earlier run's checkpoints.
  void start_fresh() {
    fs::create_directories(dir_);
    for (const auto& entry : fs::directory_iterator(dir_)) {
      const std::string name = entry.path().filename().string();
      if (name == "state.json" || (name.size() > 3 && name.substr(name.size() - 3) == ".h5")) {
        fs::remove(entry.path());
      }
    }
  }

  // Records that rows[0..] are done, the last one saved in `last_file`.
  void commit(const std::vector<StageRow>& rows, const std::string& last_file) const {
    nlohmann::json state;
    state["digest"] = recipe_.digest();
    state["completed_stages"] = rows.size() - 1;
    state["model"] = fs::path(last_file).filename().string();
    state["rows"] = nlohmann::json::array();
    for (const auto& r : rows) state["rows"].push_back(r.to_json());
    write_file_atomically((dir_ / "state.json").string(), state.dump(1) + "\n");
  }

  // Every file the run writes: the checkpoints, state.json, the start-model cache, the
  // output and its reports.
  std::vector<fs::path> targets() const {
    std::vector<fs::path> out{dir_ / checkpoint_name(0, "train"),
                              dir_ / checkpoint_name(0, "start"), dir_ / "state.json"};
    for (size_t i = 0; i < recipe_.stages.size(); ++i) {
      out.push_back(dir_ / checkpoint_name(i + 1, recipe_.stages[i].name));
    }
    if (!recipe_.model.cache.empty()) out.emplace_back(recipe_.model.cache);
    out.emplace_back(recipe_.output);
    for (const auto& r : report_paths(recipe_.output)) out.emplace_back(r);
    return out;
  }

  // The rows and model of the last completed stage.
  std::pair<std::vector<StageRow>, Model> resume() const {
    const fs::path path = dir_ / "state.json";
    MCOMPRESS_CHECK(fs::exists(path), ConfigError, "--resume: no checkpoint in '", dir_.string(),
                    "'; run without --resume");
    nlohmann::json state;
    try {
      std::ifstream in(path);
      state = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
      throw FormatError(path.string() + ": unreadable checkpoint state: " + e.what());
    }
    MCOMPRESS_CHECK(state.value("digest", "") == recipe_.digest(), ConfigError,
                    "--resume: the "
                    "checkpoint in '",
                    dir_.string(),
                    "' was made by another recipe or seed; "
                    "run without --resume to start over");
    std::vector<StageRow> rows;
    for (const auto& r : state.at("rows")) rows.push_back(StageRow::from_json(r));
    Model model = load_model((dir_ / state.at("model").get<std::string>()).string());
    return {std::move(rows), std::move(model)};
  }

 private:
  const Recipe& recipe_;
  fs::path dir_;
};

void log_header(std::ostream& out) {
  out << std::left << std::setw(22) << "stage" << std::right << std::setw(9) << "test_acc"
      << std::setw(8) << "delta" << std::setw(12) << "size" << std::setw(8) << "ratio"
      << std::setw(10) << "nonzeros" << std::setw(10) << "b1_ms" << std::setw(10) << "b64_ms"
      << std::setw(9) << "seconds"
      << "  status\n";
}

void log_row(std::ostream& out, const StageRow& row, const StageRow& start) {
  out << std::left << std::setw(22) << (row.path.empty() ? row.stage : row.path) << std::right
      << std::setw(9) << format_fixed(row.test_accuracy * 100, 2) << std::setw(8)
      << format_fixed((row.test_accuracy - start.test_accuracy) * 100, 2) << std::setw(12)
      << format_bytes(static_cast<double>(row.file_bytes)) << std::setw(8)
      << format_fixed(static_cast<double>(start.file_bytes) / static_cast<double>(row.file_bytes),
                      2)
      << std::setw(10) << row.nonzeros << std::setw(10) << format_fixed(row.latency_b1_ms, 3)
      << std::setw(10) << format_fixed(row.latency_b64_ms, 3) << std::setw(9)
      << format_fixed(row.seconds, 1) << "  " << row.status << "\n";
  for (const auto& f : row.flags) out << "    did not pay off: " << f << "\n";
  for (const auto& w : row.warnings) out << "    warning: " << w << "\n";
  out.flush();
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

// Data parallel: rank 0's model on every rank, sent as its model file's bytes, so that input
// models, caches and checkpoints need to exist only on rank 0's machine. The other ranks load
// the bytes from a private temporary file that they delete at once.
Model model_from_rank0(std::optional<Model> on_root, const std::string& what) {
  Distributed& dist = distributed();
  const fs::path tmp = fs::temp_directory_path() / ("mcompress-rank" + std::to_string(dist.rank()) +
                                                    "-" + std::to_string(::getpid()) + ".h5");
  std::string bytes;
  if (dist.is_root()) {
    save_model(*on_root, tmp.string(), SaveOptions{true});
    std::ifstream in(tmp, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    fs::remove(tmp);
  }
  bytes = text_from_rank0(bytes, what);
  if (dist.is_root()) return std::move(*on_root);
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    MCOMPRESS_CHECK(out.good(), IoError, "rank ", dist.rank(), ": cannot write '", tmp.string(),
                    "' (rank 0's ", what, ")");
  }
  Model model = load_model(tmp.string());
  fs::remove(tmp);
  return model;
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
  const ArchSpec spec = arch_by_name_or_file(recipe.model.arch);
  TrainOptions t = recipe.model.train;
  t.seed = recipe.seed;
  t.progress = o.progress;
  // What identifies a trained start model: the architecture, the data and how it was trained.
  const nlohmann::json identity = {
      {"arch", nlohmann::json::parse(spec.to_json_text())},
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
  Model model = Model::initialize(spec, recipe.seed);
  check_dataset(data.train, spec.input_shape, spec.num_classes, "data");
  const auto result = train_model(model, data.train, data.val, t);
  model.history.push_back(result.to_json(t));
  report.metrics = {{"best_epoch", result.best_epoch}};
  if (!cache.empty() && dist.is_root()) {
    Model copy = model.clone();
    copy.recipe = identity.dump();  // the cache's own provenance: what it was trained from
    copy.seed = recipe.seed;
    save_model(copy, cache, SaveOptions{true});
  }
  seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return model;
}

}  // namespace

nlohmann::json StageRow::to_json() const {
  return {{"stage", stage},
          {"path", path},
          {"status", status},
          {"test_accuracy", test_accuracy},
          {"test_loss", test_loss},
          {"val_accuracy", val_accuracy},
          {"file_bytes", file_bytes},
          {"parameters", parameters},
          {"nonzeros", nonzeros},
          {"latency_b1_ms", latency_b1_ms},
          {"latency_b64_ms", latency_b64_ms},
          {"seconds", seconds},
          {"flags", flags},
          {"warnings", warnings},
          {"options", options},
          {"metrics", metrics}};
}

StageRow StageRow::from_json(const nlohmann::json& d) {
  StageRow r;
  r.stage = d.at("stage");
  r.path = d.at("path");
  r.status = d.at("status");
  r.test_accuracy = d.at("test_accuracy");
  r.test_loss = d.at("test_loss");
  r.val_accuracy = d.at("val_accuracy");
  r.file_bytes = d.at("file_bytes");
  r.parameters = d.at("parameters");
  r.nonzeros = d.at("nonzeros");
  r.latency_b1_ms = d.at("latency_b1_ms");
  r.latency_b64_ms = d.at("latency_b64_ms");
  r.seconds = d.at("seconds");
  r.flags = d.at("flags").get<std::vector<std::string>>();
  r.warnings = d.at("warnings").get<std::vector<std::string>>();
  r.options = d.at("options");
  r.metrics = d.at("metrics");
  return r;
}

std::vector<std::string> report_paths(const std::string& output) {
  const fs::path out(output);
  const fs::path base = out.parent_path() / out.stem();
  return {base.string() + ".report.md", base.string() + ".report.json",
          base.string() + ".report.csv"};
}

std::string rows_markdown(const std::vector<StageRow>& rows) {
  std::ostringstream md;
  md << "| stage | test accuracy (%) | Δ vs start (points) | size | ratio | parameters | non-zeros "
        "| batch 1 (ms) | batch 64 (ms) | seconds | status |\n"
     << "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n";
  const StageRow& start = rows.front();
  for (const auto& r : rows) {
    md << "| " << (r.path.empty() ? r.stage : r.path) << " | "
       << format_fixed(r.test_accuracy * 100, 2) << " | "
       << format_fixed((r.test_accuracy - start.test_accuracy) * 100, 2) << " | "
       << format_bytes(static_cast<double>(r.file_bytes)) << " | "
       << format_fixed(static_cast<double>(start.file_bytes) / static_cast<double>(r.file_bytes), 2)
       << "x | " << r.parameters << " | " << r.nonzeros << " | " << format_fixed(r.latency_b1_ms, 3)
       << " | " << format_fixed(r.latency_b64_ms, 3) << " | " << format_fixed(r.seconds, 1) << " | "
       << r.status << " |\n";
  }
  return md.str();
}

namespace {

void write_reports(const Recipe& recipe, const RunOptions& o, const std::vector<StageRow>& rows,
                   const std::vector<std::string>& paths) {
  std::ostringstream md;
  md << "# Compression report: " << recipe.output << "\n\n"
     << "Recipe `" << recipe.source << "`, seed " << recipe.seed << ", " << o.threads
     << " thread(s), " << version_details() << ". Accuracy on the test split ("
     << "the guard uses the validation split); latency is the median of one batch with the "
        "kernels the runtime picks for that batch size.\n\n"
     << rows_markdown(rows);
  bool any = false;
  for (const auto& r : rows) {
    for (const auto& f : r.flags) {
      md << (any ? "" : "\n## Did not pay off\n\n") << "- " << (r.path.empty() ? r.stage : r.path)
         << ": " << f << "\n";
      any = true;
    }
  }
  any = false;
  for (const auto& r : rows) {
    for (const auto& w : r.warnings) {
      md << (any ? "" : "\n## Warnings\n\n") << "- " << (r.path.empty() ? r.stage : r.path) << ": "
         << w << "\n";
      any = true;
    }
  }
  write_file_atomically(paths[0], md.str());

  nlohmann::json doc;
  doc["output"] = recipe.output;
  doc["recipe"] = recipe.text;
  doc["recipe_source"] = recipe.source;
  doc["seed"] = recipe.seed;
  doc["threads"] = o.threads;
  doc["producer"] = version_details();
  doc["stages"] = nlohmann::json::array();
  for (const auto& r : rows) doc["stages"].push_back(r.to_json());
  write_file_atomically(paths[1], doc.dump(2) + "\n");

  std::ostringstream csv;
  csv << "stage,path,status,test_accuracy,test_loss,val_accuracy,file_bytes,parameters,nonzeros,"
         "latency_b1_ms,latency_b64_ms,seconds,flags\n";
  auto quoted = [](std::string s) {
    std::string out = "\"";
    for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
  };
  for (const auto& r : rows) {
    std::string flags;
    for (const auto& f : r.flags) flags += (flags.empty() ? "" : "; ") + f;
    csv << r.stage << "," << r.path << "," << quoted(r.status) << "," << r.test_accuracy << ","
        << r.test_loss << "," << r.val_accuracy << "," << r.file_bytes << "," << r.parameters << ","
        << r.nonzeros << "," << r.latency_b1_ms << "," << r.latency_b64_ms << "," << r.seconds
        << "," << quoted(flags) << "\n";
  }
  write_file_atomically(paths[2], csv.str());
}

}  // namespace

RunResult run_recipe(const Recipe& recipe, const RunOptions& o) {
  // Data parallel: every rank runs every stage (their training is shared); rank 0 alone
  // writes checkpoints, the output and the reports, measures, and decides the guards.
  Distributed& dist = distributed();
  const bool root = dist.is_root();
  // Fail before hours of work on what can be known now: the output and its folder.
  const fs::path out(recipe.output);
  const fs::path out_dir = out.has_parent_path() ? out.parent_path() : fs::path(".");
  if (root) {
    MCOMPRESS_CHECK(fs::is_directory(out_dir), IoError, "output: folder '", out_dir.string(),
                    "' does not exist");
    MCOMPRESS_CHECK(o.overwrite || o.resume || !fs::exists(out), IoError, recipe.output,
                    ": file exists; pass --force to overwrite it");
  }

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
    if (root) ckpt.start_fresh();
    StageReport report;
    double seconds = 0;
    current.emplace(start_model(recipe, data, o, report, seconds));
    Model& model = *current;
    model.recipe = recipe.text;
    model.seed = recipe.seed;
    const std::string file = ckpt.file(0, recipe.model.path.empty() ? "train" : "start");
    StageRow row;
    if (root) {
      save_model(model, file, SaveOptions{true});
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
  const ArchSpec& spec = model.spec();
  check_dataset(data.train, spec.input_shape, spec.num_classes, "data");
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
      save_model(model, file, SaveOptions{true});
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
      if (root) save_model(model, file, SaveOptions{true});
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
  save_model(model, recipe.output, SaveOptions{true});
  result.rows = rows;
  result.reports = report_paths(recipe.output);
  write_reports(recipe, o, rows, result.reports);
  return result;
}

}  // namespace mcompress::pipeline
