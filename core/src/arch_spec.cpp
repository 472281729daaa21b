#include "mcompress/core/arch_spec.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <sstream>

#include "mcompress/core/error.h"
#include "mcompress/core/json_input.h"
#include "mcompress/core/limits.h"

namespace mcompress {
namespace {

using json = nlohmann::json;
using Shape = std::vector<int64_t>;

struct LayerTypeName {
  LayerType type;
  const char* name;
  std::set<std::string> fields;  // JSON fields allowed besides "type"
};

const std::vector<LayerTypeName>& layer_type_table() {
  static const std::vector<LayerTypeName> table = {
      {LayerType::kLinear, "linear", {"in_features", "out_features", "bias"}},
      {LayerType::kConv2d,
       "conv2d",
       {"in_channels", "out_channels", "kernel_size", "stride", "padding", "groups", "bias"}},
      {LayerType::kBatchNorm1d, "batchnorm1d", {"num_features", "eps", "momentum"}},
      {LayerType::kBatchNorm2d, "batchnorm2d", {"num_features", "eps", "momentum"}},
      {LayerType::kReLU, "relu", {}},
      {LayerType::kMaxPool2d, "maxpool2d", {"kernel_size", "stride", "padding"}},
      {LayerType::kAvgPool2d, "avgpool2d", {"kernel_size", "stride", "padding"}},
      {LayerType::kAdaptiveAvgPool2d, "adaptive_avgpool2d", {"output_size"}},
      {LayerType::kFlatten, "flatten", {}},
      {LayerType::kDropout, "dropout", {"p"}},
      {LayerType::kResidual, "residual", {"in_channels", "out_channels", "stride", "projection"}},
  };
  return table;
}

const LayerTypeName& table_entry(LayerType type) {
  for (const auto& entry : layer_type_table()) {
    if (entry.type == type) return entry;
  }
  throw ModelError("unknown layer type id " + std::to_string(static_cast<int>(type)));
}

std::string where(size_t index, LayerType type) {
  return "layer " + std::to_string(index) + " (" + to_string(type) + ")";
}

// A size field: an integer in [0, kMaxSizeField] (0 means "infer" where a field allows it).
int64_t get_int(const json& node, const std::string& field, const std::string& at) {
  MCOMPRESS_CHECK(node.is_number_integer(), ModelError, at, ": field '", field,
                  "' must be an integer, got ", json_excerpt(node));
  const int64_t v = node.is_number_unsigned() && node.get<uint64_t>() > uint64_t(kMaxSizeField)
                        ? kMaxSizeField + 1
                        : node.get<int64_t>();
  MCOMPRESS_CHECK(v >= 0 && v <= kMaxSizeField, ModelError, at, ": field '", field,
                  "' must be in [0, ", kMaxSizeField, "], got ", json_excerpt(node));
  return v;
}

double get_number(const json& node, const std::string& field, const std::string& at) {
  MCOMPRESS_CHECK(node.is_number(), ModelError, at, ": field '", field, "' must be a number, got ",
                  json_excerpt(node));
  return node.get<double>();
}

LayerSpec layer_from_json(const json& node, size_t index) {
  const std::string at0 = "layer " + std::to_string(index);
  MCOMPRESS_CHECK(node.is_object(), ModelError, at0, ": must be a JSON object, got ",
                  json_excerpt(node));
  MCOMPRESS_CHECK(node.contains("type") && node["type"].is_string(), ModelError, at0,
                  ": missing string field 'type'");
  LayerSpec layer;
  try {
    layer.type = parse_layer_type(node["type"].get<std::string>());
  } catch (const ModelError& e) {
    throw ModelError(at0 + ": " + e.what());
  }
  const std::string at = where(index, layer.type);
  const auto& allowed = table_entry(layer.type).fields;
  for (const auto& [key, value] : node.items()) {
    if (key == "type") continue;
    if (allowed.count(key) == 0) {
      std::string accepted;
      for (const auto& f : allowed) accepted += (accepted.empty() ? "" : ", ") + f;
      throw ModelError(at + ": unknown field '" + key +
                       "'; accepted: " + (accepted.empty() ? "none" : accepted));
    }
    if (key == "bias" || key == "projection") {
      MCOMPRESS_CHECK(value.is_boolean(), ModelError, at, ": field '", key,
                      "' must be true or false, got ", json_excerpt(value));
      (key == "bias" ? layer.bias : layer.projection) = value.get<bool>();
    } else if (key == "eps") {
      layer.eps = get_number(value, key, at);
    } else if (key == "momentum") {
      layer.momentum = get_number(value, key, at);
    } else if (key == "p") {
      layer.p = get_number(value, key, at);
    } else {
      const int64_t v = get_int(value, key, at);
      // 0 would silently mean "the default"; a spec that says 0 means something else.
      MCOMPRESS_CHECK(key != "stride" || v != 0, ModelError, at,
                      ": field 'stride' must be >= 1 (leave it out for the default), got 0");
      if (key == "in_features")
        layer.in_features = v;
      else if (key == "out_features")
        layer.out_features = v;
      else if (key == "in_channels")
        layer.in_channels = v;
      else if (key == "out_channels")
        layer.out_channels = v;
      else if (key == "kernel_size")
        layer.kernel_size = v;
      else if (key == "stride")
        layer.stride = v;
      else if (key == "padding")
        layer.padding = v;
      else if (key == "groups")
        layer.groups = v;
      else if (key == "num_features")
        layer.num_features = v;
      else if (key == "output_size")
        layer.output_size = v;
    }
  }
  return layer;
}

json layer_to_json(const LayerSpec& l) {
  json j;
  j["type"] = to_string(l.type);
  switch (l.type) {
    case LayerType::kLinear:
      j["in_features"] = l.in_features;
      j["out_features"] = l.out_features;
      j["bias"] = l.bias;
      break;
    case LayerType::kConv2d:
      j["in_channels"] = l.in_channels;
      j["out_channels"] = l.out_channels;
      j["kernel_size"] = l.kernel_size;
      j["stride"] = l.stride;
      j["padding"] = l.padding;
      j["groups"] = l.groups;
      j["bias"] = l.bias;
      break;
    case LayerType::kBatchNorm1d:
    case LayerType::kBatchNorm2d:
      j["num_features"] = l.num_features;
      j["eps"] = l.eps;
      j["momentum"] = l.momentum;
      break;
    case LayerType::kMaxPool2d:
    case LayerType::kAvgPool2d:
      j["kernel_size"] = l.kernel_size;
      j["stride"] = l.stride;
      j["padding"] = l.padding;
      break;
    case LayerType::kAdaptiveAvgPool2d:
      j["output_size"] = l.output_size;
      break;
    case LayerType::kDropout:
      j["p"] = l.p;
      break;
    case LayerType::kResidual:
      j["in_channels"] = l.in_channels;
      j["out_channels"] = l.out_channels;
      j["stride"] = l.stride;
      j["projection"] = l.projection;
      break;
    case LayerType::kReLU:
    case LayerType::kFlatten:
      break;
  }
  return j;
}

// Fills an inferable field from the incoming shape, or checks the value the spec gave.
void infer_or_check(int64_t& field, int64_t actual, const std::string& at, const char* name) {
  if (field == 0) {
    field = actual;
  } else {
    MCOMPRESS_CHECK(field == actual, ModelError, at, ": ", name, " is ", field,
                    " but the input has ", actual);
  }
}

void require_rank(const Shape& in, size_t rank, const std::string& at) {
  MCOMPRESS_CHECK(in.size() == rank, ModelError, at, ": expects a ",
                  rank == 1 ? "flat [features]" : "[channels, height, width]", " input, got shape ",
                  shape_to_string(in), rank == 1 ? " (add a flatten layer before it)" : "");
}

void require_positive(int64_t v, const std::string& at, const char* name) {
  MCOMPRESS_CHECK(v > 0, ModelError, at, ": ", name, " must be > 0, got ", v);
}

int64_t pooled_size(int64_t size, int64_t kernel, int64_t stride, int64_t padding,
                    const std::string& at) {
  const int64_t out = (size + 2 * padding - kernel) / stride + 1;
  MCOMPRESS_CHECK(size + 2 * padding >= kernel && out > 0, ModelError, at, ": kernel ", kernel,
                  " does not fit an input of size ", size, " with padding ", padding);
  return out;
}

// Resolves `layer` against the shape flowing into it and returns its output shape.
Shape resolve_layer(LayerSpec& l, const Shape& in, size_t index) {
  const std::string at = where(index, l.type);
  switch (l.type) {
    case LayerType::kLinear:
      require_rank(in, 1, at);
      infer_or_check(l.in_features, in[0], at, "in_features");
      require_positive(l.out_features, at, "out_features");
      return {l.out_features};
    case LayerType::kConv2d: {
      require_rank(in, 3, at);
      infer_or_check(l.in_channels, in[0], at, "in_channels");
      require_positive(l.out_channels, at, "out_channels");
      require_positive(l.kernel_size, at, "kernel_size");
      if (l.stride == 0) l.stride = 1;
      require_positive(l.stride, at, "stride");
      MCOMPRESS_CHECK(l.padding >= 0, ModelError, at, ": padding must be >= 0, got ", l.padding);
      require_positive(l.groups, at, "groups");
      MCOMPRESS_CHECK(l.in_channels % l.groups == 0 && l.out_channels % l.groups == 0, ModelError,
                      at, ": groups ", l.groups, " must divide in_channels ", l.in_channels,
                      " and out_channels ", l.out_channels);
      return {l.out_channels, pooled_size(in[1], l.kernel_size, l.stride, l.padding, at),
              pooled_size(in[2], l.kernel_size, l.stride, l.padding, at)};
    }
    case LayerType::kBatchNorm1d:
    case LayerType::kBatchNorm2d:
      require_rank(in, l.type == LayerType::kBatchNorm1d ? 1 : 3, at);
      infer_or_check(l.num_features, in[0], at, "num_features");
      MCOMPRESS_CHECK(l.eps > 0 && std::isfinite(l.eps), ModelError, at, ": eps must be > 0, got ",
                      l.eps);
      MCOMPRESS_CHECK(l.momentum >= 0 && l.momentum <= 1, ModelError, at,
                      ": momentum must be in [0, 1], got ", l.momentum);
      return in;
    case LayerType::kReLU:
      return in;
    case LayerType::kDropout:
      MCOMPRESS_CHECK(l.p >= 0 && l.p < 1, ModelError, at, ": p must be in [0, 1), got ", l.p);
      return in;
    case LayerType::kMaxPool2d:
    case LayerType::kAvgPool2d:
      require_rank(in, 3, at);
      require_positive(l.kernel_size, at, "kernel_size");
      if (l.stride == 0) l.stride = l.kernel_size;
      require_positive(l.stride, at, "stride");
      MCOMPRESS_CHECK(l.padding >= 0 && 2 * l.padding <= l.kernel_size, ModelError, at,
                      ": padding must be in [0, kernel_size/2], got ", l.padding);
      return {in[0], pooled_size(in[1], l.kernel_size, l.stride, l.padding, at),
              pooled_size(in[2], l.kernel_size, l.stride, l.padding, at)};
    case LayerType::kAdaptiveAvgPool2d:
      require_rank(in, 3, at);
      require_positive(l.output_size, at, "output_size");
      return {in[0], l.output_size, l.output_size};
    case LayerType::kFlatten:
      return {checked_elements(in, kMaxActivationElements, at)};
    case LayerType::kResidual: {
      require_rank(in, 3, at);
      infer_or_check(l.in_channels, in[0], at, "in_channels");
      if (l.out_channels == 0) l.out_channels = l.in_channels;
      require_positive(l.out_channels, at, "out_channels");
      if (l.stride == 0) l.stride = 1;
      require_positive(l.stride, at, "stride");
      // A shortcut must change shape whenever the main path does.
      if (l.stride != 1 || l.in_channels != l.out_channels) l.projection = true;
      return {l.out_channels, pooled_size(in[1], 3, l.stride, 1, at),
              pooled_size(in[2], 3, l.stride, 1, at)};
    }
  }
  throw ModelError(at + ": unhandled layer type");
}

std::vector<Shape> resolve_all(ArchSpec& spec) {
  MCOMPRESS_CHECK(spec.input_shape.size() == 1 || spec.input_shape.size() == 3, ModelError,
                  "input_shape must be [features] or [channels, height, width], got ",
                  shape_to_string(spec.input_shape));
  for (auto d : spec.input_shape) {
    MCOMPRESS_CHECK(d > 0 && d <= kMaxSizeField, ModelError, "input_shape must be in [1, ",
                    kMaxSizeField, "], got ", shape_to_string(spec.input_shape));
  }
  MCOMPRESS_CHECK(spec.num_classes >= 2 && spec.num_classes <= kMaxSizeField, ModelError,
                  "num_classes must be in [2, ", kMaxSizeField, "], got ", spec.num_classes);
  MCOMPRESS_CHECK(static_cast<int64_t>(spec.layers.size()) <= kMaxLayers, ModelError,
                  "the spec has ", spec.layers.size(), " layers; the limit is ", kMaxLayers);
  const size_t channels = static_cast<size_t>(spec.input_shape[0]);
  for (const auto* field : {&spec.mean, &spec.std}) {
    const char* name = field == &spec.mean ? "mean" : "std";
    MCOMPRESS_CHECK(field->size() == 1 || field->size() == channels, ModelError, name,
                    " must have 1 or ", channels, " values, got ", field->size());
    for (double v : *field) {
      MCOMPRESS_CHECK(std::isfinite(v), ModelError, name, " must be finite, got ", v);
    }
  }
  for (double s : spec.std) {
    MCOMPRESS_CHECK(s > 0, ModelError, "std must be > 0, got ", s);
  }
  MCOMPRESS_CHECK(!spec.layers.empty(), ModelError, "the spec has no layers");

  std::vector<Shape> shapes;
  Shape shape = spec.input_shape;
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    shape = resolve_layer(spec.layers[i], shape, i);
    checked_elements(shape, kMaxActivationElements, where(i, spec.layers[i].type) + ": output");
    shapes.push_back(shape);
  }
  MCOMPRESS_CHECK(shape.size() == 1 && shape[0] == spec.num_classes, ModelError,
                  "the last layer outputs ", shape_to_string(shape), " but num_classes is ",
                  spec.num_classes);
  return shapes;
}

void add_batchnorm_tensors(std::vector<TensorInfo>& out, const std::string& prefix,
                           int64_t features, int64_t layer) {
  out.push_back({prefix + "weight", {features}, TensorRole::kWeight, layer});
  out.push_back({prefix + "bias", {features}, TensorRole::kBias, layer});
  out.push_back({prefix + "running_mean", {features}, TensorRole::kRunningMean, layer});
  out.push_back({prefix + "running_var", {features}, TensorRole::kRunningVar, layer});
}

}  // namespace

