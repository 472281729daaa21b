#include "mcompress/core/graph.h"

#include <cctype>
#include <cmath>
#include <set>
#include <utility>

#include "mcompress/core/error.h"
#include "mcompress/core/json_input.h"

namespace mcompress {
namespace {

using json = nlohmann::json;

// ---- document structure ----------------------------------------------------------------

// A JSON value for a message: at most 60 characters of it.
std::string brief(const json& value) {
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

[[noreturn]] void doc_error(const std::string& path, const std::string& message) {
  throw ModelError("graph document: " + path + ": " + message);
}

// The same bound on a parsed document, without recursion.
void check_json_depth(const json& doc) {
  std::vector<std::pair<const json*, int64_t>> stack = {{&doc, 1}};
  while (!stack.empty()) {
    const auto [value, depth] = stack.back();
    stack.pop_back();
    if (!value->is_structured()) continue;
    if (depth > kGraphMaxDepth) {
      throw ModelError("graph document: nested deeper than " + std::to_string(kGraphMaxDepth) +
                       " levels");
    }
    for (const json& child : *value) stack.emplace_back(&child, depth + 1);
  }
}

void expect_keys(const json& object, const std::string& path, const std::set<std::string>& required,
                 const std::set<std::string>& optional) {
  if (!object.is_object()) doc_error(path, "got " + brief(object) + ", expected an object");
  for (const auto& [key, value] : object.items()) {
    if (required.count(key) == 0 && optional.count(key) == 0) {
      std::string accepted;
      for (const auto* set : {&required, &optional}) {
        for (const auto& k : *set) accepted += (accepted.empty() ? "" : ", ") + k;
      }
      doc_error(path, "unknown key '" + key.substr(0, 40) + "'; expected: " + accepted);
    }
  }
  for (const auto& key : required) {
    if (!object.contains(key)) doc_error(path, "missing key '" + key + "'");
  }
}

std::string read_string(const json& value, const std::string& path) {
  if (!value.is_string()) doc_error(path, "got " + brief(value) + ", expected a string");
  const auto& s = value.get_ref<const std::string&>();
  if (s.empty() || static_cast<int64_t>(s.size()) > kGraphMaxStringLength) {
    doc_error(path, "got a string of " + std::to_string(s.size()) + " characters, expected 1 to " +
                        std::to_string(kGraphMaxStringLength));
  }
  return s;
}

int64_t read_int(const json& value, const std::string& path, int64_t lo, int64_t hi) {
  const bool integer = value.is_number_integer() && (!value.is_number_unsigned() ||
                                                     value.get<uint64_t>() <= uint64_t{INT64_MAX});
  if (!integer || value.get<int64_t>() < lo || value.get<int64_t>() > hi) {
    doc_error(path, "got " + brief(value) + ", expected an integer in [" + std::to_string(lo) +
                        ", " + std::to_string(hi) + "]");
  }
  return value.get<int64_t>();
}

const json& read_array(const json& value, const std::string& path, int64_t max_size) {
  if (!value.is_array()) doc_error(path, "got " + brief(value) + ", expected an array");
  if (static_cast<int64_t>(value.size()) > max_size) {
    doc_error(path, "got " + std::to_string(value.size()) + " entries, expected at most " +
                        std::to_string(max_size));
  }
  return value;
}

std::vector<std::string> read_names(const json& value, const std::string& path, int64_t max_size) {
  std::vector<std::string> out;
  const json& array = read_array(value, path, max_size);
  for (size_t i = 0; i < array.size(); ++i) {
    out.push_back(read_string(array[i], path + "[" + std::to_string(i) + "]"));
  }
  return out;
}

std::vector<double> read_numbers(const json& value, const std::string& path) {
  std::vector<double> out;
  const json& array = read_array(value, path, kGraphMaxChannels);
  for (size_t i = 0; i < array.size(); ++i) {
    if (!array[i].is_number()) {
      doc_error(path + "[" + std::to_string(i) + "]",
                "got " + brief(array[i]) + ", expected a number");
    }
    out.push_back(array[i].get<double>());
  }
  return out;
}

ValueInfo read_input(const json& value, const std::string& path) {
  expect_keys(value, path, {"name", "dtype", "shape"}, {});
  ValueInfo info;
  info.name = read_string(value["name"], path + ".name");
  const std::string dtype = read_string(value["dtype"], path + ".dtype");
  if (dtype != "float32" && dtype != "int64") {
    doc_error(path + ".dtype", "got '" + dtype + "', expected float32 or int64");
  }
  info.dtype = parse_dtype(dtype);
  const json& shape = read_array(value["shape"], path + ".shape", kMaxRank);
  for (size_t i = 0; i < shape.size(); ++i) {
    const std::string at = path + ".shape[" + std::to_string(i) + "]";
    if (shape[i].is_string()) {
      info.shape.push_back(Dim::named(read_string(shape[i], at)));
    } else {
      info.shape.push_back(Dim(read_int(shape[i], at, 1, kMaxDimSize)));
    }
  }
  return info;
}

Node read_node(const json& value, const std::string& path) {
  expect_keys(value, path, {"name", "op", "inputs", "outputs"}, {"attrs", "params"});
  Node node;
  node.name = read_string(value["name"], path + ".name");
  node.op = read_string(value["op"], path + ".op");
  node.inputs = read_names(value["inputs"], path + ".inputs", kMaxNodeInputs);
  node.outputs = read_names(value["outputs"], path + ".outputs", kMaxNodeInputs);
  if (value.contains("attrs")) {
    const json& attrs = value["attrs"];
    if (!attrs.is_object())
      doc_error(path + ".attrs", "got " + brief(attrs) + ", expected an object");
    for (const auto& [key, v] : attrs.items()) {
      const std::string at = path + ".attrs." + key.substr(0, 40);
      bool ok = v.is_number();
      if (v.is_array() && static_cast<int64_t>(v.size()) <= kMaxAttrListLength) {
        ok = true;
        for (const json& x : v) ok = ok && x.is_number();
      }
      if (!ok) {
        doc_error(at, "got " + brief(v) + ", expected a number or a list of at most " +
                          std::to_string(kMaxAttrListLength) + " numbers");
      }
    }
    node.attrs = attrs;
  }
  if (value.contains("params")) {
    const json& params = value["params"];
    if (!params.is_object()) {
      doc_error(path + ".params", "got " + brief(params) + ", expected an object");
    }
    for (const auto& [role, name] : params.items()) {
      node.params[role] = read_string(name, path + ".params." + role.substr(0, 40));
    }
  }
  return node;
}

// ---- validation ----------------------------------------------------------------------------

bool is_symbol(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char ch : s) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_') return false;
  }
  return true;
}

void check_name(const std::string& name, const std::string& at, const char* field) {
  MCOMPRESS_CHECK(!name.empty() && static_cast<int64_t>(name.size()) <= kGraphMaxStringLength,
                  ModelError, at, ": ", field, ": got a name of ", name.size(),
                  " characters, expected 1 to ", kGraphMaxStringLength);
}

void check_output_shape(const SymShape& shape, const std::string& at) {
  MCOMPRESS_CHECK(static_cast<int64_t>(shape.size()) <= kMaxRank, ModelError, at, ": got shape ",
                  to_string(shape), ", expected rank <= ", kMaxRank);
  for (const Dim& d : shape) {
    MCOMPRESS_CHECK(!d.known() || (d.value >= 1 && d.value <= kMaxDimSize), ModelError, at,
                    ": got shape ", to_string(shape), ", expected sizes in [1, ", kMaxDimSize, "]");
    MCOMPRESS_CHECK(static_cast<int64_t>(d.symbol.size()) <= kGraphMaxStringLength, ModelError, at,
                    ": a symbolic size grew beyond ", kGraphMaxStringLength, " characters");
  }
}

void check_preprocess(const Graph& g) {
  if (g.preprocess.kind == Preprocess::Kind::kNone) {
    MCOMPRESS_CHECK(g.preprocess.mean.empty() && g.preprocess.std.empty(), ModelError,
                    "preprocess: kind none takes no mean or std");
    return;
  }
  const ValueInfo& in = g.inputs[0];
  MCOMPRESS_CHECK(in.dtype == DType::kFloat32 && in.shape.size() >= 2, ModelError,
                  "preprocess: normalize applies to input '", in.name, "', got ",
                  to_string(in.dtype), " ", to_string(in.shape),
                  ", expected float32 [batch, channels, ...]");
  MCOMPRESS_CHECK(in.shape[1].known(), ModelError, "preprocess: input '", in.name,
                  "' has symbolic channels '", in.shape[1].symbol, "', expected a known size");
  const auto channels = static_cast<size_t>(in.shape[1].value);
  for (const auto* field : {&g.preprocess.mean, &g.preprocess.std}) {
    const char* name = field == &g.preprocess.mean ? "mean" : "std";
    MCOMPRESS_CHECK(field->size() == 1 || field->size() == channels, ModelError,
                    "preprocess: ", name, ": got ", field->size(), " values, expected 1 or ",
                    channels, " (the channels of input '", in.name, "')");
    for (double v : *field) {
      MCOMPRESS_CHECK(std::isfinite(v) && (field == &g.preprocess.mean || v > 0), ModelError,
                      "preprocess: ", name, ": got ", v, ", expected a finite value",
                      field == &g.preprocess.mean ? "" : " > 0");
    }
  }
}

void check_task(const Graph& g, const GraphInfo& info) {
  const int64_t classes = g.task.num_classes;
  MCOMPRESS_CHECK(classes >= 2 && classes <= kMaxDimSize, ModelError,
                  "task classification: num_classes: got ", classes, ", expected >= 2");
  MCOMPRESS_CHECK(g.outputs.size() == 1, ModelError, "task classification: outputs: got ",
                  g.outputs.size(), " outputs, expected 1 (the logits)");
  const ValueInfo& out = info.values.at(g.outputs[0]);
  const SymShape expected = {g.inputs[0].shape.empty() ? Dim(1) : g.inputs[0].shape[0],
                             Dim(classes)};
  MCOMPRESS_CHECK(out.dtype == DType::kFloat32 && out.shape == expected, ModelError,
                  "task classification: output '", out.name, "': got ", to_string(out.dtype), " ",
                  to_string(out.shape), ", expected float32 ", to_string(expected));
}

}  // namespace

