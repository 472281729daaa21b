#include "mcompress/core/graph_network.h"

#include <cmath>
#include <functional>
#include <limits>
#include <utility>

#include "mcompress/core/error.h"
#include "mcompress/core/int8_steps.h"
#include "mcompress/core/lowering.h"

namespace mcompress {
namespace {

using json = nlohmann::json;
using torch::Tensor;

/// What a kernel is built from: one validated node, its attributes with defaults, its parameter
/// tensors by role, and the inferred shapes of its inputs and output.
struct KernelContext {
  const Node& node;
  const json& attrs;
  const std::map<std::string, Tensor>& params;  // by role
  std::vector<SymShape> input_shapes;
  SymShape output_shape;

  int64_t get_int(const std::string& name) const { return attrs.at(name).get<int64_t>(); }
  double get_float(const std::string& name) const { return attrs.at(name).get<double>(); }
  std::vector<int64_t> get_ints(const std::string& name) const {
    return attrs.at(name).get<std::vector<int64_t>>();
  }
  Tensor param(const std::string& role) const {
    const auto it = params.find(role);
    return it == params.end() ? Tensor() : it->second;
  }
  size_t spatial() const { return input_shapes.at(0).size() - 2; }
  [[noreturn]] void fail(const std::string& message) const {
    throw ModelError("node '" + node.name + "' (" + node.op + "): " + message);
  }
};

/// A node's computation: its inputs (in the node's order) -> its one output.
using Kernel = std::function<Tensor(const std::vector<Tensor>& in, bool training)>;

/// One row of the dispatch table: how to build a node's kernel and how PyTorch initialises
/// the node's parameter tensors (nullptr: it has none).
struct KernelRow {
  std::string op;
  std::function<Kernel(const KernelContext&)> build;
  std::function<void(const std::map<std::string, Tensor>& params)> init;
};

// ---- window geometry ---------------------------------------------------------------------

// A per-spatial-axis list attribute as the schema resolves it: empty means `fill` everywhere.
std::vector<int64_t> spatial_list(const KernelContext& k, const std::string& name, size_t count,
                                  int64_t fill) {
  std::vector<int64_t> values = k.attrs.contains(name) ? k.get_ints(name) : std::vector<int64_t>{};
  return values.empty() ? std::vector<int64_t>(count, fill) : values;
}

struct Window {
  std::vector<int64_t> kernel, strides, dilations;
  std::vector<int64_t> padding;  // symmetric padding per axis, when `pad` is empty
  std::vector<int64_t> pad;      // constant_pad_nd's list (last axis first) for asymmetric pads
  std::vector<int64_t> out;      // the inferred output sizes per spatial axis
};

Window window(const KernelContext& k, bool has_dilations) {
  const size_t n = k.spatial();
  Window w;
  w.kernel = spatial_list(k, "kernel_shape", n, 1);
  w.strides = spatial_list(k, "strides", n, 1);
  w.dilations = has_dilations ? spatial_list(k, "dilations", n, 1) : std::vector<int64_t>(n, 1);
  const std::vector<int64_t> pads = spatial_list(k, "pads", 2 * n, 0);
  bool symmetric = true;
  for (size_t i = 0; i < n; ++i) symmetric = symmetric && pads[i] == pads[i + n];
  if (symmetric) {
    w.padding.assign(pads.begin(), pads.begin() + static_cast<std::ptrdiff_t>(n));
  } else {
    w.padding.assign(n, 0);
    for (size_t i = n; i-- > 0;) {
      w.pad.push_back(pads[i]);
      w.pad.push_back(pads[i + n]);
    }
  }
  for (size_t i = 2; i < k.output_shape.size(); ++i) w.out.push_back(k.output_shape[i].value);
  return w;
}

// Explicit asymmetric padding with `value`, or x itself.
Tensor pad_input(const Tensor& x, const Window& w, double value) {
  return w.pad.empty() ? x : torch::constant_pad_nd(x, w.pad, value);
}

// A pool over explicitly padded input may keep a last ceil-mode window that starts in the end
// padding, which ONNX and the schema drop: cut to the inferred size.
Tensor cut_to(const Tensor& y, const Window& w) {
  if (w.pad.empty()) return y;
  Tensor out = y;
  for (size_t i = 0; i < w.out.size(); ++i) {
    const auto axis = static_cast<int64_t>(i + 2);
    if (out.size(axis) > w.out[i]) out = out.narrow(axis, 0, w.out[i]);
  }
  return out;
}

// ---- kernels -------------------------------------------------------------------------------

Kernel conv_kernel(const KernelContext& k) {
  const Window w = window(k, true);
  const int64_t groups = k.get_int("group");
  const Tensor weight = k.param("weight"), bias = k.param("bias");
  const size_t n = k.spatial();
  using ConvFn = Tensor (*)(const Tensor&, const Tensor&, const c10::optional<Tensor>&,
                            at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t);
  ConvFn conv = n == 1   ? static_cast<ConvFn>(&torch::conv1d)
                : n == 2 ? static_cast<ConvFn>(&torch::conv2d)
                         : static_cast<ConvFn>(&torch::conv3d);
  // A second input, when present, is the weight as a forward hook replaced it.
  return [=](const std::vector<Tensor>& in, bool) {
    return conv(pad_input(in[0], w, 0.0), in.size() > 1 ? in[1] : weight, bias, w.strides,
                w.padding, w.dilations, groups);
  };
}

Kernel gemm_kernel(const KernelContext& k) {
  const Tensor weight = k.param("weight"), bias = k.param("bias");
  // A second input, when present, is the weight as a forward hook replaced it.
  return [=](const std::vector<Tensor>& in, bool) {
    return torch::linear(in[0], in.size() > 1 ? in[1] : weight, bias);
  };
}

Kernel matmul_kernel(const KernelContext&) {
  return [](const std::vector<Tensor>& in, bool) { return torch::matmul(in[0], in[1]); };
}

Kernel add_kernel(const KernelContext&) {
  return [](const std::vector<Tensor>& in, bool) { return in[0] + in[1]; };
}

Kernel mul_kernel(const KernelContext&) {
  return [](const std::vector<Tensor>& in, bool) { return in[0] * in[1]; };
}

Kernel concat_kernel(const KernelContext& k) {
  const int64_t axis = k.get_int("axis");
  return [axis](const std::vector<Tensor>& in, bool) { return torch::cat(in, axis); };
}

// An elementwise op of one input.
Kernel unary(Tensor (*fn)(const Tensor&)) {
  return [fn](const std::vector<Tensor>& in, bool) { return fn(in[0]); };
}

Kernel clip_kernel(const KernelContext& k) {
  c10::optional<at::Scalar> lo, hi;
  if (k.attrs.contains("min")) lo = k.get_float("min");
  if (k.attrs.contains("max")) hi = k.get_float("max");
  if (!lo && !hi) return [](const std::vector<Tensor>& in, bool) { return in[0]; };
  return [lo, hi](const std::vector<Tensor>& in, bool) { return torch::clamp(in[0], lo, hi); };
}

Kernel hardsigmoid_kernel(const KernelContext& k) {
  const double alpha = k.get_float("alpha"), beta = k.get_float("beta");
  if (std::abs(alpha - 1.0 / 6.0) < 1e-12 && beta == 0.5) {
    return [](const std::vector<Tensor>& in, bool) { return torch::hardsigmoid(in[0]); };
  }
  return [alpha, beta](const std::vector<Tensor>& in, bool) {
    return torch::clamp(in[0] * alpha + beta, 0.0, 1.0);
  };
}

// Training: normalises with the batch statistics and moves the running statistics by
// PyTorch's momentum, 1 - the ONNX momentum (unbiased batch variance, as PyTorch); inference:
// the running statistics.
Kernel batchnorm_kernel(const KernelContext& k) {
  const double eps = k.get_float("epsilon");
  const double momentum = 1.0 - k.get_float("momentum");
  const Tensor weight = k.param("weight"), bias = k.param("bias");
  const Tensor mean = k.param("running_mean"), var = k.param("running_var");
  return [=](const std::vector<Tensor>& in, bool training) {
    return torch::batch_norm(in[0], weight, bias, mean, var, training, momentum, eps,
                             at::globalContext().userEnabledCuDNN());
  };
}

Kernel maxpool_kernel(const KernelContext& k) {
  const Window w = window(k, true);
  const bool ceil = k.get_int("ceil_mode") == 1;
  const size_t n = k.spatial();
  const double neg_inf = -std::numeric_limits<double>::infinity();
  return [=](const std::vector<Tensor>& in, bool) {
    const Tensor x = pad_input(in[0], w, neg_inf);
    Tensor y;
    if (n == 1) {
      y = torch::max_pool1d(x, w.kernel, w.strides, w.padding, w.dilations, ceil);
    } else if (n == 2) {
      y = torch::max_pool2d(x, w.kernel, w.strides, w.padding, w.dilations, ceil);
    } else {
      y = torch::max_pool3d(x, w.kernel, w.strides, w.padding, w.dilations, ceil);
    }
    return cut_to(y, w);
  };
}

Kernel avgpool_kernel(const KernelContext& k) {
  const Window w = window(k, false);
  const bool ceil = k.get_int("ceil_mode") == 1;
  const bool include_pad = k.get_int("count_include_pad") == 1;
  const size_t n = k.spatial();
  auto pool = [=](const Tensor& x, bool include) {
    if (n == 1) return torch::avg_pool1d(x, w.kernel, w.strides, w.padding, ceil, include);
    if (n == 2) return torch::avg_pool2d(x, w.kernel, w.strides, w.padding, ceil, include);
    return torch::avg_pool3d(x, w.kernel, w.strides, w.padding, ceil, include);
  };
  return [=](const std::vector<Tensor>& in, bool) {
    if (w.pad.empty()) return pool(in[0], include_pad);
    const Tensor sum = pool(pad_input(in[0], w, 0.0), true);
    if (include_pad) return cut_to(sum, w);
    // Average over the real elements only: divide by the share of them in each window.
    std::vector<int64_t> ones_shape(static_cast<size_t>(in[0].dim()), 1);
    for (size_t i = 2; i < ones_shape.size(); ++i) ones_shape[i] = in[0].size(int64_t(i));
    const Tensor share = pool(pad_input(torch::ones(ones_shape, in[0].options()), w, 0.0), true);
    return cut_to(sum / share, w);
  };
}

// PyTorch's adaptive average pool to `sizes` (all ones: GlobalAveragePool, as
// nn.AdaptiveAvgPool2d(1) computes it).
Tensor adaptive_avg(const Tensor& x, const std::vector<int64_t>& sizes) {
  if (sizes.size() == 1) return torch::adaptive_avg_pool1d(x, sizes);
  if (sizes.size() == 2) return torch::adaptive_avg_pool2d(x, sizes);
  return torch::adaptive_avg_pool3d(x, sizes);
}

Kernel global_avgpool_kernel(const KernelContext& k) {
  const std::vector<int64_t> sizes(k.spatial(), 1);
  if (sizes.size() > 3) {
    return [](const std::vector<Tensor>& in, bool) {
      std::vector<int64_t> axes;
      for (int64_t a = 2; a < in[0].dim(); ++a) axes.push_back(a);
      return in[0].mean(axes, true);
    };
  }
  return [sizes](const std::vector<Tensor>& in, bool) { return adaptive_avg(in[0], sizes); };
}

Kernel adaptive_avgpool_kernel(const KernelContext& k) {
  const std::vector<int64_t> sizes = spatial_list(k, "output_size", k.spatial(), 1);
  if (sizes.size() > 3) k.fail("AdaptiveAveragePool runs over 1-3 spatial axes");
  return [sizes](const std::vector<Tensor>& in, bool) { return adaptive_avg(in[0], sizes); };
}

Kernel flatten_kernel(const KernelContext& k) {
  const int64_t given = k.get_int("axis");
  const auto rank = static_cast<int64_t>(k.input_shapes.at(0).size());
  const int64_t axis = given < 0 ? given + rank : given;
  return [axis](const std::vector<Tensor>& in, bool) {
    int64_t outer = 1;
    for (int64_t a = 0; a < axis; ++a) outer *= in[0].size(a);
    return outer == 0 ? in[0].reshape({0, -1}) : in[0].reshape({outer, in[0].numel() / outer});
  };
}

Kernel reshape_kernel(const KernelContext& k) {
  const std::vector<int64_t> target = k.get_ints("shape");
  return [target](const std::vector<Tensor>& in, bool) {
    std::vector<int64_t> shape = target;
    for (size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] == 0) shape[i] = in[0].size(static_cast<int64_t>(i));
    }
    return in[0].reshape(shape);
  };
}

