#include "mcompress/interop/onnx.h"

#include <ATen/ATen.h>
#include <onnx/checker.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <utility>

#include "mcompress/core/atomic_file.h"
#include "mcompress/core/error.h"
#include "mcompress/core/int8_steps.h"
#include "mcompress/core/kernel_weights.h"
#include "mcompress/core/lowering.h"
#include "mcompress/core/version.h"
#include "onnx_graph.h"
#include "onnx_weights.h"

namespace mcompress::interop {
namespace {

constexpr int64_t kOpset = 13;

using json = nlohmann::json;

std::vector<int64_t> ints(const json& attrs, const char* name) {
  return attrs.value(name, std::vector<int64_t>{});
}

// Emits the graph of one model (a sequential model as Graph::from_sequential makes it) step by
// lowered step (core/lowering.h), in the form runtime::Executor runs it with the int8 kernel
// policy: each step int8-static, int8-dynamic, passed through or float as core/int8_steps.h
// decides for both. Float steps are written unfused (Conv, BatchNormalization, Relu); int8
// steps fold their batchnorm as the runtime does.
class Exporter {
 public:
  Exporter(const Model& model, onnx::GraphProto* graph)
      : m_(model), graph_(model.graph()), info_(graph_.analyze()), g_(graph) {
    for (const GraphParam& p : info_.params) params_[p.node][p.spec.role] = p.name;
  }

  void run(const OnnxOptions& o) {
    MCOMPRESS_CHECK(graph_.inputs.size() == 1 && graph_.outputs.size() == 1 &&
                        graph_.inputs[0].dtype == DType::kFloat32,
                    ModelError, "ONNX export: '", m_.name(),
                    "': exports graphs of one float input and one output");
    g_.input(o.input_name, onnx::TensorProto::FLOAT, m_.input_shape(), "batch");
    values_[graph_.inputs[0].name] = normalize(o.input_name);
    const std::vector<LoweredStep> lowered = lower(graph_);
    keys_ = calibration_keys(graph_, info_, lowered);
    const std::vector<Int8Step> int8 = int8_steps(m_, info_, lowered, keys_);
    for (size_t i = 0; i < lowered.size(); ++i) emit(lowered[i], int8[i].form);
    // A final Identity gives the output its fixed name whatever produced it.
    g_.named("Identity", {values_.at(graph_.outputs[0])}, o.output_name);
    g_.output(o.output_name, onnx::TensorProto::FLOAT, {m_.num_classes()}, "batch");
  }

 private:
  using Emit = std::string (Exporter::*)(const Node&, const json&, std::vector<std::string>);

  const Model& m_;
  const Graph& graph_;
  const GraphInfo info_;
  OnnxGraph g_;
  std::map<std::string, std::map<std::string, std::string>> params_;  // node -> role -> tensor
  std::map<std::string, std::string> keys_;                           // value -> calibration key
  std::map<std::string, std::string> values_;      // value -> its (float) name in the graph
  std::set<std::string> quantized_;                // values whose name is a QDQ output
  std::map<std::string, std::string> qdq_inputs_;  // value -> its QDQ form, made once
  std::map<std::string, std::string> tensors_;     // model tensor -> its float value
  std::map<std::string, std::pair<std::string, std::string>> qparams_;  // key -> scale, zp

  // ---- one lowered step ----

