#include "mcompress/pipeline/recipe.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>

#include "mcompress/core/dataset.h"
#include "mcompress/core/error.h"

namespace mcompress::pipeline {
namespace {

// Counts YAML documents without building them: a parse that ignores every event.
class DocumentCounter : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// The number of documents in `text`, counting no further than 2. Not YAML::LoadAll: on some
// inputs (a stray ',' before the first key, found by fuzz_recipe) yaml-cpp 0.7 returns empty
// documents for ever, and LoadAll keeps them all until memory runs out.
int count_documents(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentCounter ignore;
  int documents = 0;
  while (documents < 2 && parser.HandleNextDocument(ignore)) ++documents;
  return documents;
}

// --set PATH=VALUE: PATH is keys joined by dots, each optionally followed by [index]s.
void apply_set(YAML::Node& root, const std::string& assignment) {
  const auto eq = assignment.find('=');
  MCOMPRESS_CHECK(eq != std::string::npos && eq > 0, ConfigError, "--set '", assignment,
                  "': expected PATH=VALUE, e.g. stages[1].prune.target=0.95");
  const std::string path = assignment.substr(0, eq);
  YAML::Node value;
  try {
    value = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw ConfigError("--set '" + assignment + "': the value is not YAML: " + e.msg);
  }
  check_yaml_size(value, "--set '" + assignment + "'");
  // A scalar made in code has no position, so messages about it say "(--set)", not a line of
  // the recipe it never was in.
  if (value.IsScalar()) value = YAML::Node(value.Scalar());
  static const std::regex segment(R"(([A-Za-z_][A-Za-z0-9_\-]*)((\[[0-9]+\])*))");
  std::vector<std::string> keys;  // "#3" for index 3
  std::stringstream parts(path);
  for (std::string part; std::getline(parts, part, '.');) {
    std::smatch m;
    MCOMPRESS_CHECK(std::regex_match(part, m, segment), ConfigError, "--set '", assignment,
                    "': bad path segment '", part, "'");
    keys.push_back(m[1]);
    static const std::regex index(R"(\[([0-9]+)\])");
    const std::string rest = m[2];
    for (std::sregex_iterator it(rest.begin(), rest.end(), index), end; it != end; ++it) {
      keys.push_back("#" + (*it)[1].str());
    }
  }
  YAML::Node node = root;  // handles: reset() rebinds, operator= would copy into the node
  std::string walked;
  for (size_t i = 0; i < keys.size(); ++i) {
    const std::string& key = keys[i];
    const bool last = i + 1 == keys.size();
    if (key[0] == '#') {
      // std::stoul would throw an untyped std::out_of_range past 2^64 (issue 7 fuzzing).
      MCOMPRESS_CHECK(key.size() <= 10, ConfigError, "--set '", assignment, "': index [",
                      key.substr(1), "] is out of range");
      const size_t index = std::stoul(key.substr(1));
      walked += "[" + key.substr(1) + "]";
      MCOMPRESS_CHECK(node.IsSequence() && index < node.size(), ConfigError, "--set '", assignment,
                      "': ", walked, " does not exist",
                      node.IsSequence() ? " (" + std::to_string(node.size()) + " entries)" : "");
      if (last) {
        node[index] = value;
      } else {
        YAML::Node next = node[index];
        node.reset(next);
      }
    } else {
      walked += (walked.empty() ? "" : ".") + key;
      MCOMPRESS_CHECK(node.IsMap() || node.IsNull(), ConfigError, "--set '", assignment,
                      "': ", walked, " is inside a value that is not a mapping");
      if (last) {
        node[key] = value;
      } else {
        YAML::Node next = node[key];
        node.reset(next);
      }
    }
  }
}

ModelSource parse_model(const YAML::Node& n) {
  ModelSource m;
  MCOMPRESS_CHECK(n.IsDefined() && !n.IsNull(), ConfigError,
                  "model: required (a model file, or {arch: NAME, train: {...}})");
  if (n.IsScalar()) {
    m.path = n.Scalar();
    return m;
  }
  const StageOptions o(
      n, "model",
      {{"arch", "", "zoo name (either zoo) or architecture file to train from scratch"},
       {"train", "{}", "training options: epochs, lr, batch_size, ..."},
       {"cache", "\"\"", "model file keeping the trained start model between runs"}});
  m.arch = o.text("arch");
  m.cache = o.text("cache");
  const YAML::Node train = n["train"];
  const StageOptions t(train, "model.train",
                       {{"epochs", "10", "epochs"},
                        {"lr", "1e-3", "learning rate"},
                        {"batch_size", "128", "batch size"},
                        {"optimizer", "adam", "adam or sgd"},
                        {"schedule", "cosine", "constant, step or cosine"},
                        {"weight_decay", "0", "L2 weight decay"}});
  m.train.epochs = t.integer("epochs", 1, 10000);
  m.train.lr = t.number("lr", 1e-8, 10);
  m.train.batch_size = t.integer("batch_size", 1, 1 << 16);
  m.train.optimizer = parse_optimizer(t.choice("optimizer", {"adam", "sgd"}));
  m.train.schedule = parse_lr_schedule(t.choice("schedule", {"constant", "step", "cosine"}));
  m.train.weight_decay = t.number("weight_decay", 0, 1);
  return m;
}

DataConfig parse_data(const YAML::Node& n) {
  const StageOptions o(n, "data",
                       {{"name", "fashion-mnist", "fashion-mnist (Debian's copy)"},
                        {"path", "", "IDX folder or HDF5 file (instead of name)"},
                        {"val_fraction", "0.1", "validation share of the training split, (0, 1)"},
                        {"calib_batches", "32", "calibration batches of 64 examples, >= 1"},
                        {"limit", "0", "first N training examples only (0 = all)"},
                        {"test_limit", "0", "first N test examples only (0 = all)"}});
  DataConfig d;
  if (o.has("path")) {
    MCOMPRESS_CHECK(!o.has("name"), ConfigError, "data: give name or path, not both");
    d.path = o.text("path");
  } else {
    o.choice("name", {"fashion-mnist"});
    d.path = kFashionMnistDir;
  }
  d.val_fraction = o.number("val_fraction", 0, 1, true);
  if (d.val_fraction <= 0) o.fail("val_fraction", "must be > 0: guards and stages validate on it");
  d.calib_batches = o.integer("calib_batches", 1);
  d.limit = o.integer("limit", 0);
  d.test_limit = o.integer("test_limit", 0);
  return d;
}

GuardConfig parse_guard(const YAML::Node& n, const std::string& path) {
  const StageOptions o(n, path,
                       {{"max_accuracy_drop", "-1",
                         "most validation accuracy (points) allowed to be lost; < 0 = off"},
                        {"on_violation", "fail", "fail (stop the run) or skip (undo the stage)"}});
  GuardConfig g;
  g.max_accuracy_drop = o.number("max_accuracy_drop", -1, 100);
  g.skip = o.choice("on_violation", {"fail", "skip"}) == "skip";
  return g;
}

RecipeStage parse_stage(const YAML::Node& item, size_t index, const StageRegistry& registry) {
  const std::string at = "stages[" + std::to_string(index) + "]";
  MCOMPRESS_CHECK(item.IsMap(), ConfigError, at, yaml_line_of(item),
                  ": expected a mapping like '- prune: {target: 0.9}'");
  RecipeStage s;
  YAML::Node options, guard;
  bool has_guard = false;
  for (const auto& kv : item) {
    MCOMPRESS_CHECK(kv.first.IsScalar(), ConfigError, at, yaml_line_of(kv.first),
                    ": expected a stage name, got a ", kv.first.IsSequence() ? "list" : "mapping");
    const std::string key = kv.first.Scalar();
    if (key == "guard") {
      guard.reset(kv.second);
      has_guard = true;
      continue;
    }
    MCOMPRESS_CHECK(s.name.empty(), ConfigError, at, yaml_line_of(kv.first),
                    ": one stage per entry, got '", s.name, "' and '", key, "'");
    if (!registry.contains(key)) {
      try {
        registry.find(key);
      } catch (const ConfigError& e) {
        throw ConfigError(at + yaml_line_of(kv.first) + ": " + e.what());
      }
    }
    s.name = key;
    options.reset(kv.second);
  }
  MCOMPRESS_CHECK(!s.name.empty(), ConfigError, at, yaml_line_of(item), ": no stage named");
  s.path = at + "." + s.name;
  const StageInfo& info = registry.find(s.name);
  const StageOptions o(options, s.path, info.options);
  s.stage = std::shared_ptr<Stage>(info.make(o));
  s.options = o.resolved();
  if (has_guard) s.guard = parse_guard(guard, at + ".guard");
  return s;
}

}  // namespace

std::string Recipe::digest() const {
  // FNV-1a, 64 bits: stable across compilers and runs, unlike std::hash.
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](const std::string& s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ULL;
    }
  };
  mix(text);
  mix("\nseed=" + std::to_string(seed));
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

