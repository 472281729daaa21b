#pragma once
// A stage's options as flags of its command (mcompress quantize, prune, distill): one flag per
// OptionDoc of the registry's stage, named by option_flag ("finetune_epochs" is
// --finetune-epochs), with the OptionDoc's help, and translated into the option mapping a
// recipe would give the stage. The command then runs the registry's Stage, so a flag and its
// recipe key accept the same values and mean the same thing.

#include <yaml-cpp/yaml.h>

#include <set>
#include <string>

#include "cli.h"
#include "mcompress/core/stage.h"

namespace mcompress::cli {

/// Adds a flag for each option of `stage` not in `skip` (options the command fixes itself). An
/// option whose default is false is a switch, [] a list of values, {} a list of NAME=VALUE
/// pairs; any other takes one value, with the stage's default shown.
void add_stage_flags(po::options_description& options, const StageInfo& stage,
                     const std::set<std::string>& skip = {});

/// The option mapping the given flags stand for: `--finetune-epochs 3` is `finetune_epochs: 3`,
/// `--overrides 0.weight=0.8` is `overrides: {0.weight: 0.8}`. Flags left at their defaults are
/// left out, as a recipe leaves them out.
YAML::Node stage_node(const po::variables_map& vm, const StageInfo& stage,
                      const std::set<std::string>& skip = {});

/// The stage's options over `node`; errors name the flags ("--target must be ...").
StageOptions stage_options(const YAML::Node& node, const StageInfo& stage);

}  // namespace mcompress::cli