std::string to_string(LayerType type) { return table_entry(type).name; }

LayerType parse_layer_type(const std::string& name) {
  std::string accepted;
  for (const auto& entry : layer_type_table()) {
    if (name == entry.name) return entry.type;
    accepted += (accepted.empty() ? "" : ", ") + std::string(entry.name);
  }
  throw ModelError("unknown layer type '" + name + "'; accepted: " + accepted);
}

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

ArchSpec ArchSpec::from_json_text(const std::string& text) {
  json doc;
  try {
    doc = parse_json_input(text);
  } catch (const FormatError& e) {
    throw ModelError(std::string("the spec: ") + e.what());
  }
  MCOMPRESS_CHECK(doc.is_object(), ModelError, "the spec must be a JSON object");
  static const std::set<std::string> known = {"name", "input_shape", "num_classes",
                                              "mean", "std",         "layers"};
  for (const auto& [key, value] : doc.items()) {
    MCOMPRESS_CHECK(known.count(key), ModelError, "unknown spec field '", key,
                    "'; accepted: name, input_shape, num_classes, mean, std, layers");
  }
  ArchSpec spec;
  try {
    if (doc.contains("name")) spec.name = doc.at("name").get<std::string>();
    MCOMPRESS_CHECK(doc.contains("input_shape"), ModelError, "the spec has no 'input_shape'");
    spec.input_shape = doc.at("input_shape").get<std::vector<int64_t>>();
    if (doc.contains("num_classes")) spec.num_classes = doc.at("num_classes").get<int64_t>();
    if (doc.contains("mean")) spec.mean = doc.at("mean").get<std::vector<double>>();
    if (doc.contains("std")) spec.std = doc.at("std").get<std::vector<double>>();
  } catch (const json::exception& e) {
    throw ModelError(std::string("bad spec field: ") + e.what());
  }
  MCOMPRESS_CHECK(doc.contains("layers") && doc["layers"].is_array(), ModelError,
                  "the spec has no 'layers' array");
  for (size_t i = 0; i < doc["layers"].size(); ++i) {
    spec.layers.push_back(layer_from_json(doc["layers"][i], i));
  }
  return spec.resolved();
}