Kernel dropout_kernel(const KernelContext& k) {
  const double ratio = k.get_float("ratio");
  return [ratio](const std::vector<Tensor>& in, bool training) {
    return torch::dropout(in[0], ratio, training);
  };
}

Kernel identity_kernel(const KernelContext&) {
  return [](const std::vector<Tensor>& in, bool) { return in[0]; };
}

// ---- initialisation, as PyTorch's modules reset their parameters ------------------------------

// Conv and Linear: kaiming_uniform_(a = sqrt(5)) on the weight, U(-1/sqrt(fan_in), ..) on the
// bias.
void init_weight_bias(const std::map<std::string, Tensor>& params) {
  torch::NoGradGuard no_grad;
  const Tensor& weight = params.at("weight");
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  const auto bias = params.find("bias");
  if (bias != params.end()) {
    const int64_t fan_in = weight.numel() / weight.size(0);
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    bias->second.uniform_(-bound, bound);
  }
}

void init_batchnorm(const std::map<std::string, Tensor>& params) {
  torch::NoGradGuard no_grad;
  params.at("weight").fill_(1.0);
  params.at("bias").zero_();
  params.at("running_mean").zero_();
  params.at("running_var").fill_(1.0);
}

// ---- the dispatch table: one row per op of op_schemas() ----------------------------------