GraphInfo Graph::analyze() const {
  GraphInfo info;
  MCOMPRESS_CHECK(!inputs.empty() && static_cast<int64_t>(inputs.size()) <= kGraphMaxInputs,
                  ModelError, "inputs: got ", inputs.size(), ", expected 1 to ", kGraphMaxInputs);
  MCOMPRESS_CHECK(static_cast<int64_t>(nodes.size()) <= kGraphMaxNodes, ModelError, "nodes: got ",
                  nodes.size(), ", expected at most ", kGraphMaxNodes);
  MCOMPRESS_CHECK(!outputs.empty() && static_cast<int64_t>(outputs.size()) <= kGraphMaxInputs,
                  ModelError, "outputs: got ", outputs.size(), ", expected 1 to ", kGraphMaxInputs);

  std::map<std::string, std::string> defined_by;  // value -> "graph input" or "node 'x'"
  for (size_t i = 0; i < inputs.size(); ++i) {
    const ValueInfo& in = inputs[i];
    const std::string at = "input " + std::to_string(i) + " '" + in.name + "'";
    check_name(in.name, "input " + std::to_string(i), "name");
    MCOMPRESS_CHECK(defined_by.count(in.name) == 0, ModelError, at, ": name: duplicate value name");
    MCOMPRESS_CHECK(!in.shape.empty() && static_cast<int64_t>(in.shape.size()) <= kMaxRank,
                    ModelError, at, ": shape: got ", to_string(in.shape), ", expected rank 1 to ",
                    kMaxRank);
    for (const Dim& d : in.shape) {
      MCOMPRESS_CHECK(d.known() ? d.value >= 1 && d.value <= kMaxDimSize : is_symbol(d.symbol),
                      ModelError, at, ": shape: got ", to_string(in.shape),
                      ", expected sizes in [1, ", kMaxDimSize,
                      "] or symbols like 'batch' (letters, digits, _)");
    }
    defined_by[in.name] = "graph input";
    info.values[in.name] = in;
  }

  // Where each value is first produced, to tell "defined later" from "never defined".
  std::map<std::string, size_t> first_producer;
  for (size_t k = 0; k < nodes.size(); ++k) {
    for (const auto& out : nodes[k].outputs) first_producer.emplace(out, k);
  }

  std::map<std::string, size_t> node_index;
  std::map<std::string, std::string> param_owner;
  for (size_t k = 0; k < nodes.size(); ++k) {
    const Node& node = nodes[k];
    check_name(node.name, "node #" + std::to_string(k), "name");
    const auto [seen, fresh] = node_index.emplace(node.name, k);
    MCOMPRESS_CHECK(fresh, ModelError, "node '", node.name, "' (#", k,
                    "): name: duplicate node name, also node #", seen->second);
    const OpSchema* schema = find_op_schema(node.op);
    if (schema == nullptr) {
      std::string accepted;
      for (const auto& s : op_schemas()) accepted += (accepted.empty() ? "" : ", ") + s.op;
      throw ModelError("node '" + node.name + "': op: got '" + node.op.substr(0, 64) +
                       "', expected one of: " + accepted);
    }
    const std::string at = "node '" + node.name + "' (" + node.op + ")";
    const int64_t max_inputs = schema->max_inputs < 0 ? kMaxNodeInputs : schema->max_inputs;
    const auto n_in = static_cast<int64_t>(node.inputs.size());
    MCOMPRESS_CHECK(n_in >= schema->min_inputs && n_in <= max_inputs, ModelError, at,
                    ": inputs: got ", n_in, " inputs, expected ",
                    schema->min_inputs == max_inputs
                        ? std::to_string(max_inputs)
                        : std::to_string(schema->min_inputs) + " to " + std::to_string(max_inputs));
    MCOMPRESS_CHECK(static_cast<int64_t>(node.outputs.size()) == schema->num_outputs, ModelError,
                    at, ": outputs: got ", node.outputs.size(), " outputs, expected ",
                    schema->num_outputs);

    std::vector<SymShape> in_shapes;
    std::vector<DType> in_types;
    for (size_t j = 0; j < node.inputs.size(); ++j) {
      const std::string& v = node.inputs[j];
      const std::string field = at + ": input " + std::to_string(j);
      if (info.values.count(v) == 0) {
        const auto later = first_producer.find(v);
        MCOMPRESS_CHECK(later == first_producer.end(), ModelError, field, ": value '", v,
                        "' is produced by node '", nodes[later->second].name, "' (#", later->second,
                        later->second == k ? ", itself" : "",
                        "), expected a value defined before node #", k,
                        " (nodes must be in topological order; a cycle cannot be)");
        throw ModelError(field + ": value '" + v.substr(0, 64) +
                         "' is not defined, expected a graph input or an earlier node's output");
      }
      const ValueInfo& value = info.values.at(v);
      if (schema->float_inputs) {
        MCOMPRESS_CHECK(value.dtype == DType::kFloat32, ModelError, field, ": value '", v, "' is ",
                        to_string(value.dtype), ", expected float32");
      } else if (j > 0) {
        MCOMPRESS_CHECK(value.dtype == in_types[0], ModelError, field, ": value '", v, "' is ",
                        to_string(value.dtype), ", expected ", to_string(in_types[0]),
                        " like input 0");
      }
      in_shapes.push_back(value.shape);
      in_types.push_back(value.dtype);
    }

    const json attrs = schema->resolve_attrs(node.name, node.attrs);
    const OpContext ctx{node.name, node.op, attrs, in_shapes, in_types};
    const std::vector<SymShape> out_shapes = schema->infer(ctx);
    for (size_t j = 0; j < node.outputs.size(); ++j) {
      const std::string& v = node.outputs[j];
      const std::string field = at + ": output " + std::to_string(j);
      check_name(v, at, ("output " + std::to_string(j)).c_str());
      const auto clash = defined_by.find(v);
      MCOMPRESS_CHECK(clash == defined_by.end(), ModelError, field, ": value '", v,
                      "': duplicate value name, already defined by ",
                      clash == defined_by.end() ? "" : clash->second);
      check_output_shape(out_shapes[j], field + " '" + v + "'");
      defined_by[v] = "node '" + node.name + "'";
      info.values[v] =
          ValueInfo{v, in_types.empty() ? DType::kFloat32 : in_types[0], out_shapes[j]};
    }

    std::vector<ParamSpec> specs;
    if (schema->params) specs = schema->params(ctx);
    std::set<std::string> roles;
    for (const ParamSpec& spec : specs) {
      roles.insert(spec.role);
      const auto renamed = node.params.find(spec.role);
      const std::string name =
          renamed == node.params.end() ? node.name + "." + spec.role : renamed->second;
      const auto [owner, unique] = param_owner.emplace(name, node.name);
      MCOMPRESS_CHECK(unique, ModelError, at, ": params: tensor name '", name, "' (role ",
                      spec.role, ") is already a parameter of node '", owner->second, "'");
      info.params.push_back({name, node.name, spec});
    }
    for (const auto& [role, name] : node.params) {
      std::string accepted;
      for (const auto& r : roles) accepted += (accepted.empty() ? "" : ", ") + r;
      MCOMPRESS_CHECK(roles.count(role) != 0, ModelError, at, ": params: role '",
                      role.substr(0, 64), "' unknown, expected one of: ",
                      accepted.empty() ? "none (this node has no parameters)" : accepted);
    }
    info.attrs.push_back(attrs);
  }

  std::set<std::string> seen_outputs;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const std::string& v = outputs[i];
    MCOMPRESS_CHECK(info.values.count(v) != 0, ModelError, "output ", i, ": value '",
                    v.substr(0, 64), "' is not defined, expected a graph input or node output");
    MCOMPRESS_CHECK(seen_outputs.insert(v).second, ModelError, "output ", i, ": value '", v,
                    "' is listed twice");
  }
  check_preprocess(*this);
  check_task(*this, info);
  return info;
}

