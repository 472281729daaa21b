#include "mcompress/core/stage.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>

#include "mcompress/core/error.h"

namespace mcompress {

std::string yaml_line_of(const YAML::Node& node) {
  const int line = node.Mark().line;
  return line >= 0 ? " (line " + std::to_string(line + 1) + ")" : " (--set)";
}

namespace {

// Counts `node` and everything under it into `budget`; stops as soon as the budget is spent.
void count_nodes(const YAML::Node& node, int depth, int64_t& budget, const std::string& source) {
  MCOMPRESS_CHECK(depth < kMaxYamlDepth, ConfigError, source, yaml_line_of(node),
                  ": YAML nested deeper than ", kMaxYamlDepth, " levels");
  MCOMPRESS_CHECK(--budget >= 0, ConfigError, source, ": the YAML expands to more than ",
                  kMaxYamlNodes, " nodes (aliases counted as what they stand for)");
  if (!node.IsSequence() && !node.IsMap()) return;
  for (const auto& item : node) {
    if (node.IsMap()) {
      count_nodes(item.first, depth + 1, budget, source);
      count_nodes(item.second, depth + 1, budget, source);
    } else {
      count_nodes(item, depth + 1, budget, source);
    }
  }
}

}  // namespace

void check_yaml_size(const YAML::Node& root, const std::string& source) {
  int64_t budget = kMaxYamlNodes;
  count_nodes(root, 0, budget, source);
}

namespace {

// A mapping key as text. yaml-cpp's as<std::string>() throws its own untyped BadConversion for
// a key that is itself a list or mapping (`{[a]: 1}`, issue 7 fuzzing); say so instead.
std::string key_text(const YAML::Node& key, const std::string& path) {
  MCOMPRESS_CHECK(key.IsScalar(), ConfigError, path, yaml_line_of(key),
                  ": keys must be plain names, got a ", key.IsSequence() ? "list" : "mapping");
  return key.Scalar();
}

}  // namespace

std::string option_flag(const std::string& name) {
  std::string flag = "--" + name;
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

struct StageOptions::Impl {
  YAML::Node node;  // the stage's option mapping (may be null)
  std::string path;
  std::vector<OptionDoc> docs;
  OptionSource source = OptionSource::kRecipe;

  // The recipe's value of an option, or an undefined node. Through a const node: yaml-cpp's
  // non-const operator[] would insert the key.
  std::optional<YAML::Node> given(const std::string& name) const {
    const YAML::Node& n = node;
    if (!n.IsMap()) return std::nullopt;
    YAML::Node v = n[name];
    if (!v.IsDefined()) return std::nullopt;
    return v;
  }

  const OptionDoc& doc(const std::string& name) const {
    for (const auto& d : docs) {
      if (d.name == name) return d;
    }
    // A stage asking for an option it does not document is a bug in the stage, not the recipe.
    throw Error("stage " + path + " reads undocumented option '" + name + "'");
  }

  std::string where(const std::string& name) const {
    if (source == OptionSource::kFlags) return option_flag(name);
    std::string at = path.empty() ? name : path + "." + name;
    if (const auto v = given(name)) return at + yaml_line_of(*v);
    if (node.IsDefined() && !node.IsNull()) return at + yaml_line_of(node);
    return at;
  }

  // The option's node: the recipe's value, or its documented default.
  YAML::Node value(const std::string& name) const {
    const OptionDoc& d = doc(name);
    if (const auto v = given(name)) return *v;
    if (d.default_value.empty()) {
      throw ConfigError(where(name) + ": required option missing");
    }
    return YAML::Load(d.default_value);
  }
};

namespace {

std::string scalar_text(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  std::ostringstream out;
  out << YAML::Dump(n);
  std::string s = out.str();
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

std::string format_number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

}  // namespace

StageOptions::StageOptions(const YAML::Node& node, std::string path, std::vector<OptionDoc> docs,
                           OptionSource source)
    : impl_(std::make_unique<Impl>()) {
  impl_->source = source;
  // A missing key of a const node is an "invalid" node that must not be copied.
  if (node.IsDefined()) impl_->node.reset(node);
  impl_->path = std::move(path);
  impl_->docs = std::move(docs);
  if (!node.IsDefined() || node.IsNull()) return;
  MCOMPRESS_CHECK(node.IsMap(), ConfigError, impl_->path, yaml_line_of(node),
                  ": expected a mapping of options, got '", scalar_text(node), "'");
  for (const auto& item : node) {
    const std::string key = key_text(item.first, impl_->path);
    const bool known = std::any_of(impl_->docs.begin(), impl_->docs.end(),
                                   [&](const OptionDoc& d) { return d.name == key; });
    if (!known) {
      std::string names;
      for (const auto& d : impl_->docs) names += (names.empty() ? "" : ", ") + d.name;
      throw ConfigError((impl_->path.empty() ? key : impl_->path + "." + key) +
                        yaml_line_of(item.first) + ": unknown option; " +
                        (names.empty() ? "this stage takes no options" : "options: " + names));
    }
  }
}

StageOptions::~StageOptions() = default;
StageOptions::StageOptions(StageOptions&&) noexcept = default;
StageOptions& StageOptions::operator=(StageOptions&&) noexcept = default;

const std::string& StageOptions::path() const { return impl_->path; }

bool StageOptions::has(const std::string& name) const {
  impl_->doc(name);
  return impl_->given(name).has_value();
}

void StageOptions::fail(const std::string& name, const std::string& message) const {
  // A flag reads as the subject of the sentence, like the commands' other errors
  // ("--target must be in [0, 1), got 1.5").
  const char* separator = impl_->source == OptionSource::kFlags ? " " : ": ";
  throw ConfigError(impl_->where(name) + separator + message);
}

double StageOptions::number(const std::string& name, double lo, double hi, bool hi_open) const {
  const YAML::Node n = impl_->value(name);
  double v = 0;
  try {
    MCOMPRESS_CHECK(n.IsScalar(), ConfigError, "");
    v = n.as<double>();
  } catch (const std::exception&) {
    fail(name, "must be a number, got '" + scalar_text(n) + "'");
  }
  if (!std::isfinite(v) || v < lo || v > hi || (hi_open && v == hi)) {
    fail(name, "must be in [" + format_number(lo) + ", " + format_number(hi) +
                   (hi_open ? ")" : "]") + ", got " + scalar_text(n));
  }
  return v;
}

int64_t StageOptions::integer(const std::string& name, int64_t lo, int64_t hi) const {
  const YAML::Node n = impl_->value(name);
  int64_t v = 0;
  try {
    MCOMPRESS_CHECK(n.IsScalar(), ConfigError, "");
    v = n.as<int64_t>();
  } catch (const std::exception&) {
    fail(name, "must be an integer, got '" + scalar_text(n) + "'");
  }
  if (v < lo || v > hi) {
    fail(name,
         "must be " +
             (hi == INT64_MAX ? ">= " + std::to_string(lo)
                              : "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]") +
             ", got " + std::to_string(v));
  }
  return v;
}

bool StageOptions::flag(const std::string& name) const {
  const YAML::Node n = impl_->value(name);
  try {
    MCOMPRESS_CHECK(n.IsScalar(), ConfigError, "");
    return n.as<bool>();
  } catch (const std::exception&) {
    fail(name, "must be true or false, got '" + scalar_text(n) + "'");
  }
}

std::string StageOptions::text(const std::string& name) const {
  const YAML::Node n = impl_->value(name);
  if (!n.IsScalar()) fail(name, "must be a string, got '" + scalar_text(n) + "'");
  return n.Scalar();
}

std::string StageOptions::choice(const std::string& name,
                                 const std::vector<std::string>& choices) const {
  std::string v = text(name);
  if (std::find(choices.begin(), choices.end(), v) == choices.end()) {
    std::string list;
    for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
    fail(name, "must be one of " + list + ", got '" + v + "'");
  }
  return v;
}

std::vector<std::string> StageOptions::list(const std::string& name) const {
  const YAML::Node n = impl_->value(name);
  std::vector<std::string> out;
  if (n.IsNull()) return out;
  if (n.IsScalar()) return {n.Scalar()};
  if (!n.IsSequence()) fail(name, "must be a list of strings, got '" + scalar_text(n) + "'");
  for (const auto& item : n) {
    if (!item.IsScalar()) fail(name, "must be a list of strings, got '" + scalar_text(n) + "'");
    out.push_back(item.Scalar());
  }
  return out;
}

std::map<std::string, double> StageOptions::number_map(const std::string& name, double lo,
                                                       double hi) const {
  const YAML::Node n = impl_->value(name);
  std::map<std::string, double> out;
  if (n.IsNull()) return out;
  if (!n.IsMap()) fail(name, "must be a mapping of names to numbers, got '" + scalar_text(n) + "'");
  for (const auto& item : n) {
    const std::string key = key_text(item.first, impl_->where(name));
    double v = 0;
    try {
      MCOMPRESS_CHECK(item.second.IsScalar(), ConfigError, "");
      v = item.second.as<double>();
    } catch (const std::exception&) {
      fail(name, "'" + key + "' must be a number, got '" + scalar_text(item.second) + "'");
    }
    if (!std::isfinite(v) || v < lo || v >= hi) {
      fail(name, "'" + key + "' must be in [" + format_number(lo) + ", " + format_number(hi) +
                     "), got " + scalar_text(item.second));
    }
    out[key] = v;
  }
  return out;
}

void StageOptions::validate(const std::function<void()>& check) const {
  try {
    check();
  } catch (const ConfigError& e) {
    if (impl_->source == OptionSource::kFlags) throw;  // the library's message names the field
    std::string at = impl_->path;
    if (impl_->node.IsDefined() && !impl_->node.IsNull()) at += yaml_line_of(impl_->node);
    throw ConfigError(at + ": " + e.what());
  }
}

namespace {

nlohmann::json to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Scalar: {
      // Plain scalars: numbers and booleans as such, everything else as text.
      const std::string& s = n.Scalar();
      if (n.Tag() != "!") {
        int64_t i = 0;
        double d = 0;
        bool b = false;
        if (YAML::convert<int64_t>::decode(n, i) && s.find_first_of(".eE") == std::string::npos) {
          return i;
        }
        if (YAML::convert<double>::decode(n, d)) return d;
        if (YAML::convert<bool>::decode(n, b)) return b;
      }
      return s;
    }
    case YAML::NodeType::Sequence: {
      auto out = nlohmann::json::array();
      for (const auto& item : n) out.push_back(to_json(item));
      return out;
    }
    case YAML::NodeType::Map: {
      auto out = nlohmann::json::object();
      for (const auto& item : n) out[key_text(item.first, "")] = to_json(item.second);
      return out;
    }
  }
  return nullptr;
}

}  // namespace

nlohmann::json StageOptions::resolved() const {
  auto out = nlohmann::json::object();
  for (const auto& d : impl_->docs) {
    if (const auto v = impl_->given(d.name)) {
      out[d.name] = to_json(*v);
    } else if (!d.default_value.empty()) {
      out[d.name] = to_json(YAML::Load(d.default_value));
    }
  }
  return out;
}

void StageRegistry::add(StageInfo info) {
  MCOMPRESS_CHECK(!info.name.empty() && info.make, Error, "a stage needs a name and a factory");
  MCOMPRESS_CHECK(!contains(info.name), Error, "stage '", info.name, "' is registered twice");
  stages_.push_back(std::move(info));
}

bool StageRegistry::contains(const std::string& name) const {
  return std::any_of(stages_.begin(), stages_.end(),
                     [&](const StageInfo& s) { return s.name == name; });
}

const StageInfo& StageRegistry::find(const std::string& name) const {
  for (const auto& s : stages_) {
    if (s.name == name) return s;
  }
  std::string names;
  for (const auto& s : stages_) names += (names.empty() ? "" : ", ") + s.name;
  throw ConfigError("unknown stage '" + name + "'; stages: " + names);
}

}  // namespace mcompress