template <Tensor (*Fn)(const Tensor&)>
Kernel unary_row(const KernelContext&) {
  return unary(Fn);
}

Tensor relu(const Tensor& x) { return torch::relu(x); }
Tensor hardswish(const Tensor& x) { return torch::hardswish(x); }
Tensor sigmoid(const Tensor& x) { return torch::sigmoid(x); }
Tensor tanh_fn(const Tensor& x) { return torch::tanh(x); }
Tensor silu(const Tensor& x) { return torch::silu(x); }

const std::vector<KernelRow>& kernel_table() {
  static const std::vector<KernelRow> table = {
      {"Conv", conv_kernel, init_weight_bias},
      {"Gemm", gemm_kernel, init_weight_bias},
      {"MatMul", matmul_kernel, nullptr},
      {"Add", add_kernel, nullptr},
      {"Mul", mul_kernel, nullptr},
      {"Concat", concat_kernel, nullptr},
      {"Relu", unary_row<relu>, nullptr},
      {"Clip", clip_kernel, nullptr},
      {"HardSwish", unary_row<hardswish>, nullptr},
      {"HardSigmoid", hardsigmoid_kernel, nullptr},
      {"Sigmoid", unary_row<sigmoid>, nullptr},
      {"Tanh", unary_row<tanh_fn>, nullptr},
      {"SiLU", unary_row<silu>, nullptr},
      {"BatchNormalization", batchnorm_kernel, init_batchnorm},
      {"MaxPool", maxpool_kernel, nullptr},
      {"AveragePool", avgpool_kernel, nullptr},
      {"GlobalAveragePool", global_avgpool_kernel, nullptr},
      {"AdaptiveAveragePool", adaptive_avgpool_kernel, nullptr},
      {"Flatten", flatten_kernel, nullptr},
      {"Reshape", reshape_kernel, nullptr},
      {"Dropout", dropout_kernel, nullptr},
      {"Identity", identity_kernel, nullptr},
  };
  return table;
}

