#pragma once
// A compression stage as a recipe runs it, and the registry that names the stages. Each stage
// module fills the registry with its own register function (quant::register_stages, ...); the
// pipeline only looks stages up, so adding a stage never touches the runner.

#include <nlohmann/json.hpp>

#include <any>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mcompress/core/dataset.h"
#include "mcompress/core/model.h"

namespace YAML {
class Node;
}

namespace mcompress {

/// What every stage may use. The data sets are disjoint parts of the recipe's training data.
struct StageContext {
  const Dataset& train;   // fine-tuning, distillation, QAT
  const Dataset& val;     // model selection and accuracy guards
  const Dataset& calib;   // the calibration sample (a seeded subset of `train`)
  uint64_t seed = 0;      // this stage's seed, derived from the recipe's seed and position
  int threads = 1;        // intra-op threads the run uses
  bool progress = false;  // per-epoch progress lines on stderr
  /// Batches calibration runs over `calib` in (the recipe's 64; the quantize command's
  /// --calib-batch-size).
  int64_t calib_batch_size = 64;
};

/// What a stage did: its options with defaults filled in, its own figures, and warnings. The
/// pipeline adds the measurements every stage gets (accuracy, size, latency, ...).
struct StageReport {
  nlohmann::json options = nlohmann::json::object();
  nlohmann::json metrics = nlohmann::json::object();
  std::vector<std::string> warnings;
  /// The stage module's own typed report (prune::PruneReport, quant::QuantizeReport,
  /// distill::DistillReport), for a caller that prints its tables or records it whole.
  std::any detail;
};

/// A StageReport of a typed report whose to_json() has a "metrics" object: those metrics, and
/// the typed report itself as the detail.
template <typename Report>
StageReport report_with_metrics(Report report) {
  StageReport out;
  out.metrics = nlohmann::json::parse(report.to_json()).value("metrics", nlohmann::json::object());
  out.detail = std::move(report);
  return out;
}

/// What earlier stages leave behind, as far as a later stage's legality depends on it. The
/// pipeline tracks it through the recipe before anything runs.
struct ModelTraits {
  std::string quant_mode;  // "" for a float model, else Model::quant.mode
  bool pruned = false;     // has pruning masks
};

class Stage {
 public:
  virtual ~Stage() = default;
  /// "" if the stage can run on a model with these traits, else the reason it cannot (the
  /// recipe is then rejected before anything runs).
  virtual std::string cannot_follow(const ModelTraits& traits) const { return ""; }
  /// The traits of the model this stage produces from one with `traits`.
  virtual void update(ModelTraits& traits) const {}
  /// Runs the stage on `model` in place.
  virtual StageReport apply(Model& model, const StageContext& context) = 0;
};

/// Where a recipe node came from, for error messages: " (line N)" for a node of the recipe
/// text, " (--set)" for one an override made.
std::string yaml_line_of(const YAML::Node& node);

/// Refuses (ConfigError naming `source`) a YAML document that expands, aliases followed, to more
/// than kMaxYamlNodes nodes or kMaxYamlDepth levels: a few hundred bytes of nested aliases
/// (the "billion laughs") would otherwise expand to gigabytes when options are read or printed.
void check_yaml_size(const YAML::Node& root, const std::string& source);
inline constexpr int64_t kMaxYamlNodes = 100000;
inline constexpr int kMaxYamlDepth = 64;

/// One option of a stage: its name, default (YAML text, "" for none) and a one-line help that
/// states the accepted values. `mcompress stages` prints these; StageOptions accepts only them.
struct OptionDoc {
  std::string name;
  std::string default_value;
  std::string help;
};

/// Where a stage's options came from, which decides how an error names one: a recipe key with
/// its YAML path and line ("stages[1].prune.target (line 7): must be ..."), or the command-line
/// flag of the mcompress quantize/prune/distill commands ("--target must be ...").
enum class OptionSource { kRecipe, kFlags };

/// The one rule from option names to flags: "finetune_epochs" is "--finetune-epochs".
std::string option_flag(const std::string& name);

/// Typed, checked access to one stage's options as the recipe gives them. Every error is a
/// ConfigError that names the YAML path and line, e.g.
/// "stages[1].prune.target (line 7): must be < 1, got 1.5".
class StageOptions {
 public:
  /// `node`: the stage's option mapping (null or absent: all defaults); `path`: its YAML path,
  /// e.g. "stages[1].prune". Unknown option names are rejected here, with the accepted list.
  /// With OptionSource::kFlags, `path` is unused and errors name the flags.
  StageOptions(const YAML::Node& node, std::string path, std::vector<OptionDoc> docs,
               OptionSource source = OptionSource::kRecipe);
  ~StageOptions();
  StageOptions(StageOptions&&) noexcept;
  StageOptions& operator=(StageOptions&&) noexcept;

  const std::string& path() const;
  bool has(const std::string& name) const;  // given in the recipe (not a default)

  /// A number in [lo, hi] (hi excluded when hi_open).
  double number(const std::string& name, double lo, double hi, bool hi_open = false) const;
  int64_t integer(const std::string& name, int64_t lo, int64_t hi = INT64_MAX) const;
  bool flag(const std::string& name) const;
  std::string text(const std::string& name) const;
  /// One of `choices`.
  std::string choice(const std::string& name, const std::vector<std::string>& choices) const;
  /// A list of strings; a single string counts as a one-element list.
  std::vector<std::string> list(const std::string& name) const;
  /// A mapping of names to numbers in [lo, hi) (e.g. per-layer targets).
  std::map<std::string, double> number_map(const std::string& name, double lo, double hi) const;

  /// A ConfigError for option `name` at its YAML path and line.
  [[noreturn]] void fail(const std::string& name, const std::string& message) const;
  /// Runs `check` (e.g. an options struct's validate()) and re-throws its ConfigError with
  /// this stage's path and line, so library validation reads like recipe validation.
  void validate(const std::function<void()>& check) const;

  /// Every option's value as the stage sees it (defaults filled in), for reports.
  nlohmann::json resolved() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

using StageFactory = std::function<std::unique_ptr<Stage>(const StageOptions& options)>;

struct StageInfo {
  std::string name;
  std::string summary;
  std::vector<OptionDoc> options;
  StageFactory make;
};

class StageRegistry {
 public:
  /// Error if `info.name` is taken or empty.
  void add(StageInfo info);
  /// ConfigError listing the registered names for an unknown name.
  const StageInfo& find(const std::string& name) const;
  bool contains(const std::string& name) const;
  const std::vector<StageInfo>& stages() const { return stages_; }

 private:
  std::vector<StageInfo> stages_;
};

}  // namespace mcompress
