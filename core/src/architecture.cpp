#include "mcompress/core/architecture.h"

#include <fstream>
#include <sstream>

#include "mcompress/core/error.h"
#include "mcompress/core/json_input.h"
#include "mcompress/core/zoo.h"
#include "mcompress/core/zoo_graphs.h"

namespace mcompress {
namespace {

bool in_entries(const std::vector<ZooEntry>& entries, const std::string& name) {
  for (const auto& e : entries) {
    if (e.name == name) return true;
  }
  return false;
}

std::vector<int64_t> known_input_shape(const Graph& graph) {
  std::vector<int64_t> shape;
  for (size_t d = 1; d < graph.inputs.at(0).shape.size(); ++d) {
    shape.push_back(graph.inputs[0].shape[d].value);
  }
  return shape;
}

std::string zoo_names() {
  std::string names;
  for (const auto& e : zoo_entries()) names += (names.empty() ? "" : ", ") + e.name;
  for (const auto& e : zoo_graph_entries()) names += ", " + e.name;
  return names;
}

}  // namespace

std::vector<ArchitectureEntry> architecture_entries() {
  std::vector<ArchitectureEntry> out;
  for (const auto& e : zoo_entries()) {
    const ArchSpec spec = zoo_spec(e.name);
    out.push_back({e.name, e.summary, "sequential", spec.parameter_count(), spec.input_shape});
  }
  for (const auto& e : zoo_graph_entries()) {
    const Graph graph = zoo_graph(e.name);
    out.push_back({e.name, e.summary, "graph", parameter_count(graph_tensor_infos(graph)),
                   known_input_shape(graph)});
  }
  return out;
}

AnyArchitecture zoo_architecture(const std::string& name) {
  if (in_entries(zoo_entries(), name)) return zoo_spec(name);
  if (in_entries(zoo_graph_entries(), name)) return zoo_graph(name);
  throw ConfigError("unknown zoo model '" + name + "'; accepted: " + zoo_names());
}

AnyArchitecture read_architecture_file(const std::string& path) {
  std::ifstream in(path);
  MCOMPRESS_CHECK(in.good(), IoError, "cannot read architecture file '", path, "'");
  std::stringstream text;
  text << in.rdbuf();
  try {
    // A graph document is told apart by its "nodes"; anything else, a document that does not
    // parse included, goes to the spec parser, which names what is wrong with it. Both parsers
    // validate what they read.
    bool graph = false;
    try {
      const nlohmann::json doc = parse_json_input(text.str());
      graph = doc.is_object() && doc.contains("nodes");
    } catch (const FormatError&) {
    }
    if (graph) return Graph::from_json_text(text.str());
    return ArchSpec::from_json_text(text.str());
  } catch (const ModelError& e) {
    throw ModelError(path + ": " + e.what());
  }
}

AnyArchitecture resolve_architecture(const std::string& name_or_path) {
  if (in_entries(zoo_entries(), name_or_path) || in_entries(zoo_graph_entries(), name_or_path)) {
    return zoo_architecture(name_or_path);
  }
  MCOMPRESS_CHECK(std::ifstream(name_or_path).good(), ConfigError, "'", name_or_path,
                  "' is neither a zoo model (", zoo_names(), ") nor a readable architecture file");
  return read_architecture_file(name_or_path);
}

Model initialize_model(const AnyArchitecture& arch, uint64_t seed) {
  return std::visit([seed](const auto& a) { return Model::initialize(a, seed); }, arch);
}

std::string architecture_json(const AnyArchitecture& arch) {
  return std::visit([](const auto& a) { return a.to_json_text(); }, arch);
}

}  // namespace mcompress