const KernelRow& kernel_row(const Node& node) {
  for (const KernelRow& row : kernel_table()) {
    if (row.op == node.op) return row;
  }
  throw ModelError("node '" + node.name + "' (" + node.op + "): GraphNetwork has no kernel for " +
                   "this op");
}

// "a.b.c" -> {"a", "b", "c"}; ModelError on an empty component.
std::vector<std::string> split_name(const GraphParam& p) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = p.name.find('.', start);
    parts.push_back(p.name.substr(start, dot == std::string::npos ? dot : dot - start));
    MCOMPRESS_CHECK(!parts.back().empty(), ModelError, "node '", p.node, "': parameter '", p.name,
                    "': empty name component; expected names such as layer1.0.conv1.weight");
    if (dot == std::string::npos) return parts;
    start = dot + 1;
  }
}

// A plain module holding the parameters and submodules of one name prefix.
struct HolderImpl : torch::nn::Module {};
TORCH_MODULE(Holder);

torch::Tensor per_channel(const std::vector<double>& values, size_t rank) {
  std::vector<int64_t> shape(std::max<size_t>(rank, 2), 1);
  shape[1] = static_cast<int64_t>(values.size());
  return torch::tensor(values, torch::kFloat32).reshape(shape);
}

}  // namespace

struct GraphNetworkImpl::Step {
  Kernel kernel;
  std::vector<int64_t> inputs;  // value slots
  int64_t output = 0;
  std::vector<int64_t> release;  // slots whose last use is this step
  bool batchnorm = false;        // runs in eval mode while batchnorm is frozen
  std::string weight;            // Conv/Gemm: the weight's tensor name, for ForwardHooks::weight
  std::string tap;               // the activation key ForwardHooks::activation sees, or ""
};