std::string ArchSpec::to_json_text(int indent) const {
  json doc;
  doc["name"] = name;
  doc["input_shape"] = input_shape;
  doc["num_classes"] = num_classes;
  doc["mean"] = mean;
  doc["std"] = std;
  doc["layers"] = json::array();
  for (const auto& l : layers) doc["layers"].push_back(layer_to_json(l));
  return doc.dump(indent);
}

std::vector<std::vector<int64_t>> ArchSpec::infer_shapes() const {
  ArchSpec copy = *this;
  return resolve_all(copy);
}

ArchSpec ArchSpec::resolved() const {
  ArchSpec copy = *this;
  resolve_all(copy);
  for (const auto& t : copy.tensors()) {
    checked_elements(t.shape, kMaxTensorElements, "tensor '" + t.name + "'");
  }
  return copy;
}

std::vector<TensorInfo> ArchSpec::tensors() const {
  std::vector<TensorInfo> out;
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& l = layers[i];
    const auto idx = static_cast<int64_t>(i);
    const std::string p = std::to_string(i) + ".";
    switch (l.type) {
      case LayerType::kLinear:
        out.push_back({p + "weight", {l.out_features, l.in_features}, TensorRole::kWeight, idx});
        if (l.bias) out.push_back({p + "bias", {l.out_features}, TensorRole::kBias, idx});
        break;
      case LayerType::kConv2d:
        out.push_back({p + "weight",
                       {l.out_channels, l.in_channels / l.groups, l.kernel_size, l.kernel_size},
                       TensorRole::kWeight,
                       idx});
        if (l.bias) out.push_back({p + "bias", {l.out_channels}, TensorRole::kBias, idx});
        break;
      case LayerType::kBatchNorm1d:
      case LayerType::kBatchNorm2d:
        add_batchnorm_tensors(out, p, l.num_features, idx);
        break;
      case LayerType::kResidual:
        out.push_back(
            {p + "conv1.weight", {l.out_channels, l.in_channels, 3, 3}, TensorRole::kWeight, idx});
        add_batchnorm_tensors(out, p + "bn1.", l.out_channels, idx);
        out.push_back(
            {p + "conv2.weight", {l.out_channels, l.out_channels, 3, 3}, TensorRole::kWeight, idx});
        add_batchnorm_tensors(out, p + "bn2.", l.out_channels, idx);
        if (l.projection) {
          out.push_back({p + "shortcut.0.weight",
                         {l.out_channels, l.in_channels, 1, 1},
                         TensorRole::kWeight,
                         idx});
          add_batchnorm_tensors(out, p + "shortcut.1.", l.out_channels, idx);
        }
        break;
      default:
        break;
    }
  }
  return out;
}

int64_t ArchSpec::parameter_count() const { return mcompress::parameter_count(tensors()); }

int64_t parameter_count(const std::vector<TensorInfo>& tensors) {
  int64_t total = 0;
  for (const auto& t : tensors) {
    if (t.role != TensorRole::kWeight && t.role != TensorRole::kBias) continue;
    int64_t n = 1;
    for (auto d : t.shape) n *= d;
    total += n;
  }
  return total;
}

}  // namespace mcompress
