#pragma once
// Architectures by name or file, of either kind: the sequential zoo (core/zoo.h), the graph zoo
// (core/zoo_graphs.h), a spec JSON file or a graph document file. `mcompress train`, `mcompress
// zoo`, recipes and distillation students see every architecture through this one place.
// Resolving an architecture parses and validates it; initialising it draws the tensors.

#include <cstdint>
#include <string>
#include <variant>
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

/// A resolved, validated architecture before initialisation: a layer chain or a graph.
using AnyArchitecture = std::variant<ArchSpec, Graph>;

/// Zoo architecture `name` (either zoo). ConfigError listing every zoo name for an unknown one.
AnyArchitecture zoo_architecture(const std::string& name);

/// The architecture in file `path`: a graph document (a JSON object with "nodes",
/// docs/format.md §5) or a sequential spec. IoError for an unreadable file; ModelError naming
/// the file for an invalid architecture.
AnyArchitecture read_architecture_file(const std::string& path);

/// A zoo name of either kind, else the path of an architecture file (what a recipe's
/// `model: {arch: ...}` and a distillation student name). ConfigError listing the zoo names
/// when it is neither a zoo name nor a readable file.
AnyArchitecture resolve_architecture(const std::string& name_or_path);

/// A freshly initialised model of `arch`, drawn from `seed` (Model::initialize).
Model initialize_model(const AnyArchitecture& arch, uint64_t seed);

/// The spec JSON or the graph document: what Model::architecture_json gives once initialised.
std::string architecture_json(const AnyArchitecture& arch);

}  // namespace mcompress