InferenceKernel inference_kernel(const Node& node, const json& attrs,
                                 const std::map<std::string, Tensor>& params,
                                 const GraphInfo& info) {
  KernelContext k{node, attrs, params, {}, {}};
  for (const std::string& in : node.inputs) k.input_shapes.push_back(info.values.at(in).shape);
  MCOMPRESS_CHECK(node.outputs.size() == 1, ModelError, "node '", node.name, "' (", node.op,
                  "): got ", node.outputs.size(), " outputs, expected 1");
  k.output_shape = info.values.at(node.outputs[0]).shape;
  Kernel kernel = kernel_row(node).build(k);
  return [kernel](const std::vector<Tensor>& in) { return kernel(in, /*training=*/false); };
}

std::vector<std::string> graph_network_ops() {
  std::vector<std::string> out;
  for (const KernelRow& row : kernel_table()) out.push_back(row.op);
  return out;
}

GraphNetworkImpl::GraphNetworkImpl(Graph graph)
    : graph_(std::move(graph)), info_(graph_.analyze()) {
  if (graph_.preprocess.kind == Preprocess::Kind::kNormalize) {
    const size_t rank = graph_.inputs.at(0).shape.size();
    mean_ = per_channel(graph_.preprocess.mean, rank);
    std_ = per_channel(graph_.preprocess.std, rank);
  }
  // Parameter tensors, grouped by node.
  std::map<std::string, std::map<std::string, Tensor>> by_node;
  std::map<std::string, std::string> weight_names;  // node -> its weight's tensor name
  for (const GraphParam& p : info_.params) {
    by_node[p.node][p.spec.role] = add_tensor(p);
    if (p.spec.role == "weight") weight_names[p.node] = p.name;
  }

  std::map<std::string, int64_t> slots;
  auto slot_of = [&](const std::string& value) {
    const auto it = slots.find(value);
    return it != slots.end() ? it->second : (slots[value] = num_slots_++);
  };
  for (const ValueInfo& in : graph_.inputs) input_slots_.push_back(slot_of(in.name));
  std::map<int64_t, size_t> last_use;
  for (size_t i = 0; i < graph_.nodes.size(); ++i) {
    const Node& node = graph_.nodes[i];
    const KernelRow& row = kernel_row(node);
    static const std::map<std::string, Tensor> kNone;
    const auto params = by_node.find(node.name);
    const auto& node_params = params == by_node.end() ? kNone : params->second;
    if (row.init && !node_params.empty()) row.init(node_params);
    KernelContext k{node, info_.attrs.at(i), node_params, {}, {}};
    for (const std::string& in : node.inputs) k.input_shapes.push_back(info_.values.at(in).shape);
    MCOMPRESS_CHECK(node.outputs.size() == 1, ModelError, "node '", node.name, "' (", node.op,
                    "): GraphNetwork runs nodes of one output, got ", node.outputs.size());
    k.output_shape = info_.values.at(node.outputs[0]).shape;
    auto step = std::make_shared<Step>();
    step->kernel = row.build(k);
    step->batchnorm = node.op == "BatchNormalization";
    for (const std::string& in : node.inputs) {
      step->inputs.push_back(slot_of(in));
      last_use[step->inputs.back()] = i;
    }
    step->output = slot_of(node.outputs[0]);
    if (node.op == "Conv" || node.op == "Gemm") step->weight = weight_names.at(node.name);
    steps_.push_back(std::move(step));
  }
  // The activation taps: what calibration observes (core/int8_steps.h), after each lowered
  // step's last node.
  std::map<std::string, size_t> producer;
  for (size_t i = 0; i < graph_.nodes.size(); ++i) producer[graph_.nodes[i].outputs[0]] = i;
  for (const LoweredStep& s : lower(graph_)) {
    if (!passes_quint8_through(graph_, info_, s)) steps_[producer.at(s.output)]->tap = s.output;
  }
  for (const std::string& out : graph_.outputs) {
    output_slots_.push_back(slot_of(out));
    last_use.erase(output_slots_.back());
  }
  for (const auto& [slot, step] : last_use) steps_[step]->release.push_back(slot);
}

