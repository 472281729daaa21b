#pragma once
// Architectures by name or file, of either kind: the sequential zoo (core/zoo.h), the graph zoo
// (core/zoo_graphs.h), a spec JSON file or a graph document file. `mcompress train` and
// `mcompress zoo` see every architecture through this one place.

#include <cstdint>
#include <string>
#include <vector>

#include "mcompress/core/model.h"

namespace mcompress {

struct ArchitectureEntry {
  std::string name;
  std::string summary;
  std::string kind;  // "sequential" or "graph"
  int64_t parameters = 0;
  std::vector<int64_t> input_shape;  // without the batch dimension
};

/// Every zoo architecture: the sequential zoo, then the graph zoo, in display order.
std::vector<ArchitectureEntry> architecture_entries();

/// A freshly initialised model of zoo architecture `name` (either zoo), drawn from `seed`.
/// ConfigError listing every zoo name for an unknown one.
Model initialize_zoo_model(const std::string& name, uint64_t seed);

/// A freshly initialised model of the architecture in file `path`: a graph document (a JSON
/// object with "nodes", docs/format.md §5) or a sequential spec. IoError for an unreadable
/// file; ModelError naming the file for an invalid architecture.
Model initialize_model_from_file(const std::string& path, uint64_t seed);

/// A zoo name of either kind, else the path of an architecture file, as a freshly initialised
/// model (what a recipe's `model: {arch: ...}` names). ConfigError listing the zoo names when
/// it is neither a zoo name nor a readable file.
Model initialize_architecture(const std::string& name_or_path, uint64_t seed);

}  // namespace mcompress
