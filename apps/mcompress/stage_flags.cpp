#include "stage_flags.h"

#include <vector>

#include "mcompress/core/error.h"

namespace mcompress::cli {
namespace {

enum class FlagKind { kSwitch, kList, kPairs, kValue };

FlagKind kind_of(const OptionDoc& d) {
  if (d.default_value == "false") return FlagKind::kSwitch;
  if (d.default_value == "[]") return FlagKind::kList;
  if (d.default_value == "{}") return FlagKind::kPairs;
  return FlagKind::kValue;
}

// The flag's name for Boost ("finetune-epochs"), without the dashes.
std::string long_name(const OptionDoc& d) { return option_flag(d.name).substr(2); }

// "NAME=VALUE" → (NAME, VALUE); the value is checked by the stage.
std::pair<std::string, std::string> split_pair(const std::string& flag, const std::string& text) {
  const auto eq = text.rfind('=');
  MCOMPRESS_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < text.size(), ConfigError, flag,
                  " expects NAME=VALUE, got '", text, "'");
  return {text.substr(0, eq), text.substr(eq + 1)};
}

}  // namespace

void add_stage_flags(po::options_description& options, const StageInfo& stage,
                     const std::set<std::string>& skip) {
  for (const auto& d : stage.options) {
    if (skip.count(d.name) != 0) continue;
    const std::string name = long_name(d);
    switch (kind_of(d)) {
      case FlagKind::kSwitch:
        options.add_options()(name.c_str(), po::bool_switch(), d.help.c_str());
        break;
      case FlagKind::kList:
        options.add_options()(name.c_str(), po::value<std::vector<std::string>>()->multitoken(),
                              d.help.c_str());
        break;
      case FlagKind::kPairs:
        options.add_options()(name.c_str(), po::value<std::vector<std::string>>()->multitoken(),
                              (d.help + " (NAME=VALUE ...)").c_str());
        break;
      case FlagKind::kValue: {
        auto* value = po::value<std::string>();
        if (!d.default_value.empty()) value->default_value(d.default_value);
        options.add_options()(name.c_str(), value, d.help.c_str());
        break;
      }
    }
  }
}

YAML::Node stage_node(const po::variables_map& vm, const StageInfo& stage,
                      const std::set<std::string>& skip) {
  YAML::Node node(YAML::NodeType::Map);
  for (const auto& d : stage.options) {
    const std::string name = long_name(d);
    if (skip.count(d.name) != 0 || vm.count(name) == 0 || vm[name].defaulted()) continue;
    switch (kind_of(d)) {
      case FlagKind::kSwitch:
        if (vm[name].as<bool>()) node[d.name] = "true";
        break;
      case FlagKind::kList: {
        YAML::Node list(YAML::NodeType::Sequence);
        for (const auto& v : vm[name].as<std::vector<std::string>>()) list.push_back(v);
        node[d.name] = list;
        break;
      }
      case FlagKind::kPairs: {
        YAML::Node pairs(YAML::NodeType::Map);
        for (const auto& text : vm[name].as<std::vector<std::string>>()) {
          const auto [key, value] = split_pair(option_flag(d.name), text);
          pairs[key] = value;
        }
        node[d.name] = pairs;
        break;
      }
      case FlagKind::kValue:
        node[d.name] = vm[name].as<std::string>();
        break;
    }
  }
  return node;
}

StageOptions stage_options(const YAML::Node& node, const StageInfo& stage) {
  return StageOptions(node, stage.name, stage.options, OptionSource::kFlags);
}

}  // namespace mcompress::cli