torch::Tensor& GraphNetworkImpl::add_tensor(const GraphParam& p) {
  const std::vector<std::string> parts = split_name(p);
  torch::nn::Module* owner = this;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const auto children = owner->named_children();
    if (const auto* child = children.find(parts[i])) {
      owner = child->get();
    } else {
      owner = owner->register_module(parts[i], Holder()).get();
    }
  }
  Tensor t = torch::empty(p.spec.shape, torch::kFloat32);
  const Tensor registered = p.spec.trainable ? owner->register_parameter(parts.back(), t)
                                             : owner->register_buffer(parts.back(), t);
  return tensors_[p.name] = registered;
}

torch::Tensor GraphNetworkImpl::preprocess(const torch::Tensor& x) const {
  return mean_.defined() ? (x - mean_) / std_ : x;
}

std::vector<torch::Tensor> GraphNetworkImpl::run(const std::vector<torch::Tensor>& inputs) {
  MCOMPRESS_CHECK(inputs.size() == graph_.inputs.size(), ModelError, "GraphNetwork: got ",
                  inputs.size(), " inputs, the graph has ", graph_.inputs.size());
  std::vector<Tensor> values(static_cast<size_t>(num_slots_));
  for (size_t i = 0; i < inputs.size(); ++i) {
    values[static_cast<size_t>(input_slots_[i])] = i == 0 ? preprocess(inputs[i]) : inputs[i];
  }
  const bool training = is_training();
  const bool batchnorm_training = training && !batchnorm_frozen_;
  const ForwardHooks& hooks = hooks_;
  if (hooks.activation) {
    Tensor& x = values[static_cast<size_t>(input_slots_[0])];
    x = hooks.activation("input", x);
  }
  std::vector<Tensor> args;
  for (const auto& step : steps_) {
    args.clear();
    for (int64_t s : step->inputs) args.push_back(values[static_cast<size_t>(s)]);
    if (hooks.weight && !step->weight.empty()) {
      args.push_back(hooks.weight(step->weight, tensors_.at(step->weight)));
    }
    Tensor out = step->kernel(args, step->batchnorm ? batchnorm_training : training);
    if (hooks.activation && !step->tap.empty()) out = hooks.activation(step->tap, out);
    values[static_cast<size_t>(step->output)] = std::move(out);
    for (int64_t s : step->release) values[static_cast<size_t>(s)] = Tensor();
  }
  args.clear();
  std::vector<Tensor> out;
  for (int64_t s : output_slots_) out.push_back(values[static_cast<size_t>(s)]);
  return out;
}

