#include "graph_plan.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <iomanip>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>

#include "mcompress/core/error.h"
#include "mcompress/core/graph_network.h"
#include "mcompress/core/lowering.h"
#include "timing.h"

namespace mcompress::runtime {
namespace {

using json = nlohmann::json;

// One value per channel, shaped to broadcast over an input of `rank` ([1, C, 1, ...]).
at::Tensor per_channel(const std::vector<double>& values, size_t rank) {
  std::vector<int64_t> shape(rank, 1);
  if (rank >= 2) shape[1] = static_cast<int64_t>(values.size());
  return at::tensor(values, at::kFloat).reshape(shape);
}

std::string node_range(const Graph& graph, const LoweredStep& step) {
  const std::string& first = graph.nodes[step.nodes.front()].name;
  const std::string& last = graph.nodes[step.nodes.back()].name;
  return first == last ? first : first + ".." + last;
}

std::string format_ms(double ms) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(3) << ms << " ms";
  return s.str();
}

// Ops whose kernel computes the same on quint8 tensors as on floats and keeps the input's
// qparams (LibTorch has QuantizedCPU kernels for them), so no conversion is needed around them.
bool runs_on_quint8(const std::string& op) {
  static const std::set<std::string> ops = {
      "Relu",    "Clip",    "MaxPool", "GlobalAveragePool", "AdaptiveAveragePool",
      "Flatten", "Reshape", "Dropout", "Identity"};
  return ops.count(op) != 0;
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

// Where a compiled step runs: on floats, on quint8 tensors, or on whichever flows in.
enum class Form { kFloat, kQuant, kAny };

struct Compiled {
  MultiInputKernel run;
  Form form = Form::kFloat;
  std::string kind;  // for int8 forms: "int8-static" / "int8-dynamic"
  std::string note;
};

MultiInputKernel single_input(KernelPtr kernel) {
  std::shared_ptr<const Kernel> k(std::move(kernel));
  return [k](const std::vector<at::Tensor>& in) { return k->run(in.at(0)); };
}

void append(std::string& note, const std::string& more) {
  note = note.empty() ? more : note + "; " + more;
}

// Compiles lowered steps into kernels, fp32 or int8, with the model's weights.
class StepCompiler {
 public:
  explicit StepCompiler(const Model& model)
      : model_(model), graph_(model.graph()), info_(graph_.analyze()) {
    for (const GraphParam& p : info_.params) {
      params_[p.node][p.spec.role] = model.tensor(p.name);
      names_[p.node][p.spec.role] = p.name;
    }
  }

  const Graph& graph() const { return graph_; }

  // The step on fp32 kernels: batchnorm folded into a Conv/Gemm's weights, a fused Relu applied
  // in place on the step's output.
  Compiled fp32(const LoweredStep& s) const {
    const Node& anchor = graph_.nodes[s.nodes.front()];
    if (s.nodes.size() == 1) {
      return {inference_kernel(anchor, info_.attrs[s.nodes.front()], params_of(anchor), info_),
              Form::kFloat, "", ""};
    }
    Compiled c;
    std::map<std::string, at::Tensor> params = params_of(anchor);
    json attrs = info_.attrs[s.nodes.front()];
    if (s.find(graph_, "BatchNormalization") >= 0) {
      const AffineWeights w = folded(s);
      params["weight"] = w.weight;
      params["bias"] = w.bias;
      attrs["bias"] = 1;
      c.note = "batchnorm folded";
    }
    Node fused = anchor;
    fused.outputs = {anchor.outputs[0]};
    MultiInputKernel kernel = inference_kernel(fused, attrs, params, info_);
    c.run = s.find(graph_, "Relu") < 0 ? kernel : [kernel](const std::vector<at::Tensor>& in) {
      return kernel(in).relu_();
    };
    return c;
  }

  // The step's int8 form under the model's quantization, or `fp32_form` (the step's fp32(),
  // already built for the fp32 plan) with a note saying why it has none.
  Compiled int8(const LoweredStep& s, const Compiled& fp32_form) const {
    const Node& anchor = graph_.nodes[s.nodes.front()];
    const json& attrs = info_.attrs[s.nodes.front()];
    const bool relu = s.find(graph_, "Relu") >= 0;
    const bool is_static = model_.quant.mode == "int8-static";
    Compiled c = fp32_form;
    if (anchor.op == "Conv" || anchor.op == "Gemm") {
      const QuantizedTensor* stored = model_.quant.find_int8(names_.at(anchor.name).at("weight"));
      if (stored == nullptr) {
        append(c.note, "weight not int8: fp32");
        return c;
      }
      const bool bn = s.find(graph_, "BatchNormalization") >= 0;
      const AffineWeights w = bn ? folded(s) : weights(anchor);
      const at::Tensor qweight =
          quantize_weight_for_kernel(w.weight, bn ? nullptr : stored, stored->axis >= 0);
      if (!is_static) {
        if (anchor.op == "Conv") return c;  // dynamic quantization covers Linear, as in PyTorch
        return {single_input(make_linear_dynamic_int8(qweight, w.bias, relu)), Form::kFloat,
                "int8-dynamic", c.note};
      }
      const ActivationQParams* out = model_.quant.find_activation(s.output);
      if (out == nullptr) {
        append(c.note, "no calibrated qparams: fp32");
        return c;
      }
      if (anchor.op == "Gemm") {
        return {single_input(make_linear_static_int8(qweight, w.bias, relu, *out)), Form::kQuant,
                "int8-static", c.note};
      }
      const auto strides = ints_or(attrs, "strides", {1, 1});
      const auto pads = ints_or(attrs, "pads", {0, 0, 0, 0});
      if (w.weight.dim() != 4 || strides.size() != 2 || strides[0] != strides[1] ||
          !all_equal(pads, pads[0]) || !all_equal(ints_or(attrs, "dilations", {1, 1}), 1)) {
        append(c.note,
               "no int8 kernel for this geometry (2-D, square strides, equal pads, no "
               "dilation): fp32");
        return c;
      }
      const Conv2dGeometry g{strides[0], pads[0], attrs.at("group").get<int64_t>()};
      return {single_input(make_conv2d_static_int8(qweight, w.bias, g, relu, *out)), Form::kQuant,
              "int8-static", c.note};
    }
    if (!is_static) return c;
    if (anchor.op == "Add" || anchor.op == "Concat") {
      const ActivationQParams* out = model_.quant.find_activation(s.output);
      if (out == nullptr) {
        append(c.note, "no calibrated qparams: fp32");
        return c;
      }
      if (anchor.op == "Concat") {
        int64_t axis = attrs.at("axis").get<int64_t>();
        if (axis < 0) axis += static_cast<int64_t>(info_.values.at(s.output).shape.size());
        return {make_concat_int8(axis, *out), Form::kQuant, "int8-static", c.note};
      }
      if (info_.values.at(anchor.inputs[0]).shape != info_.values.at(anchor.inputs[1]).shape) {
        append(c.note, "broadcasting Add: fp32");
        return c;
      }
      return {make_add_int8(relu, *out), Form::kQuant, "int8-static", c.note};
    }
    if (runs_on_quint8(anchor.op) && (anchor.op != "MaxPool" || symmetric_pads(attrs))) {
      c.form = Form::kAny;
    }
    return c;
  }

 private:
  const std::map<std::string, at::Tensor>& params_of(const Node& node) const {
    static const std::map<std::string, at::Tensor> kNone;
    const auto it = params_.find(node.name);
    return it == params_.end() ? kNone : it->second;
  }

  AffineWeights weights(const Node& anchor) const {
    const auto& p = params_of(anchor);
    const at::Tensor& weight = p.at("weight");
    return {weight, p.count("bias") != 0 ? p.at("bias") : at::zeros({weight.size(0)}, at::kFloat)};
  }

  // The anchor's weights with the step's batchnorm folded in.
  AffineWeights folded(const LoweredStep& s) const {
    const auto bn_index = static_cast<size_t>(s.find(graph_, "BatchNormalization"));
    const auto& stats = params_of(graph_.nodes[bn_index]);
    return fold_batchnorm(
        weights(graph_.nodes[s.nodes.front()]),
        {stats.at("weight"), stats.at("bias"), stats.at("running_mean"), stats.at("running_var"),
         info_.attrs[bn_index].at("epsilon").get<double>()});
  }

  static bool symmetric_pads(const json& attrs) {
    const auto pads = attrs.value("pads", std::vector<int64_t>{});
    const size_t n = pads.size() / 2;
    for (size_t i = 0; i < n; ++i) {
      if (pads[i] != pads[i + n]) return false;
    }
    return true;
  }

  const Model& model_;
  const Graph& graph_;
  GraphInfo info_;
  std::map<std::string, std::map<std::string, at::Tensor>> params_;
  std::map<std::string, std::map<std::string, std::string>> names_;
};

// Assembles a Plan from compiled steps: value slots, the quantize and dequantize steps where
// domains change (one per value and direction, shared by its readers), and release lists.
class PlanBuilder {
 public:
  PlanBuilder(const Model& model, GraphPlan::Plan& plan) : model_(model), plan_(plan) {
    const std::string& input = model.graph().inputs[0].name;
    plan_.input_slot = slot_of(input);
    keys_[plan_.input_slot] = "input";  // calibration's name for the preprocessed input
  }

  // The qparams a float value would be quantized with, or nullptr.
  const ActivationQParams* qparams(const std::string& value) {
    return model_.quant.find_activation(key_of(slot_of(value)));
  }

  void add(const Graph& graph, const LoweredStep& lowered, const Compiled& c) {
    const Node& anchor = graph.nodes[lowered.nodes.front()];
    bool quant = c.form == Form::kQuant;
    if (c.form == Form::kAny) {
      quant = true;
      for (const std::string& in : anchor.inputs) quant = quant && quantized_.count(slot_of(in));
    }
    GraphPlan::Step step;
    for (const std::string& in : anchor.inputs)
      step.inputs.push_back(in_domain(slot_of(in), quant));
    step.run = c.run;
    step.value = lowered.output;
    step.output = slot_of(lowered.output);
    if (quant) quantized_.insert(step.output);
    const std::string kind = !c.kind.empty()                 ? c.kind
                             : quant && c.form == Form::kAny ? "int8-passthrough"
                                                             : "fp32-dense";
    push(std::move(step), {node_range(graph, lowered), lowered.op, kind, c.note});
  }

  void finish(const std::string& output) {
    plan_.output_slot = in_domain(slot_of(output), false);
    std::map<int64_t, size_t> last_reader;
    for (size_t i = 0; i < plan_.steps.size(); ++i) {
      for (int64_t s : plan_.steps[i].inputs) last_reader[s] = i;
    }
    last_reader.erase(plan_.output_slot);
    for (const auto& [slot, index] : last_reader) plan_.steps[index].release.push_back(slot);
  }

 private:
  int64_t slot_of(const std::string& value) {
    const auto it = slots_.find(value);
    if (it != slots_.end()) return it->second;
    keys_[plan_.num_slots] = value;
    return slots_[value] = plan_.num_slots++;
  }
  std::string key_of(int64_t slot) const { return keys_.at(slot); }

  // `slot` in the wanted domain: itself, or the slot of its converted copy.
  int64_t in_domain(int64_t slot, bool quant) {
    if ((quantized_.count(slot) != 0) == quant) return slot;
    auto& cache = quant ? quantized_copy_ : float_copy_;
    if (const auto it = cache.find(slot); it != cache.end()) return it->second;
    const int64_t copy = plan_.num_slots++;
    keys_[copy] = key_of(slot);
    GraphPlan::Step step;
    step.inputs = {slot};
    step.output = copy;
    step.value = key_of(slot);
    if (quant) {
      const ActivationQParams q = *model_.quant.find_activation(key_of(slot));
      step.run = single_input(make_quantize(q));
      quantized_.insert(copy);
      push(std::move(step), {"", "quantize", "convert", "quint8 (" + key_of(slot) + ")"});
    } else {
      step.run = single_input(make_dequantize());
      push(std::move(step), {"", "dequantize", "convert", key_of(slot)});
    }
    return cache[slot] = copy;
  }

  void push(GraphPlan::Step step, PlanStep shown) {
    plan_.steps.push_back(std::move(step));
    plan_.shown.push_back(std::move(shown));
  }

  const Model& model_;
  GraphPlan::Plan& plan_;
  std::map<std::string, int64_t> slots_;
  std::map<int64_t, std::string> keys_;  // slot -> calibration key of its value
  std::set<int64_t> quantized_;          // slots holding quint8 tensors
  std::map<int64_t, int64_t> quantized_copy_, float_copy_;
};

}  // namespace

GraphPlan::GraphPlan(const Model& model, const ExecutorOptions& options) {
  const Graph& graph = model.graph();
  MCOMPRESS_CHECK(graph.inputs.size() == 1 && graph.outputs.size() == 1, ModelError, "'",
                  model.name(), "': the executor runs graphs of one input and one output, got ",
                  graph.inputs.size(), " and ", graph.outputs.size());
  input_shape_ = model.input_shape();
  num_classes_ = model.num_classes();
  const ValueInfo& input = graph.inputs[0];
  if (graph.preprocess.kind == Preprocess::Kind::kNormalize) {
    mean_ = per_channel(graph.preprocess.mean, input.shape.size());
    std_ = per_channel(graph.preprocess.std, input.shape.size());
  }

  const StepCompiler compiler(model);
  const std::vector<LoweredStep> lowered = lower(graph);
  PlanBuilder fp32(model, fp32_);
  std::vector<Compiled> fp32_forms;
  for (const LoweredStep& s : lowered) {
    fp32_forms.push_back(compiler.fp32(s));
    fp32.add(graph, s, fp32_forms.back());
  }
  fp32.finish(graph.outputs[0]);

  const bool int8_model = model.quant.mode == "int8-static" || model.quant.mode == "int8-dynamic";
  if (!int8_model || options.policy == KernelPolicy::kFp32 ||
      options.policy == KernelPolicy::kSparse) {
    return;
  }
  ensure_quantized_engine();
  PlanBuilder int8(model, int8_);
  for (size_t i = 0; i < lowered.size(); ++i) {
    const LoweredStep& s = lowered[i];
    Compiled c = compiler.int8(s, fp32_forms[i]);
    // A quint8 step needs every float input quantized, with calibrated qparams.
    if (c.form == Form::kQuant) {
      for (const std::string& in : graph.nodes[s.nodes.front()].inputs) {
        if (int8.qparams(in) == nullptr) {
          c = fp32_forms[i];
          append(c.note, "input '" + in + "' has no calibrated qparams: fp32");
          break;
        }
      }
    }
    int8.add(graph, s, c);
  }
  int8.finish(graph.outputs[0]);
  if (options.policy == KernelPolicy::kInt8) {
    use_int8_ = true;
    return;
  }
  // Auto: the int8 plan when it is kMinGain faster than fp32 at the deployment batch size, so
  // that two plans within noise of each other cannot swap from run to run.
  std::vector<int64_t> shape{options.batch_size};
  shape.insert(shape.end(), input_shape_.begin(), input_shape_.end());
  auto gen = at::make_generator<at::CPUGeneratorImpl>(54321);
  const at::Tensor x = at::rand(shape, gen, at::kFloat);
  at::NoGradGuard no_grad;
  const double fp32_ms = best_ms([&] { return run(fp32_, x, nullptr); });
  const double int8_ms = best_ms([&] { return run(int8_, x, nullptr); });
  use_int8_ = int8_ms * kMinGain < fp32_ms;
  const std::string at_batch = " at batch " + std::to_string(options.batch_size);
  note_ = use_int8_ ? "auto: int8 plan " + format_ms(int8_ms) + " vs fp32 " + format_ms(fp32_ms) +
                          at_batch
                    : "auto: fp32 everywhere; the int8 plan (" + format_ms(int8_ms) +
                          ") is not 1.1x faster than fp32 (" + format_ms(fp32_ms) + ")" + at_batch;
}

at::Tensor GraphPlan::run(const Plan& plan, const at::Tensor& input,
                          const ActivationSink* sink) const {
  std::vector<at::Tensor> values(static_cast<size_t>(plan.num_slots));
  at::Tensor x = input.to(at::kFloat);
  if (mean_.defined()) x = (x - mean_) / std_;
  if (sink != nullptr) (*sink)("input", x);
  values[static_cast<size_t>(plan.input_slot)] = std::move(x);
  std::vector<at::Tensor> args;
  for (const Step& step : plan.steps) {
    args.clear();
    for (int64_t s : step.inputs) args.push_back(values[static_cast<size_t>(s)]);
    at::Tensor out = step.run(args);
    if (sink != nullptr) (*sink)(step.value, out);
    values[static_cast<size_t>(step.output)] = std::move(out);
    for (int64_t s : step.release) values[static_cast<size_t>(s)] = at::Tensor();
  }
  return values[static_cast<size_t>(plan.output_slot)];
}

}  // namespace mcompress::runtime
