#include "mcompress/interop/onnx.h"

#include <ATen/ATen.h>
#include <onnx/checker.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "mcompress/core/atomic_file.h"
#include "mcompress/core/error.h"
#include "mcompress/core/version.h"
#include "onnx_graph.h"
#include "onnx_weights.h"

namespace mcompress::interop {
namespace {

constexpr int64_t kOpset = 13;
// The batchnorms inside a residual block use PyTorch's default eps (core/src/network.cpp).
constexpr double kResidualBnEps = 1e-5;

bool is_batchnorm(LayerType t) {
  return t == LayerType::kBatchNorm1d || t == LayerType::kBatchNorm2d;
}

std::vector<OnnxAttr> conv_attrs(int64_t kernel, int64_t stride, int64_t padding, int64_t groups) {
  return {OnnxAttr::Ints("kernel_shape", {kernel, kernel}),
          OnnxAttr::Ints("strides", {stride, stride}),
          OnnxAttr::Ints("pads", {padding, padding, padding, padding}),
          OnnxAttr::Ints("dilations", {1, 1}), OnnxAttr::Int("group", groups)};
}

struct ConvGeometry {
  int64_t kernel = 1, stride = 1, padding = 0, groups = 1;
};

// Emits the graph of one model, layer group by layer group, as runtime::Executor plans it
// with the int8 kernel policy: conv/linear [+ batchnorm] [+ relu] units, batchnorm [+ relu],
// residual blocks, and the pools, relu and flatten that run in whichever domain flows in.
class Exporter {
 public:
  Exporter(const Model& model, onnx::GraphProto* graph)
      : m_(model), spec_(model.spec()), g_(graph), shapes_(spec_.infer_shapes()) {}

  void run(const OnnxOptions& o) {
    g_.input(o.input_name, onnx::TensorProto::FLOAT, spec_.input_shape, "batch");
    cur_ = normalize(o.input_name);
    const auto& layers = spec_.layers;
    for (size_t i = 0; i < layers.size(); ++i) i = emit_unit(i);
    // A final Identity gives the output its fixed name whatever produced it.
    g_.named("Identity", {cur_}, o.output_name);
    g_.output(o.output_name, onnx::TensorProto::FLOAT, {spec_.num_classes}, "batch");
  }

 private:
  const Model& m_;
  const ArchSpec spec_;
  OnnxGraph g_;
  std::vector<std::vector<int64_t>> shapes_;
  std::map<std::string, std::string> values_;  // model tensor -> its float value in the graph
  std::map<std::string, std::pair<std::string, std::string>> qparams_;  // key -> scale, zp
  std::string cur_;                                                     // current activation
  std::string key_ = "input";  // the activation key whose qparams cur_ carries when quantized_
  bool quantized_ = false;     // cur_ is the DequantizeLinear of a QuantizeLinear (int8 domain)

  bool static_int8() const { return m_.quant.mode == "int8-static"; }
  bool dynamic_int8() const { return m_.quant.mode == "int8-dynamic"; }

  const ActivationQParams& qparams(const std::string& key) const {
    const auto* q = m_.quant.find_activation(key);
    MCOMPRESS_CHECK(q != nullptr, ModelError, "ONNX export: no activation qparams for '", key, "'");
    return *q;
  }

  // (x − mean) / std with the spec's per-channel (or single) values; nothing for 0 and 1.
  std::string normalize(const std::string& x) {
    auto constant = [&](const std::vector<double>& v, double identity, const std::string& name,
                        const std::string& op) {
      if (std::all_of(v.begin(), v.end(), [&](double d) { return d == identity; })) return;
      auto t = at::tensor(v, at::kDouble).to(at::kFloat);
      if (v.size() > 1 && spec_.input_shape.size() == 3) t = t.reshape({-1, 1, 1});
      cur_ = g_.op(op, {cur_, g_.initializer(name, t)}, "normalize");
    };
    cur_ = x;
    constant(spec_.mean, 0.0, "input_mean", "Sub");
    constant(spec_.std, 1.0, "input_std", "Div");
    return cur_;
  }

  // The float value of a model tensor: an fp32 initializer, a float16/bfloat16 one Cast to
  // float, or int8 codes through DequantizeLinear. Codebook tensors are dense (the fp32
  // master holds codebook[codes]).
  std::string value(const std::string& name) {
    auto cached = values_.find(name);
    if (cached != values_.end()) return cached->second;
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
      v = dequantize_weight(name, kernel_weight(name, m_.tensor(name), q, q->axis >= 0));
    } else {
      v = g_.initializer(name, m_.tensor(name));
    }
    values_[name] = v;
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