  void emit(const LoweredStep& s, Int8Form form) {
    const Node& anchor = graph_.nodes[s.nodes.front()];
    const json& attrs = info_.attrs[s.nodes.front()];
    const bool relu = s.find(graph_, "Relu") >= 0;
    std::vector<std::string> in;
    switch (form) {
      case Int8Form::kStatic: {
        for (const std::string& v : anchor.inputs) in.push_back(quantized_input(v));
        std::string y = anchor.op == "Conv" || anchor.op == "Gemm" ? static_affine(s, in[0])
                                                                   : float_node(anchor, attrs, in);
        if (relu) y = g_.op("Relu", {y}, anchor.name);
        set(s.output, qdq(y, s.output), true);
        return;
      }
      case Int8Form::kDynamic: {
        std::string y = dynamic_linear(s, values_.at(anchor.inputs[0]));
        if (relu) y = g_.op("Relu", {y}, anchor.name);
        set(s.output, y, false);
        return;
      }
      case Int8Form::kPassthrough: {
        const std::string& x = anchor.inputs[0];
        if (anchor.op == "Dropout" || anchor.op == "Identity") {
          set(s.output, values_.at(x), quantized_.count(x) != 0);  // identities at inference
          return;
        }
        // In the int8 domain the result keeps its input's qparams: QDQ again with them, so
        // that ONNX Runtime runs the op between the two quantized tensors.
        const std::string y = float_node(anchor, attrs, {values_.at(x)});
        const bool quant = quantized_.count(x) != 0;
        set(s.output, quant ? qdq(y, keys_.at(s.output)) : y, quant);
        return;
      }
      case Int8Form::kNone:
        break;
    }
    // Float: every node of the step on its own (a float input reads the dequantized tensor).
    for (size_t index : s.nodes) {
      const Node& node = graph_.nodes[index];
      in.clear();
      for (const std::string& v : node.inputs) in.push_back(values_.at(v));
      set(node.outputs.at(0), float_node(node, info_.attrs[index], in), false);
    }
  }

  void set(const std::string& value, std::string name, bool quantized) {
    values_[value] = std::move(name);
    if (quantized) quantized_.insert(value);
  }

  // A value in the int8 domain: itself, or its QDQ with its calibration key's qparams, as the
  // runtime's "quantize" step does before an int8 kernel.
  std::string quantized_input(const std::string& value) {
    if (quantized_.count(value) != 0) return values_.at(value);
    auto it = qdq_inputs_.find(value);
    if (it == qdq_inputs_.end()) {
      it = qdq_inputs_.emplace(value, qdq(values_.at(value), keys_.at(value))).first;
    }
    return it->second;
  }

  const std::string* param(const Node& node, const std::string& role) const {
    const auto n = params_.find(node.name);
    if (n == params_.end()) return nullptr;
    const auto r = n->second.find(role);
    return r == n->second.end() ? nullptr : &r->second;
  }

  // The int8 weight of a Conv/Gemm step and its (folded) bias, as the runtime's kernel packs
  // them: the stored codes unless a batchnorm was folded in.
  struct KernelWeights {
    std::string name;  // the weight tensor's
    Int8Weight q;
    at::Tensor bias;
  };
  KernelWeights kernel_weights(const LoweredStep& s) const {
    Int8StepWeights w = int8_step_weights(m_, info_, s);
    return {std::move(w.name), onnx_int8_weight(w.qweight), std::move(w.bias)};
  }

  std::string bias_name(const Node& anchor) const {
    const std::string* bias = param(anchor, "bias");
    return bias ? *bias : anchor.name + ".bias";
  }

  // An int8-static Conv or Gemm: int8 weight (per channel on axis 0) and int32 bias through
  // DequantizeLinear, the input quantized with its qparams.
  std::string static_affine(const LoweredStep& s, const std::string& x) {
    const Node& anchor = graph_.nodes[s.nodes.front()];
    const KernelWeights w = kernel_weights(s);
    const double in_scale = qparams(keys_.at(anchor.inputs[0])).scale;
    const std::vector<std::string> in = {x, dequantize_weight(w.name, w.q),
                                         int32_bias(bias_name(anchor), w.bias, in_scale, w.q)};
    return anchor.op == "Conv"
               ? g_.op("Conv", in, anchor.name, conv_attrs(info_.attrs[s.nodes.front()]))
               : gemm(in, anchor.name);
  }