// ---- the document ------------------------------------------------------------------------

json Graph::to_json() const {
  json doc;
  doc["format"] = kGraphFormat;
  doc["version"] = kGraphVersion;
  if (!name.empty()) doc["name"] = name;
  doc["inputs"] = json::array();
  for (const ValueInfo& in : inputs) {
    json shape = json::array();
    for (const Dim& d : in.shape) {
      if (d.known()) {
        shape.push_back(d.value);
      } else {
        shape.push_back(d.symbol);
      }
    }
    doc["inputs"].push_back({{"name", in.name}, {"dtype", to_string(in.dtype)}, {"shape", shape}});
  }
  doc["nodes"] = json::array();
  for (const Node& node : nodes) {
    json j = {{"name", node.name},
              {"op", node.op},
              {"inputs", node.inputs},
              {"outputs", node.outputs},
              {"attrs", node.attrs}};
    if (!node.params.empty()) j["params"] = node.params;
    doc["nodes"].push_back(std::move(j));
  }
  doc["outputs"] = outputs;
  if (preprocess.kind == Preprocess::Kind::kNone) {
    doc["preprocess"] = {{"kind", "none"}};
  } else {
    doc["preprocess"] = {{"kind", "normalize"}, {"mean", preprocess.mean}, {"std", preprocess.std}};
  }
  doc["task"] = {{"kind", "classification"}, {"num_classes", task.num_classes}};
  return doc;
}