namespace {

Recipe parse_recipe_unchecked(const std::string& text, const StageRegistry& registry,
                              const std::vector<std::string>& sets, const std::string& source) {
  YAML::Node root;
  try {
    MCOMPRESS_CHECK(count_documents(text) <= 1, ConfigError, source,
                    ": holds more than one YAML document; a recipe is one");
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(source + ": line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  check_yaml_size(root, source);
  MCOMPRESS_CHECK(root.IsMap(), ConfigError, source,
                  ": a recipe is a YAML mapping with model, data, stages and output");
  for (const auto& s : sets) apply_set(root, s);

  Recipe r;
  r.source = source;
  r.text = text;
  for (const auto& s : sets)
    r.text += (r.text.empty() || r.text.back() == '\n' ? "" : "\n") + ("# --set " + s + "\n");

  // Top-level keys; StageOptions gives the unknown-key and typed-value errors with lines.
  const StageOptions top(root, "",
                         {{"model", "", "model file, or {arch: NAME, train: {...}}"},
                          {"data", "{}", "data set, validation share, calibration batches"},
                          {"seed", "0", "seed of every random choice"},
                          {"stages", "", "the stages, in order"},
                          {"guard", "{}", "overall accuracy guard"},
                          {"output", "", "the compressed model file"},
                          {"deploy_batch", "64", "batch size the runtime tunes its kernels for"}});
  const YAML::Node& croot = root;
  r.model = parse_model(croot["model"]);
  r.data = parse_data(croot["data"]);
  r.seed = static_cast<uint64_t>(top.integer("seed", 0));
  r.guard = parse_guard(croot["guard"], "guard");
  r.output = top.text("output");
  if (r.output.empty()) top.fail("output", "must not be empty");
  r.deploy_batch = top.integer("deploy_batch", 1, 1 << 16);
  const YAML::Node stages = croot["stages"];
  MCOMPRESS_CHECK(stages.IsDefined() && !stages.IsNull(), ConfigError, "stages: required (a list)");
  MCOMPRESS_CHECK(stages.IsSequence() && stages.size() > 0, ConfigError, "stages",
                  yaml_line_of(stages), ": expected a non-empty list of stages");
  for (size_t i = 0; i < stages.size(); ++i)
    r.stages.push_back(parse_stage(stages[i], i, registry));
  MCOMPRESS_CHECK(r.model.path.empty() || r.model.path != r.output, ConfigError,
                  "output: must differ from the input model '", r.model.path, "'");
  return r;
}

}  // namespace

Recipe parse_recipe(const std::string& text, const StageRegistry& registry,
                    const std::vector<std::string>& sets, const std::string& source) {
  try {
    return parse_recipe_unchecked(text, registry, sets, source);
  } catch (const YAML::Exception& e) {
    // Last line of defence: every yaml-cpp access above should already be guarded; one that
    // is not must still surface as a ConfigError with the line, not as an untyped exception.
    throw ConfigError(source + ": line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
}

Recipe load_recipe(const std::string& path, const StageRegistry& registry,
                   const std::vector<std::string>& sets) {
  std::ifstream in(path);
  MCOMPRESS_CHECK(in.good(), IoError, "cannot read recipe '", path, "'");
  std::stringstream text;
  text << in.rdbuf();
  return parse_recipe(text.str(), registry, sets, path);
}

std::string check_stage_order(const Recipe& recipe, const ModelTraits& start) {
  ModelTraits traits = start;
  for (const auto& s : recipe.stages) {
    const std::string why = s.stage->cannot_follow(traits);
    if (!why.empty()) return s.path + ": " + why;
    s.stage->update(traits);
  }
  return "";
}

}  // namespace mcompress::pipeline