  // ONNX Runtime's dynamic quantization form: the activation quantized per run to uint8
  // (DynamicQuantizeLinear), an integer MatMul with the transposed int8 weight, then the
  // float scale a_scale·w_scale and the bias.
  std::string dynamic_linear(const LoweredStep& s, const std::string& x) {
    const Node& anchor = graph_.nodes[s.nodes.front()];
    const KernelWeights kw = kernel_weights(s);
    const std::string& name = kw.name;
    const Int8Weight& q = kw.q;
    const auto xq = g_.node("DynamicQuantizeLinear", {x}, anchor.name, {}, 3);
    std::vector<std::string> in = {
        xq[0], g_.initializer(name + "_int8_t", q.codes.t().contiguous()), xq[2]};
    if (q.zero_point.ne(0).any().item<bool>()) {
      in.push_back(g_.initializer(name + "_zero_point", q.zero_point));
    }
    const auto acc = g_.op("MatMulInteger", in, anchor.name);
    const auto as_float =
        g_.op("Cast", {acc}, anchor.name, {OnnxAttr::Int("to", onnx::TensorProto::FLOAT)});
    const auto scale = g_.op("Mul", {xq[1], g_.initializer(name + "_scale", q.scale)}, anchor.name);
    auto y = g_.op("Mul", {as_float, scale}, anchor.name);
    if (param(anchor, "bias") != nullptr || s.find(graph_, "BatchNormalization") >= 0) {
      y = g_.op("Add", {y, g_.initializer(bias_name(anchor), kw.bias)}, anchor.name);
    }
    return y;
  }

  // ---- float nodes: one row per op ----

  std::string float_node(const Node& node, const json& attrs, std::vector<std::string> in) {
    static const std::map<std::string, Emit> kRows = {
        {"Conv", &Exporter::conv_node},
        {"Gemm", &Exporter::gemm_node},
        {"MatMul", &Exporter::same_op},
        {"Add", &Exporter::same_op},
        {"Mul", &Exporter::same_op},
        {"Concat", &Exporter::concat_node},
        {"Relu", &Exporter::same_op},
        {"Clip", &Exporter::clip_node},
        {"HardSwish", &Exporter::hard_swish_node},
        {"HardSigmoid", &Exporter::hard_sigmoid_node},
        {"Sigmoid", &Exporter::same_op},
        {"Tanh", &Exporter::same_op},
        {"SiLU", &Exporter::silu_node},
        {"BatchNormalization", &Exporter::batchnorm_node},
        {"MaxPool", &Exporter::max_pool_node},
        {"AveragePool", &Exporter::average_pool_node},
        {"GlobalAveragePool", &Exporter::same_op},
        {"AdaptiveAveragePool", &Exporter::adaptive_pool_node},
        {"Flatten", &Exporter::flatten_node},
        {"Reshape", &Exporter::reshape_node},
        {"Dropout", &Exporter::identity_node},
        {"Identity", &Exporter::identity_node},
    };
    const auto row = kRows.find(node.op);
    MCOMPRESS_CHECK(row != kRows.end(), ModelError, "ONNX export: node '", node.name, "' (",
                    node.op, "): no ONNX mapping");
    return (this->*(row->second))(node, attrs, std::move(in));
  }

  std::string same_op(const Node& node, const json&, std::vector<std::string> in) {
    return g_.op(node.op, in, node.name);
  }
  std::string identity_node(const Node&, const json&, std::vector<std::string> in) {
    return in.at(0);
  }

  std::vector<OnnxAttr> window(const json& attrs, bool dilations) const {
    std::vector<OnnxAttr> out = {OnnxAttr::Ints("kernel_shape", ints(attrs, "kernel_shape"))};
    for (const char* name : {"strides", "pads"}) {
      if (!ints(attrs, name).empty()) out.push_back(OnnxAttr::Ints(name, ints(attrs, name)));
    }
    if (dilations && !ints(attrs, "dilations").empty()) {
      out.push_back(OnnxAttr::Ints("dilations", ints(attrs, "dilations")));
    }
    return out;
  }