std::string Graph::to_json_text(int indent) const { return to_json().dump(indent); }

Graph Graph::from_json(const json& doc) {
  check_json_depth(doc);
  expect_keys(doc, "$", {"format", "version", "inputs", "nodes", "outputs", "task"},
              {"name", "preprocess"});
  const std::string format = read_string(doc["format"], "$.format");
  if (format != kGraphFormat) {
    doc_error("$.format", "got '" + format.substr(0, 64) + "', expected '" + kGraphFormat + "'");
  }
  const int64_t version = read_int(doc["version"], "$.version", 1, INT64_MAX);
  if (version > kGraphVersion) {
    doc_error("$.version", "got " + std::to_string(version) + ", this build reads versions up to " +
                               std::to_string(kGraphVersion));
  }
  Graph g;
  if (doc.contains("name")) {
    g.name = read_string(doc["name"], "$.name");
    check_name(g.name, "graph", "name");
  }
  const json& inputs = read_array(doc["inputs"], "$.inputs", kGraphMaxInputs);
  for (size_t i = 0; i < inputs.size(); ++i) {
    g.inputs.push_back(read_input(inputs[i], "$.inputs[" + std::to_string(i) + "]"));
  }
  const json& nodes = read_array(doc["nodes"], "$.nodes", kGraphMaxNodes);
  for (size_t i = 0; i < nodes.size(); ++i) {
    g.nodes.push_back(read_node(nodes[i], "$.nodes[" + std::to_string(i) + "]"));
  }
  g.outputs = read_names(doc["outputs"], "$.outputs", kGraphMaxInputs);
  if (doc.contains("preprocess")) {
    const json& p = doc["preprocess"];
    expect_keys(p, "$.preprocess", {"kind"}, {"mean", "std"});
    const std::string kind = read_string(p["kind"], "$.preprocess.kind");
    if (kind == "normalize") {
      expect_keys(p, "$.preprocess", {"kind", "mean", "std"}, {});
      g.preprocess.kind = Preprocess::Kind::kNormalize;
      g.preprocess.mean = read_numbers(p["mean"], "$.preprocess.mean");
      g.preprocess.std = read_numbers(p["std"], "$.preprocess.std");
    } else if (kind == "none") {
      expect_keys(p, "$.preprocess", {"kind"}, {});
    } else {
      doc_error("$.preprocess.kind",
                "got '" + kind.substr(0, 64) + "', expected none or normalize");
    }
  }
  expect_keys(doc["task"], "$.task", {"kind", "num_classes"}, {});
  const std::string kind = read_string(doc["task"]["kind"], "$.task.kind");
  if (kind != "classification") {
    doc_error("$.task.kind", "got '" + kind.substr(0, 64) + "', expected classification");
  }
  g.task.num_classes = read_int(doc["task"]["num_classes"], "$.task.num_classes", 2, kMaxDimSize);
  g.validate();
  return g;
}

