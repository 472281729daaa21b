#include "mcompress/core/int8_steps.h"

#include <set>
#include <utility>

namespace mcompress {
namespace {

using json = nlohmann::json;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool all_equal(const std::vector<int64_t>& v, int64_t value) {
  for (int64_t x : v) {
    if (x != value) return false;
  }
  return true;
}

// The attribute as a list, or `fallback` when it is empty (the ONNX default).
std::vector<int64_t> ints_or(const json& attrs, const char* name, std::vector<int64_t> fallback) {
  std::vector<int64_t> v = attrs.value(name, std::vector<int64_t>{});
  return v.empty() ? fallback : v;
}

bool symmetric_pads(const json& attrs) {
  const auto pads = attrs.value("pads", std::vector<int64_t>{});
  const size_t n = pads.size() / 2;
  for (size_t i = 0; i < n; ++i) {
    if (pads[i] != pads[i + n]) return false;
  }
  return true;
}

// The tensor name of each node's weight.
std::map<std::string, std::string> weight_names(const GraphInfo& info) {
  std::map<std::string, std::string> out;
  for (const GraphParam& p : info.params) {
    if (p.spec.role == "weight") out[p.node] = p.name;
  }
  return out;
}

// The int8-static form of one step, or kNone with the reason.
Int8Step static_step(const Model& model, const GraphInfo& info, const LoweredStep& s,
                     const Node& anchor, const json& attrs) {
  if (find_qparams(model, s.output) == nullptr) return {Int8Form::kNone, "no calibrated qparams"};
  if (anchor.op == "Conv") {
    const auto strides = ints_or(attrs, "strides", {1, 1});
    const auto pads = ints_or(attrs, "pads", {0, 0, 0, 0});
    if (attrs.at("kernel_shape").size() != 2 || strides.size() != 2 || strides[0] != strides[1] ||
        !all_equal(pads, pads[0]) || !all_equal(ints_or(attrs, "dilations", {1, 1}), 1)) {
      return {Int8Form::kNone,
              "no int8 kernel for this geometry (2-D, square strides, equal pads, no dilation)"};
    }
  }
  if (anchor.op == "Add" &&
      info.values.at(anchor.inputs[0]).shape != info.values.at(anchor.inputs[1]).shape) {
    return {Int8Form::kNone, "broadcasting Add"};
  }
  return {Int8Form::kStatic, ""};
}

}  // namespace

bool passes_quint8_through(const Graph& graph, const GraphInfo& info, const LoweredStep& step) {
  static const std::set<std::string> kOps = {
      "Relu",    "Clip",    "MaxPool", "AveragePool", "GlobalAveragePool", "AdaptiveAveragePool",
      "Flatten", "Reshape", "Dropout", "Identity"};
  if (step.nodes.size() != 1) return false;
  const Node& node = graph.nodes[step.nodes.front()];
  if (kOps.count(node.op) == 0) return false;
  // The quantized pools take symmetric padding only.
  const bool pool = node.op == "MaxPool" || node.op == "AveragePool";
  return !pool || symmetric_pads(info.attrs[step.nodes.front()]);
}

std::map<std::string, std::string> calibration_keys(const Graph& graph, const GraphInfo& info,
                                                    const std::vector<LoweredStep>& lowered) {
  std::map<std::string, std::string> keys = {{graph.inputs.at(0).name, "input"}};
  for (const LoweredStep& s : lowered) {
    const Node& anchor = graph.nodes[s.nodes.front()];
    keys[s.output] =
        passes_quint8_through(graph, info, s) ? keys.at(anchor.inputs.at(0)) : s.output;
  }
  return keys;
}

const ActivationQParams* find_qparams(const Model& model, const std::string& key) {
  if (const ActivationQParams* q = model.quant.find_activation(key)) return q;
  if (!model.is_sequential()) return nullptr;
  static const std::pair<std::string, std::string> kBefore[] = {
      {".relu1", ".conv1"}, {".bn2", ".conv2"}, {".shortcut.1", ".shortcut"}};
  for (const auto& [now, before] : kBefore) {
    if (ends_with(key, now)) {
      return model.quant.find_activation(key.substr(0, key.size() - now.size()) + before);
    }
  }
  return nullptr;
}

std::vector<Int8Step> int8_steps(const Model& model, const GraphInfo& info,
                                 const std::vector<LoweredStep>& lowered,
                                 const std::map<std::string, std::string>& keys) {
  const Graph& graph = model.graph();
  const bool is_static = model.quant.mode == "int8-static";
  const bool is_dynamic = model.quant.mode == "int8-dynamic";
  const auto weights = weight_names(info);
  std::vector<Int8Step> out;
  for (const LoweredStep& s : lowered) {
    const Node& anchor = graph.nodes[s.nodes.front()];
    const json& attrs = info.attrs[s.nodes.front()];
    Int8Step step;
    if (passes_quint8_through(graph, info, s)) {
      step.form = Int8Form::kPassthrough;
    } else if ((anchor.op == "Conv" && is_static) ||
               (anchor.op == "Gemm" && (is_static || is_dynamic))) {
      // Dynamic quantization covers Gemm (Linear) only, as PyTorch's quantize_dynamic.
      if (model.quant.find_int8(weights.at(anchor.name)) == nullptr) {
        step.why_not = "weight not int8";
      } else if (is_dynamic) {
        step.form = Int8Form::kDynamic;
      } else {
        step = static_step(model, info, s, anchor, attrs);
      }
    } else if (is_static && (anchor.op == "Add" || anchor.op == "Concat")) {
      step = static_step(model, info, s, anchor, attrs);
    }
    // A quint8 step needs every float input quantized, with calibrated qparams.
    if (step.form == Int8Form::kStatic) {
      for (const std::string& in : anchor.inputs) {
        if (find_qparams(model, keys.at(in)) == nullptr) {
          step = {Int8Form::kNone, "input '" + in + "' has no calibrated qparams"};
          break;
        }
      }
    }
    if (!step.why_not.empty()) step.why_not += ": fp32";
    out.push_back(std::move(step));
  }
  return out;
}

}  // namespace mcompress