  // The current activation in the int8 domain: quantized with the qparams of its key, as the
  // runtime's "quantize" step does before the first int8 kernel.
  std::string quantized_input() {
    if (!quantized_) {
      cur_ = qdq(cur_, key_);
      quantized_ = true;
    }
    return cur_;
  }

  // After an op that runs in either domain (pools, relu, flatten): keeps the qparams.
  void requantize_passthrough() {
    if (quantized_) cur_ = qdq(cur_, key_);
  }

  std::string conv(const std::string& x, const std::string& w, const std::string& b,
                   const ConvGeometry& c, const std::string& hint) {
    std::vector<std::string> in{x, w};
    if (!b.empty()) in.push_back(b);
    return g_.op("Conv", in, hint, conv_attrs(c.kernel, c.stride, c.padding, c.groups));
  }

  std::string gemm(const std::string& x, const std::string& w, const std::string& b,
                   const std::string& hint) {
    std::vector<std::string> in{x, w};
    if (!b.empty()) in.push_back(b);
    return g_.op("Gemm", in, hint, {OnnxAttr::Int("transB", 1)});
  }

  std::string batchnorm(const std::string& x, const std::string& p, double eps,
                        const std::string& hint) {
    return g_.op("BatchNormalization",
                 {x, value(p + "weight"), value(p + "bias"), value(p + "running_mean"),
                  value(p + "running_var")},
                 hint, {OnnxAttr::Float("epsilon", static_cast<float>(eps))});
  }

  std::string relu(const std::string& x, const std::string& hint) {
    return g_.op("Relu", {x}, hint);
  }

  // Emits the unit starting at layer `i`; returns the index of its last layer.
  size_t emit_unit(size_t i) {
    const auto& layers = spec_.layers;
    const LayerSpec& l = layers[i];
    const std::string hint = "layer" + std::to_string(i);
    switch (l.type) {
      case LayerType::kLinear:
      case LayerType::kConv2d:
        return emit_affine(i);
      case LayerType::kBatchNorm1d:
      case LayerType::kBatchNorm2d: {
        const bool with_relu = i + 1 < layers.size() && layers[i + 1].type == LayerType::kReLU;
        quantized_ = false;  // a float kernel: its input is the dequantized tensor
        cur_ = batchnorm(cur_, std::to_string(i) + ".", l.eps, hint);
        if (with_relu) cur_ = relu(cur_, hint);
        key_ = std::to_string(i + (with_relu ? 1 : 0));
        return i + (with_relu ? 1 : 0);
      }
      case LayerType::kReLU:
        cur_ = relu(cur_, hint);
        requantize_passthrough();
        return i;
      case LayerType::kMaxPool2d:
      case LayerType::kAvgPool2d: {
        const int64_t stride = l.stride == 0 ? l.kernel_size : l.stride;
        std::vector<OnnxAttr> attrs = {
            OnnxAttr::Ints("kernel_shape", {l.kernel_size, l.kernel_size}),
            OnnxAttr::Ints("strides", {stride, stride}),
            OnnxAttr::Ints("pads", {l.padding, l.padding, l.padding, l.padding})};
        // PyTorch averages over the padded window (count_include_pad=True); ONNX's default
        // divides by the unpadded count.
        if (l.type == LayerType::kAvgPool2d) attrs.push_back(OnnxAttr::Int("count_include_pad", 1));
        cur_ =
            g_.op(l.type == LayerType::kMaxPool2d ? "MaxPool" : "AveragePool", {cur_}, hint, attrs);
        requantize_passthrough();
        return i;
      }
      case LayerType::kAdaptiveAvgPool2d:
        cur_ = adaptive_avg_pool(cur_, i == 0 ? spec_.input_shape : shapes_[i - 1], l.output_size,
                                 hint);
        requantize_passthrough();
        return i;
      case LayerType::kFlatten:
        cur_ = g_.op("Flatten", {cur_}, hint, {OnnxAttr::Int("axis", 1)});
        requantize_passthrough();
        return i;
      case LayerType::kDropout:
        return i;  // identity at inference
      case LayerType::kResidual:
        emit_residual(i);
        return i;
    }
    throw ModelError("ONNX export: no mapping for layer " + std::to_string(i) + " (" +
                     to_string(l.type) + ")");
  }