Graph Graph::from_json_text(const std::string& text) {
  MCOMPRESS_CHECK(static_cast<int64_t>(text.size()) <= kGraphMaxDocumentBytes, ModelError,
                  "graph document: got ", text.size(), " bytes, expected at most ",
                  kGraphMaxDocumentBytes);
  json doc;
  try {
    doc = parse_json_input(text, JsonLimits{static_cast<size_t>(kGraphMaxDepth),
                                            static_cast<size_t>(kGraphMaxDocumentBytes)});
  } catch (const FormatError& e) {
    throw ModelError(std::string("graph document: ") + e.what());
  }
  return from_json(doc);
}

// ---- the sequential front end ------------------------------------------------------------

namespace {

// Appends nodes while tracking the value that flows on.
struct Builder {
  Graph& g;
  std::string value;  // the current value

  // A node named `name` whose one output value is also called `name`.
  void add_with_inputs(const std::string& name, const std::string& op, std::vector<std::string> in,
                       json attrs) {
    g.nodes.push_back(Node{name, op, std::move(in), {name}, std::move(attrs), {}});
    value = name;
  }
  void add(const std::string& name, const std::string& op, json attrs = json::object()) {
    add_with_inputs(name, op, {value}, std::move(attrs));
  }
};

json conv_attrs(int64_t out, int64_t kernel, int64_t stride, int64_t padding, int64_t groups,
                bool bias) {
  return {{"out_channels", out},
          {"kernel_shape", {kernel, kernel}},
          {"strides", {stride, stride}},
          {"pads", {padding, padding, padding, padding}},
          {"group", groups},
          {"bias", bias ? 1 : 0}};
}

// PyTorch's momentum m (running = (1 - m) running + m batch) is ONNX's 1 - m.
json bn_attrs(double eps, double torch_momentum) {
  return {{"epsilon", eps}, {"momentum", 1.0 - torch_momentum}};
}

json window_attrs(const LayerSpec& l) {
  return {{"kernel_shape", {l.kernel_size, l.kernel_size}},
          {"strides", {l.stride, l.stride}},
          {"pads", {l.padding, l.padding, l.padding, l.padding}}};
}

}  // namespace