  std::vector<OnnxAttr> conv_attrs(const json& attrs) const {
    std::vector<OnnxAttr> out = window(attrs, true);
    out.push_back(OnnxAttr::Int("group", attrs.at("group").get<int64_t>()));
    return out;
  }

  std::string conv_node(const Node& node, const json& attrs, std::vector<std::string> in) {
    in.push_back(tensor(*param(node, "weight")));
    if (const std::string* b = param(node, "bias")) in.push_back(tensor(*b));
    return g_.op("Conv", in, node.name, conv_attrs(attrs));
  }

  std::string gemm(const std::vector<std::string>& in, const std::string& hint) {
    return g_.op("Gemm", in, hint, {OnnxAttr::Int("transB", 1)});
  }

  std::string gemm_node(const Node& node, const json&, std::vector<std::string> in) {
    MCOMPRESS_CHECK(info_.values.at(node.inputs[0]).shape.size() == 2, ModelError,
                    "ONNX export: node '", node.name, "' (Gemm): input of rank ",
                    info_.values.at(node.inputs[0]).shape.size(), ", ONNX Gemm takes rank 2");
    in.push_back(tensor(*param(node, "weight")));
    if (const std::string* b = param(node, "bias")) in.push_back(tensor(*b));
    return gemm(in, node.name);
  }

  std::string concat_node(const Node& node, const json& attrs, std::vector<std::string> in) {
    return g_.op("Concat", in, node.name, {OnnxAttr::Int("axis", attrs.at("axis").get<int64_t>())});
  }

  // Opset 13 Clip takes its bounds as inputs; an absent bound is an empty name.
  std::string clip_node(const Node& node, const json& attrs, std::vector<std::string> in) {
    for (const char* bound : {"min", "max"}) {
      in.push_back(
          attrs.contains(bound) && !attrs.at(bound).is_null()
              ? g_.initializer(node.name + "_" + bound,
                               at::scalar_tensor(attrs.at(bound).get<double>(), at::kFloat))
              : "");
    }
    while (in.back().empty()) in.pop_back();
    return g_.op("Clip", in, node.name);
  }

  std::string hard_sigmoid(const std::string& x, double alpha, double beta,
                           const std::string& hint) {
    return g_.op("HardSigmoid", {x}, hint,
                 {OnnxAttr::Float("alpha", static_cast<float>(alpha)),
                  OnnxAttr::Float("beta", static_cast<float>(beta))});
  }
  std::string hard_sigmoid_node(const Node& node, const json& attrs, std::vector<std::string> in) {
    return hard_sigmoid(in[0], attrs.at("alpha").get<double>(), attrs.at("beta").get<double>(),
                        node.name);
  }
  // HardSwish is opset 14: x * HardSigmoid(x; 1/6, 1/2).
  std::string hard_swish_node(const Node& node, const json&, std::vector<std::string> in) {
    return g_.op("Mul", {in[0], hard_sigmoid(in[0], 1.0 / 6.0, 0.5, node.name)}, node.name);
  }
  std::string silu_node(const Node& node, const json&, std::vector<std::string> in) {
    return g_.op("Mul", {in[0], g_.op("Sigmoid", {in[0]}, node.name)}, node.name);
  }

  std::string batchnorm_node(const Node& node, const json& attrs, std::vector<std::string> in) {
    for (const char* role : {"weight", "bias", "running_mean", "running_var"}) {
      in.push_back(tensor(*param(node, role)));
    }
    return g_.op(
        "BatchNormalization", in, node.name,
        {OnnxAttr::Float("epsilon", static_cast<float>(attrs.at("epsilon").get<double>()))});
  }

  std::string max_pool_node(const Node& node, const json& attrs, std::vector<std::string> in) {
    auto a = window(attrs, true);
    a.push_back(OnnxAttr::Int("ceil_mode", attrs.at("ceil_mode").get<int64_t>()));
    return g_.op("MaxPool", in, node.name, a);
  }