  // PyTorch's adaptive average pooling: window i covers [⌊i·H/o⌋, ⌈(i+1)·H/o⌉). Equal windows
  // are an AveragePool; unequal ones a matrix product with the window averages.
  std::string adaptive_avg_pool(const std::string& x, const std::vector<int64_t>& in, int64_t out,
                                const std::string& hint) {
    const int64_t c = in[0], h = in[1], w = in[2];
    if (out == 1) return g_.op("GlobalAveragePool", {x}, hint);
    if (h % out == 0 && w % out == 0) {
      return g_.op("AveragePool", {x}, hint,
                   {OnnxAttr::Ints("kernel_shape", {h / out, w / out}),
                    OnnxAttr::Ints("strides", {h / out, w / out})});
    }
    auto pool = at::zeros({h * w, out * out}, at::kFloat);
    auto acc = pool.accessor<float, 2>();
    for (int64_t i = 0; i < out; ++i) {
      const int64_t h0 = i * h / out, h1 = ((i + 1) * h + out - 1) / out;
      for (int64_t j = 0; j < out; ++j) {
        const int64_t w0 = j * w / out, w1 = ((j + 1) * w + out - 1) / out;
        const float weight = 1.0f / static_cast<float>((h1 - h0) * (w1 - w0));
        for (int64_t y = h0; y < h1; ++y)
          for (int64_t z = w0; z < w1; ++z) acc[y * w + z][i * out + j] = weight;
      }
    }
    const auto flat = g_.op(
        "Reshape", {x, g_.initializer(hint + "_flat", at::tensor({int64_t{0}, c, h * w}))}, hint);
    const auto pooled = g_.op("MatMul", {flat, g_.initializer(hint + "_windows", pool)}, hint);
    return g_.op("Reshape",
                 {pooled, g_.initializer(hint + "_shape", at::tensor({int64_t{0}, c, out, out}))},
                 hint);
  }

  // conv/linear [+ batchnorm] [+ relu], in the form the runtime runs it: int8-static,
  // int8-dynamic (Linear only) or float.
  size_t emit_affine(size_t i) {
    const auto& layers = spec_.layers;
    const LayerSpec& l = layers[i];
    const bool is_conv = l.type == LayerType::kConv2d;
    const std::string p = std::to_string(i) + ".";
    const std::string hint = "layer" + std::to_string(i);
    size_t last = i;
    const bool with_bn = last + 1 < layers.size() && is_batchnorm(layers[last + 1].type);
    if (with_bn) ++last;
    const bool with_relu = last + 1 < layers.size() && layers[last + 1].type == LayerType::kReLU;
    if (with_relu) ++last;
    const std::string out_key = std::to_string(last);
    const ConvGeometry geometry{l.kernel_size, l.stride, l.padding, l.groups};

    const QuantizedTensor* stored = m_.quant.find_int8(p + "weight");
    const bool as_static = stored != nullptr && static_int8() && m_.quant.find_activation(key_) &&
                           m_.quant.find_activation(out_key);
    const bool as_dynamic = stored != nullptr && dynamic_int8() && !is_conv;
    if (as_static || as_dynamic) {
      const int64_t out = is_conv ? l.out_channels : l.out_features;
      Affine w{m_.tensor(p + "weight"),
               l.bias ? m_.tensor(p + "bias") : at::zeros({out}, at::kFloat)};
      if (with_bn) w = fold_batchnorm(w, m_, std::to_string(i + 1) + ".", layers[i + 1].eps);
      const auto q =
          kernel_weight(p + "weight", w.weight, with_bn ? nullptr : stored, stored->axis >= 0);
      if (as_static) {
        const double in_scale = qparams(key_).scale;
        const auto x = quantized_input();
        const auto wq = dequantize_weight(p + "weight", q);
        const auto b = int32_bias(p + "bias", w.bias, in_scale, q);
        cur_ = is_conv ? conv(x, wq, b, geometry, hint) : gemm(x, wq, b, hint);
        if (with_relu) cur_ = relu(cur_, hint);
        cur_ = qdq(cur_, out_key);
        quantized_ = true;
      } else {
        cur_ = dynamic_linear(cur_, p, q, w.bias, l.bias || with_bn, hint);
        if (with_relu) cur_ = relu(cur_, hint);
      }
      key_ = out_key;
      return last;
    }
    quantized_ = false;  // a float kernel: its input is the dequantized tensor
    const std::string b = l.bias ? value(p + "bias") : "";
    cur_ = is_conv ? conv(cur_, value(p + "weight"), b, geometry, hint)
                   : gemm(cur_, value(p + "weight"), b, hint);
    if (with_bn) cur_ = batchnorm(cur_, std::to_string(i + 1) + ".", layers[i + 1].eps, hint);
    if (with_relu) cur_ = relu(cur_, hint);
    key_ = out_key;
    return last;
  }