Graph Graph::from_sequential(const ArchSpec& given) {
  const ArchSpec spec = given.resolved();
  Graph g;
  g.name = spec.name;
  SymShape shape = {Dim::named("batch")};
  for (int64_t d : spec.input_shape) shape.push_back(Dim(d));
  g.inputs.push_back(ValueInfo{"input", DType::kFloat32, shape});
  g.preprocess.kind = Preprocess::Kind::kNormalize;
  g.preprocess.mean = spec.mean;
  g.preprocess.std = spec.std;
  g.task.num_classes = spec.num_classes;

  Builder b{g, "input"};
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const LayerSpec& l = spec.layers[i];
    const std::string name = std::to_string(i);
    switch (l.type) {
      case LayerType::kLinear:
        b.add(name, "Gemm", {{"out_features", l.out_features}, {"bias", l.bias ? 1 : 0}});
        break;
      case LayerType::kConv2d:
        b.add(name, "Conv",
              conv_attrs(l.out_channels, l.kernel_size, l.stride, l.padding, l.groups, l.bias));
        break;
      case LayerType::kBatchNorm1d:
      case LayerType::kBatchNorm2d:
        b.add(name, "BatchNormalization", bn_attrs(l.eps, l.momentum));
        break;
      case LayerType::kReLU:
        b.add(name, "Relu");
        break;
      case LayerType::kMaxPool2d:
        b.add(name, "MaxPool", window_attrs(l));
        break;
      case LayerType::kAvgPool2d: {
        json attrs = window_attrs(l);
        attrs["count_include_pad"] = 1;  // PyTorch's AvgPool2d default
        b.add(name, "AveragePool", attrs);
        break;
      }
      case LayerType::kAdaptiveAvgPool2d:
        if (l.output_size == 1) {
          b.add(name, "GlobalAveragePool");
        } else {
          b.add(name, "AdaptiveAveragePool", {{"output_size", {l.output_size, l.output_size}}});
        }
        break;
      case LayerType::kFlatten:
        b.add(name, "Flatten", {{"axis", 1}});
        break;
      case LayerType::kDropout:
        b.add(name, "Dropout", {{"ratio", l.p}});
        break;
      case LayerType::kResidual: {
        // He et al.'s block, batchnorms with PyTorch's defaults (eps 1e-5, momentum 0.1).
        const std::string block_input = b.value;
        const std::string p = name + ".";
        b.add(p + "conv1", "Conv", conv_attrs(l.out_channels, 3, l.stride, 1, 1, false));
        b.add(p + "bn1", "BatchNormalization", bn_attrs(1e-5, 0.1));
        b.add(p + "relu1", "Relu");
        b.add(p + "conv2", "Conv", conv_attrs(l.out_channels, 3, 1, 1, 1, false));
        b.add(p + "bn2", "BatchNormalization", bn_attrs(1e-5, 0.1));
        const std::string main_path = b.value;
        std::string shortcut = block_input;
        if (l.projection) {
          b.add_with_inputs(p + "shortcut.0", "Conv", {block_input},
                            conv_attrs(l.out_channels, 1, l.stride, 0, 1, false));
          b.add(p + "shortcut.1", "BatchNormalization", bn_attrs(1e-5, 0.1));
          shortcut = b.value;
        }
        b.add_with_inputs(p + "add", "Add", {main_path, shortcut}, json::object());
        b.add(name, "Relu");
        break;
      }
    }
  }
  g.outputs = {b.value};
  return g;
}

}  // namespace mcompress