  std::string average_pool_node(const Node& node, const json& attrs, std::vector<std::string> in) {
    auto a = window(attrs, false);
    a.push_back(OnnxAttr::Int("ceil_mode", attrs.at("ceil_mode").get<int64_t>()));
    a.push_back(OnnxAttr::Int("count_include_pad", attrs.at("count_include_pad").get<int64_t>()));
    return g_.op("AveragePool", in, node.name, a);
  }

  std::string flatten_node(const Node& node, const json& attrs, std::vector<std::string> in) {
    return g_.op("Flatten", in, node.name,
                 {OnnxAttr::Int("axis", attrs.at("axis").get<int64_t>())});
  }

  std::string reshape_node(const Node& node, const json& attrs, std::vector<std::string> in) {
    in.push_back(g_.initializer(node.name + "_shape", at::tensor(ints(attrs, "shape"), at::kLong)));
    return g_.op("Reshape", in, node.name);
  }

  // PyTorch's adaptive average pooling: window i covers [⌊i·H/o⌋, ⌈(i+1)·H/o⌉). Equal windows
  // are an AveragePool; unequal ones a matrix product with the window averages.
  std::string adaptive_pool_node(const Node& node, const json& attrs, std::vector<std::string> in) {
    const SymShape& shape = info_.values.at(node.inputs[0]).shape;
    MCOMPRESS_CHECK(shape.size() == 4 && shape[1].known() && shape[2].known() && shape[3].known(),
                    ModelError, "ONNX export: node '", node.name,
                    "' (AdaptiveAveragePool): needs a known [N, C, H, W] input, got ",
                    to_string(shape));
    const int64_t c = shape[1].value, h = shape[2].value, w = shape[3].value;
    const std::vector<int64_t> out = ints(attrs, "output_size");
    const int64_t oh = out.at(0), ow = out.size() > 1 ? out[1] : out[0];
    const std::string& x = in[0];
    if (oh == 1 && ow == 1) return g_.op("GlobalAveragePool", {x}, node.name);
    if (h % oh == 0 && w % ow == 0) {
      return g_.op("AveragePool", {x}, node.name,
                   {OnnxAttr::Ints("kernel_shape", {h / oh, w / ow}),
                    OnnxAttr::Ints("strides", {h / oh, w / ow})});
    }
    auto pool = at::zeros({h * w, oh * ow}, at::kFloat);
    auto acc = pool.accessor<float, 2>();
    for (int64_t i = 0; i < oh; ++i) {
      const int64_t h0 = i * h / oh, h1 = ((i + 1) * h + oh - 1) / oh;
      for (int64_t j = 0; j < ow; ++j) {
        const int64_t w0 = j * w / ow, w1 = ((j + 1) * w + ow - 1) / ow;
        const float weight = 1.0f / static_cast<float>((h1 - h0) * (w1 - w0));
        for (int64_t y = h0; y < h1; ++y)
          for (int64_t z = w0; z < w1; ++z) acc[y * w + z][i * ow + j] = weight;
      }
    }
    const std::string& hint = node.name;
    const auto flat = g_.op(
        "Reshape", {x, g_.initializer(hint + "_flat", at::tensor({int64_t{0}, c, h * w}))}, hint);
    const auto pooled = g_.op("MatMul", {flat, g_.initializer(hint + "_windows", pool)}, hint);
    return g_.op("Reshape",
                 {pooled, g_.initializer(hint + "_shape", at::tensor({int64_t{0}, c, oh, ow}))},
                 hint);
  }

  // ---- tensors and qparams ----

  const ActivationQParams& qparams(const std::string& key) const {
    const auto* q = find_qparams(m_, key);
    MCOMPRESS_CHECK(q != nullptr, ModelError, "ONNX export: no activation qparams for '", key, "'");
    return *q;
  }