void GraphNetworkImpl::train(bool on) {
  batchnorm_frozen_ = false;
  torch::nn::Module::train(on);
}

torch::Tensor GraphNetworkImpl::forward(const torch::Tensor& x) {
  MCOMPRESS_CHECK(graph_.inputs.size() == 1 && graph_.outputs.size() == 1, ModelError,
                  "GraphNetwork::forward: the graph has ", graph_.inputs.size(), " inputs and ",
                  graph_.outputs.size(), " outputs, expected one each (use run())");
  return run({x})[0];
}

std::map<std::string, torch::Tensor> GraphNetworkImpl::state() const { return tensors_; }

void GraphNetworkImpl::load(const Model& model) {
  torch::NoGradGuard no_grad;
  for (const auto& info : model.tensor_infos()) {
    const auto it = tensors_.find(info.name);
    MCOMPRESS_CHECK(it != tensors_.end(), ModelError, "graph network has no tensor '", info.name,
                    "'");
    const Tensor& value = model.tensor(info.name);
    MCOMPRESS_CHECK(value.sizes() == it->second.sizes(), ModelError, "tensor '", info.name,
                    "': got shape ", shape_to_string(value.sizes().vec()), ", the graph has ",
                    shape_to_string(it->second.sizes().vec()));
    it->second.copy_(value);
  }
  masks_.clear();
  for (const auto& [name, mask] : model.masks) set_mask(name, mask);
}

void GraphNetworkImpl::load(const std::map<std::string, torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  for (const auto& [name, value] : tensors) {
    MCOMPRESS_CHECK(tensors_.count(name) != 0, ModelError, "graph network has no tensor '", name,
                    "'");
  }
  for (const auto& [name, mine] : tensors_) {
    const auto it = tensors.find(name);
    MCOMPRESS_CHECK(it != tensors.end(), ModelError, "tensor '", name, "' is missing");
    MCOMPRESS_CHECK(it->second.sizes() == mine.sizes(), ModelError, "tensor '", name,
                    "': got shape ", shape_to_string(it->second.sizes().vec()), ", the graph has ",
                    shape_to_string(mine.sizes().vec()));
    mine.copy_(it->second);
  }
}

void GraphNetworkImpl::store(Model& model) const {
  torch::NoGradGuard no_grad;
  for (const auto& [name, value] : tensors_) model.tensor(name).copy_(value.detach());
}

void GraphNetworkImpl::set_mask(const std::string& name, const torch::Tensor& mask) {
  const auto it = tensors_.find(name);
  MCOMPRESS_CHECK(it != tensors_.end(), ModelError, "graph network has no tensor '", name,
                  "' to mask");
  MCOMPRESS_CHECK(mask.defined() && mask.sizes() == it->second.sizes(), ModelError, "mask for '",
                  name, "' must have the tensor's shape ",
                  shape_to_string(it->second.sizes().vec()));
  masks_[name] = mask.to(torch::kBool).contiguous();
  torch::NoGradGuard no_grad;
  it->second.masked_fill_(masks_[name].logical_not(), 0.0f);
}

void GraphNetworkImpl::apply_masks() {
  torch::NoGradGuard no_grad;
  for (const auto& [name, mask] : masks_) tensors_.at(name).masked_fill_(mask.logical_not(), 0.0f);
}

}  // namespace mcompress