  // ONNX Runtime's dynamic quantization form: the activation quantized per run to uint8
  // (DynamicQuantizeLinear), an integer MatMul with the transposed int8 weight, then the
  // float scale a_scale·w_scale and the bias.
  std::string dynamic_linear(const std::string& x, const std::string& p, const Int8Weight& q,
                             const at::Tensor& bias, bool has_bias, const std::string& hint) {
    const auto xq = g_.node("DynamicQuantizeLinear", {x}, hint, {}, 3);
    std::vector<std::string> in = {
        xq[0], g_.initializer(p + "weight_int8_t", q.codes.t().contiguous()), xq[2]};
    if (q.zero_point.ne(0).any().item<bool>()) {
      in.push_back(g_.initializer(p + "weight_zero_point", q.zero_point));
    }
    const auto acc = g_.op("MatMulInteger", in, hint);
    const auto as_float =
        g_.op("Cast", {acc}, hint, {OnnxAttr::Int("to", onnx::TensorProto::FLOAT)});
    const auto scale = g_.op("Mul", {xq[1], g_.initializer(p + "weight_scale", q.scale)}, hint);
    auto y = g_.op("Mul", {as_float, scale}, hint);
    if (has_bias) y = g_.op("Add", {y, g_.initializer(p + "bias", bias)}, hint);
    return y;
  }

  // relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), shortcut = bn(conv1x1(x)) or x.
  void emit_residual(size_t i) {
    const LayerSpec& l = spec_.layers[i];
    const std::string k = std::to_string(i);
    const std::string p = k + ".";
    const std::string hint = "layer" + k;
    const ConvGeometry g1{3, l.stride, 1, 1}, g2{3, 1, 1, 1}, gs{1, l.stride, 0, 1};
    bool as_int8 = static_int8() && m_.quant.find_int8(p + "conv1.weight") != nullptr;
    for (const auto& key : {key_, k, k + ".conv1", k + ".conv2"})
      as_int8 = as_int8 && m_.quant.find_activation(key) != nullptr;
    if (l.projection) as_int8 = as_int8 && m_.quant.find_activation(k + ".shortcut") != nullptr;

    if (!as_int8) {
      quantized_ = false;
      const std::string x = cur_;
      auto y = conv(x, value(p + "conv1.weight"), "", g1, hint + ".conv1");
      y = relu(batchnorm(y, p + "bn1.", kResidualBnEps, hint + ".bn1"), hint + ".conv1");
      y = conv(y, value(p + "conv2.weight"), "", g2, hint + ".conv2");
      y = batchnorm(y, p + "bn2.", kResidualBnEps, hint + ".bn2");
      std::string s = x;
      if (l.projection) {
        s = conv(x, value(p + "shortcut.0.weight"), "", gs, hint + ".shortcut");
        s = batchnorm(s, p + "shortcut.1.", kResidualBnEps, hint + ".shortcut");
      }
      cur_ = relu(g_.op("Add", {y, s}, hint), hint);
      key_ = k;
      return;
    }
    // int8: every conv with its batchnorm folded and requantized (symmetric per channel),
    // each output quantized with its recorded qparams, then add+relu quantized with the block's.
    auto unit = [&](const std::string& x, const std::string& conv_name, const std::string& bn,
                    const ConvGeometry& geometry, const std::string& in_key, bool with_relu,
                    const std::string& out_key) {
      const int64_t out = l.out_channels;
      const Affine w = fold_batchnorm({m_.tensor(p + conv_name + ".weight"), at::zeros({out})}, m_,
                                      p + bn + ".", kResidualBnEps);
      const auto q = kernel_weight(p + conv_name + ".weight", w.weight, nullptr, true);
      auto y = conv(x, dequantize_weight(p + conv_name + ".weight", q),
                    int32_bias(p + conv_name + ".bias", w.bias, qparams(in_key).scale, q), geometry,
                    hint + "." + conv_name);
      if (with_relu) y = relu(y, hint + "." + conv_name);
      return qdq(y, out_key);
    };
    const std::string in_key = key_;
    const std::string x = quantized_input();
    const auto h = unit(x, "conv1", "bn1", g1, in_key, true, k + ".conv1");
    const auto y = unit(h, "conv2", "bn2", g2, k + ".conv1", false, k + ".conv2");
    const auto s =
        l.projection ? unit(x, "shortcut.0", "shortcut.1", gs, in_key, false, k + ".shortcut") : x;
    cur_ = qdq(relu(g_.op("Add", {y, s}, hint), hint), k);
    key_ = k;
    quantized_ = true;
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
  graph->set_name(model.spec().name.empty() ? "model" : model.spec().name);
  graph->set_doc_string("exported by mcompress; weights: " + weight_form(model));
  auto meta = [&](const std::string& key, const std::string& value) {
    auto* p = proto.add_metadata_props();
    p->set_key(key);
    p->set_value(value);
  };
  meta("mcompress.spec", model.spec().to_json_text());
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