  // (x − mean) / std with the preprocessing's per-channel (or single) values; nothing for 0
  // and 1.
  std::string normalize(const std::string& x) {
    const Preprocess& p = graph_.preprocess;
    std::string cur = x;
    if (p.kind != Preprocess::Kind::kNormalize) return cur;
    const size_t rank = graph_.inputs[0].shape.size();
    auto constant = [&](const std::vector<double>& v, double identity, const std::string& name,
                        const std::string& op) {
      if (std::all_of(v.begin(), v.end(), [&](double d) { return d == identity; })) return;
      auto t = at::tensor(v, at::kDouble).to(at::kFloat);
      if (v.size() > 1 && rank > 2) {
        std::vector<int64_t> shape(rank - 1, 1);
        shape[0] = -1;
        t = t.reshape(shape);
      }
      cur = g_.op(op, {cur, g_.initializer(name, t)}, "normalize");
    };
    constant(p.mean, 0.0, "input_mean", "Sub");
    constant(p.std, 1.0, "input_std", "Div");
    return cur;
  }

  // The float value of a model tensor: an fp32 initializer, a float16/bfloat16 one Cast to
  // float, or int8 codes through DequantizeLinear. Codebook tensors are dense (the fp32
  // master holds codebook[codes]).
  std::string tensor(const std::string& name) {
    auto cached = tensors_.find(name);
    if (cached != tensors_.end()) return cached->second;
    std::string v;
    auto it = m_.quant.tensors.find(name);
    const QuantizedTensor* q = it == m_.quant.tensors.end() ? nullptr : &it->second;
    if (q != nullptr && (q->encoding == Encoding::kFp16 || q->encoding == Encoding::kBf16)) {
      const auto want = q->encoding == Encoding::kFp16 ? at::kHalf : at::kBFloat16;
      MCOMPRESS_CHECK(q->values.defined() && q->values.scalar_type() == want &&
                          q->values.sizes() == m_.tensor(name).sizes(),
                      ModelError, "ONNX export: tensor '", name, "' is ", to_string(q->encoding),
                      "-encoded but its stored values are not");
      v = g_.op("Cast", {g_.initializer(name, q->values)}, name,
                {OnnxAttr::Int("to", onnx::TensorProto::FLOAT)});
    } else if (q != nullptr && q->encoding == Encoding::kInt8) {
      v = dequantize_weight(
          name, onnx_int8_weight(int8_kernel_weight(name, m_.tensor(name), q, q->axis >= 0)));
    } else {
      v = g_.initializer(name, m_.tensor(name));
    }
    tensors_[name] = v;
    return v;
  }

  std::string dequantize_weight(const std::string& name, const Int8Weight& w) {
    std::vector<OnnxAttr> attrs;
    if (w.per_channel) attrs.push_back(OnnxAttr::Int("axis", 0));
    return g_.op("DequantizeLinear",
                 {g_.initializer(name + "_int8", w.codes), g_.initializer(name + "_scale", w.scale),
                  g_.initializer(name + "_zero_point", w.zero_point)},
                 name, attrs);
  }

  // int32 bias with scale input_scale · weight_scale (zero point 0), the form QLinearConv and
  // QGemm take; saturates rather than wraps for a bias beyond the int32 range.
  std::string int32_bias(const std::string& name, const at::Tensor& bias, double input_scale,
                         const Int8Weight& w) {
    const auto scale = (w.scale.to(at::kDouble) * input_scale).to(at::kFloat);
    const auto q =
        (bias.to(at::kDouble) / scale.to(at::kDouble))
            .round()
            .clamp(std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max())
            .to(at::kInt);
    std::vector<OnnxAttr> attrs;
    if (w.per_channel) attrs.push_back(OnnxAttr::Int("axis", 0));
    return g_.op("DequantizeLinear",
                 {g_.initializer(name + "_int32", q), g_.initializer(name + "_scale", scale),
                  g_.initializer(name + "_zero_point", at::zeros(scale.sizes(), at::kInt))},
                 name, attrs);
  }

  // QuantizeLinear → DequantizeLinear with the uint8 qparams of activation `key`.
  std::string qdq(const std::string& x, const std::string& key) {
    auto it = qparams_.find(key);
    if (it == qparams_.end()) {
      const auto& q = qparams(key);
      MCOMPRESS_CHECK(q.zero_point >= 0 && q.zero_point <= 255 && q.scale > 0, ModelError,
                      "ONNX export: activation '", key, "' has qparams outside uint8 (scale ",
                      q.scale, ", zero point ", q.zero_point, ")");
      const std::string s = g_.initializer("act_" + key + "_scale",
                                           at::scalar_tensor(q.scale, at::kDouble).to(at::kFloat));
      const std::string z = g_.initializer(
          "act_" + key + "_zero_point", at::scalar_tensor(q.zero_point, at::kLong).to(at::kByte));
      it = qparams_.emplace(key, std::make_pair(s, z)).first;
    }
    const auto& [s, z] = it->second;
    const std::string hint = "act_" + key;
    return g_.op("DequantizeLinear", {g_.op("QuantizeLinear", {x, s, z}, hint), s, z}, hint);
  }
};

std::string weight_form(const Model& m) {
  const std::string& mode = m.quant.mode;
  if (mode.empty()) return "fp32";
  if (mode == "fp16" || mode == "bf16") return mode + " initializers, Cast to float";
  if (mode == "int8-static") return "int8 QDQ (weights and activations)";
  if (mode == "int8-dynamic") return "int8 weights, dynamic activation quantization";
  if (mode == "codebook") return "fp32 (codebook expanded)";
  return mode;
}

void check(const onnx::ModelProto& model) {
  try {
    onnx::checker::check_model(model);
    // Strict shape inference also catches type mismatches the checker leaves to runtimes.
    onnx::ModelProto copy = model;
    onnx::shape_inference::InferShapes(copy, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(true, 1));
  } catch (const std::exception& e) {
    throw FormatError(std::string("ONNX export: the checker rejects the graph: ") + e.what());
  }
}

}  // namespace

std::string onnx_model_bytes(const Model& model, const OnnxOptions& options, OnnxExportInfo* info) {
  MCOMPRESS_CHECK(!options.input_name.empty() && !options.output_name.empty() &&
                      options.input_name != options.output_name,
                  ConfigError, "ONNX export: input and output names must differ and be non-empty");
  onnx::ModelProto proto;
  proto.set_ir_version(onnx::IR_VERSION);
  proto.set_producer_name("mcompress");
  proto.set_producer_version(version());
  proto.add_opset_import()->set_version(kOpset);
  auto* graph = proto.mutable_graph();
  graph->set_name(model.name().empty() ? "model" : model.name());
  graph->set_doc_string("exported by mcompress; weights: " + weight_form(model));
  auto meta = [&](const std::string& key, const std::string& value) {
    auto* p = proto.add_metadata_props();
    p->set_key(key);
    p->set_value(value);
  };
  meta(model.is_sequential() ? "mcompress.spec" : "mcompress.graph", model.architecture_json());
  meta("mcompress.quant_mode", model.quant.mode.empty() ? "fp32" : model.quant.mode);

  at::NoGradGuard no_grad;
  Exporter(model, graph).run(options);
  if (options.check) check(proto);

  std::string bytes;
  MCOMPRESS_CHECK(proto.SerializeToString(&bytes), FormatError,
                  "ONNX export: serializing the model failed (over 2 GiB?)");
  if (info != nullptr) {
    *info = {};
    info->opset = kOpset;
    info->nodes = graph->node_size();
    info->initializers = graph->initializer_size();
    info->bytes = static_cast<int64_t>(bytes.size());
    for (const auto& n : graph->node()) ++info->op_counts[n.op_type()];
    info->weight_form = weight_form(model);
  }
  return bytes;
}

OnnxExportInfo export_onnx(const Model& model, const std::string& path,
                           const OnnxOptions& options) {
  OnnxExportInfo info;
  const std::string bytes = onnx_model_bytes(model, options, &info);
  write_file_atomically(path, bytes);
  return info;
}

}  // namespace mcompress::interop
