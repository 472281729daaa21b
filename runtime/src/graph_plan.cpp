#include "graph_plan.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <iomanip>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>

#include "mcompress/core/error.h"
#include "mcompress/core/graph_network.h"
#include "mcompress/core/int8_steps.h"
#include "mcompress/core/kernel_weights.h"
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

std::string format_fixed(double value, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << value;
  return s.str();
}

std::string format_ms(double ms) { return format_fixed(ms, 3) + " ms"; }

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
  if (more.empty()) return;
  note = note.empty() ? more : note + "; " + more;
}

// Compiles lowered steps into kernels, fp32 or int8, with the model's weights.
class StepCompiler {
 public:
  explicit StepCompiler(const Model& model)
      : model_(model), graph_(model.graph()), info_(graph_.analyze()) {
    for (const GraphParam& p : info_.params) {
      params_[p.node][p.spec.role] = model.tensor(p.name);
    }
  }

  const Graph& graph() const { return graph_; }
  const GraphInfo& info() const { return info_; }

  // The step on fp32 kernels: batchnorm folded into a Conv/Gemm's weights, a fused Relu applied
  // in place on the step's output.
  Compiled fp32(const LoweredStep& s) const {
    const Node& anchor = graph_.nodes[s.nodes.front()];
    const json& anchor_attrs = info_.attrs[s.nodes.front()];
    if (s.nodes.size() == 1) {
      return {inference_kernel(anchor, anchor_attrs, params_of(anchor), info_),
              passes_quint8_through(graph_, info_, s) ? Form::kAny : Form::kFloat, "", ""};
    }
    Compiled c;
    std::map<std::string, at::Tensor> params = params_of(anchor);
    json attrs = anchor_attrs;
    if (anchor.op != "BatchNormalization" && s.find(graph_, "BatchNormalization") >= 0) {
      const FoldedWeights w = folded_weights(model_, info_, s);
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

  // The step's int8 kernel in the form int8_steps() decided (kStatic or kDynamic).
  Compiled int8(const LoweredStep& s, Int8Form form) const {
    const Node& anchor = graph_.nodes[s.nodes.front()];
    const json& attrs = info_.attrs[s.nodes.front()];
    const bool relu = s.find(graph_, "Relu") >= 0;
    if (anchor.op == "Add") {
      return {make_add_int8(relu, *find_qparams(model_, s.output)), Form::kQuant, "int8-static",
              ""};
    }
    if (anchor.op == "Concat") {
      int64_t axis = attrs.at("axis").get<int64_t>();
      if (axis < 0) axis += static_cast<int64_t>(info_.values.at(s.output).shape.size());
      return {make_concat_int8(axis, *find_qparams(model_, s.output)), Form::kQuant, "int8-static",
              ""};
    }
    const Int8StepWeights w = int8_step_weights(model_, info_, s);
    if (form == Int8Form::kDynamic) {
      return {single_input(make_linear_dynamic_int8(w.qweight, w.bias, relu)), Form::kFloat,
              "int8-dynamic", ""};
    }
    const ActivationQParams& out = *find_qparams(model_, s.output);
    if (anchor.op == "Gemm") {
      return {single_input(make_linear_static_int8(w.qweight, w.bias, relu, out)), Form::kQuant,
              "int8-static", ""};
    }
    const Conv2dGeometry g{ints_or(attrs, "strides", {1, 1})[0],
                           ints_or(attrs, "pads", {0, 0, 0, 0})[0],
                           attrs.at("group").get<int64_t>()};
    return {single_input(make_conv2d_static_int8(w.qweight, w.bias, g, relu, out)), Form::kQuant,
            "int8-static", ""};
  }

  // The sparse form of a Gemm step on 2-D inputs whose weight (batchnorm folded) has at most
  // `bound` non-zeros; `note` records the density either way, so the plan shows why.
  std::optional<Compiled> sparse(const LoweredStep& s, double bound, std::string& note) const {
    const Node& anchor = graph_.nodes[s.nodes.front()];
    if (anchor.op != "Gemm" || info_.values.at(anchor.inputs[0]).shape.size() != 2) {
      return std::nullopt;
    }
    const FoldedWeights w = folded_weights(model_, info_, s);
    const double density = static_cast<double>(w.weight.ne(0).sum().item<int64_t>()) /
                           static_cast<double>(w.weight.numel());
    if (density >= 1.0) return std::nullopt;
    if (density > bound) {
      append(note,
             "density " + format_fixed(density, 3) + " > sparse bound " + format_fixed(bound, 2));
      return std::nullopt;
    }
    append(note, "density " + format_fixed(density, 3));
    return Compiled{single_input(make_linear_sparse_fp32(w, s.find(graph_, "Relu") >= 0)),
                    Form::kFloat, "fp32-sparse", ""};
  }

 private:
  const std::map<std::string, at::Tensor>& params_of(const Node& node) const {
    static const std::map<std::string, at::Tensor> kNone;
    const auto it = params_.find(node.name);
    return it == params_.end() ? kNone : it->second;
  }

  const Model& model_;
  const Graph& graph_;
  GraphInfo info_;
  std::map<std::string, std::map<std::string, at::Tensor>> params_;
};

// Assembles a Plan from compiled steps: value slots, the quantize and dequantize steps where
// domains change (one per value and direction, shared by its readers), and release lists.
class PlanBuilder {
 public:
  PlanBuilder(const Model& model, const std::map<std::string, std::string>& calibration_keys,
              GraphPlan::Plan& plan)
      : model_(model), calibration_keys_(calibration_keys), plan_(plan) {
    plan_.input_slot = slot_of(model.graph().inputs[0].name);
  }

  void add(const Graph& graph, const LoweredStep& lowered, const Compiled& c,
           const PlanStep& times = {}) {
    const Node& anchor = graph.nodes[lowered.nodes.front()];
    if (anchor.op == "Dropout" || anchor.op == "Identity") {
      slots_[lowered.output] = slot_of(anchor.inputs.at(0));  // identities at inference: no step
      return;
    }
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
    step.observed = c.form != Form::kAny;  // see calibration_keys()
    if (quant) quantized_.insert(step.output);
    const std::string kind = !c.kind.empty()                 ? c.kind
                             : quant && c.form == Form::kAny ? "int8-passthrough"
                                                             : "fp32-dense";
    push(std::move(step), {node_range(graph, lowered), lowered.op, kind, c.note, times.fp32_ms,
                           times.int8_ms, times.sparse_ms});
  }

  void finish(const std::string& output) {
    const size_t before = plan_.steps.size();
    plan_.output_slot = in_domain(slot_of(output), false);
    if (plan_.steps.size() > before) plan_.shown.back().note = "logits";
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
    const auto key = calibration_keys_.find(value);
    keys_[plan_.num_slots] = key == calibration_keys_.end() ? value : key->second;
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
      const ActivationQParams q = *find_qparams(model_, key_of(slot));
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
  const std::map<std::string, std::string>& calibration_keys_;
  GraphPlan::Plan& plan_;
  std::map<std::string, int64_t> slots_;
  std::map<int64_t, std::string> keys_;  // slot -> calibration key of its value
  std::set<int64_t> quantized_;          // slots holding quint8 tensors
  std::map<int64_t, int64_t> quantized_copy_, float_copy_;
};

// Which of its forms a step runs.
enum class Choice { kFp32, kInt8, kSparse };

// A lowered step's kernel forms and, under the auto policy, their timings.
struct StepForms {
  Compiled fp32;
  std::optional<Compiled> int8, sparse;
  std::string note;  // shown whichever form runs: folding, weight density, why not int8
  double fp32_ms = 0, int8_ms = 0, sparse_ms = 0;

  bool has_alternative() const { return int8 || sparse; }
  // The faster fp32-domain form as timed: sparse or dense.
  Choice float_choice() const {
    return sparse && sparse_ms * kMinGain < fp32_ms ? Choice::kSparse : Choice::kFp32;
  }
  Choice fastest() const {
    const Choice f = float_choice();
    const double float_ms = f == Choice::kSparse ? sparse_ms : fp32_ms;
    return int8 && int8_ms * kMinGain < float_ms ? Choice::kInt8 : f;
  }
  Compiled form(Choice c) const {
    Compiled out = c == Choice::kInt8 ? *int8 : c == Choice::kSparse ? *sparse : fp32;
    out.note = note;
    return out;
  }
};

// Times each form of every step that has an alternative on the inputs the fp32 steps produce
// from the preprocessed `input` (quantized with their calibrated qparams for a quint8 form).
void time_steps(const Model& model, const std::vector<LoweredStep>& lowered,
                const std::map<std::string, std::string>& keys, const at::Tensor& input,
                std::vector<StepForms>& forms) {
  const Graph& graph = model.graph();
  std::map<std::string, int> readers;  // steps still to read each value
  for (const LoweredStep& s : lowered) {
    for (const std::string& in : graph.nodes[s.nodes.front()].inputs) ++readers[in];
  }
  std::map<std::string, at::Tensor> values;
  values[graph.inputs[0].name] = input;
  for (size_t i = 0; i < lowered.size(); ++i) {
    const Node& anchor = graph.nodes[lowered[i].nodes.front()];
    std::vector<at::Tensor> args;
    for (const std::string& in : anchor.inputs) args.push_back(values.at(in));
    StepForms& f = forms[i];
    if (f.has_alternative()) {
      f.fp32_ms = best_ms([&] { return f.fp32.run(args); });
      if (f.sparse) f.sparse_ms = best_ms([&] { return f.sparse->run(args); });
      if (f.int8 && f.int8->form == Form::kQuant) {
        std::vector<at::Tensor> quantized;
        for (size_t k = 0; k < args.size(); ++k) {
          const ActivationQParams* q = find_qparams(model, keys.at(anchor.inputs[k]));
          quantized.push_back(
              at::quantize_per_tensor(args[k], q->scale, q->zero_point, at::kQUInt8));
        }
        f.int8_ms = best_ms([&] { return f.int8->run(quantized); });
      } else if (f.int8) {
        f.int8_ms = best_ms([&] { return f.int8->run(args); });
      }
    }
    values[lowered[i].output] = f.fp32.run(args);
    for (const std::string& in : anchor.inputs) {
      if (--readers[in] == 0) values.erase(in);
    }
  }
}

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
    inv_std_ = per_channel(graph.preprocess.std, input.shape.size()).reciprocal();
  }

  // Every step's forms: fp32 always; int8 where the model is int8 and the policy may use it;
  // sparse where a Gemm's weight is sparse enough and the policy may use it.
  const KernelPolicy policy = options.policy;
  const bool int8_model = model.quant.mode == "int8-static" || model.quant.mode == "int8-dynamic";
  const bool want_int8 =
      int8_model && (policy == KernelPolicy::kAuto || policy == KernelPolicy::kInt8);
  const bool want_sparse = policy == KernelPolicy::kAuto || policy == KernelPolicy::kSparse;
  if (want_int8) ensure_quantized_engine();
  const StepCompiler compiler(model);
  const std::vector<LoweredStep> lowered = lower(graph);
  std::vector<StepForms> forms(lowered.size());
  for (size_t i = 0; i < lowered.size(); ++i) {
    forms[i].fp32 = compiler.fp32(lowered[i]);
    forms[i].note = forms[i].fp32.note;
  }
  const GraphInfo& info = compiler.info();
  const auto keys = calibration_keys(graph, info, lowered);
  const std::vector<Int8Step> int8 =
      want_int8 ? int8_steps(model, info, lowered, keys) : std::vector<Int8Step>{};
  for (size_t i = 0; i < lowered.size(); ++i) {
    StepForms& f = forms[i];
    if (want_sparse)
      f.sparse = compiler.sparse(lowered[i], options.sparse_candidate_density, f.note);
    if (!want_int8) continue;
    if (int8[i].form == Int8Form::kStatic || int8[i].form == Int8Form::kDynamic) {
      f.int8 = compiler.int8(lowered[i], int8[i].form);
    }
    append(f.note, int8[i].why_not);
  }

  auto build = [&](const std::vector<Choice>& choice, Plan& plan) {
    plan = Plan{};
    PlanBuilder builder(model, keys, plan);
    for (size_t i = 0; i < lowered.size(); ++i) {
      builder.add(graph, lowered[i], forms[i].form(choice[i]),
                  {"", "", "", "", forms[i].fp32_ms, forms[i].int8_ms, forms[i].sparse_ms});
    }
    builder.finish(graph.outputs[0]);
  };
  const std::vector<Choice> all_fp32(lowered.size(), Choice::kFp32);
  build(all_fp32, fp32_);
  const bool any_alternative = std::any_of(forms.begin(), forms.end(),
                                           [](const StepForms& f) { return f.has_alternative(); });
  if (!any_alternative || policy == KernelPolicy::kFp32) return;
  if (policy != KernelPolicy::kAuto) {
    std::vector<Choice> choice;
    for (const StepForms& f : forms) {
      choice.push_back(f.int8 ? Choice::kInt8 : f.sparse ? Choice::kSparse : Choice::kFp32);
    }
    build(choice, chosen_);
    use_chosen_ = true;
    return;
  }

  // Auto: every form of every step timed on the activations a real batch produces there, then
  // the candidate plans timed whole (quantize and dequantize steps cost time too). fp32 is the
  // baseline, and each plan in a fixed order replaces the pick only when kMinGain faster, so
  // that plans within noise of each other cannot swap from run to run; the result is never
  // slower than fp32 at the deployment batch size.
  std::vector<int64_t> shape{options.batch_size};
  shape.insert(shape.end(), input_shape_.begin(), input_shape_.end());
  at::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(12345);
  const at::Tensor sample = at::rand(shape, gen, at::kFloat);
  time_steps(model, lowered, keys, preprocess(sample), forms);
  struct Candidate {
    std::string name;
    std::vector<Choice> choice;
  };
  std::vector<Candidate> candidates = {
      {"per-step", {}}, {"all-int8", {}}, {"float-only", {}}, {"fp32", all_fp32}};
  for (const StepForms& f : forms) {
    candidates[0].choice.push_back(f.fastest());
    candidates[1].choice.push_back(f.int8 ? Choice::kInt8 : f.float_choice());
    candidates[2].choice.push_back(f.float_choice());
  }
  gen = at::make_generator<at::CPUGeneratorImpl>(54321);
  const at::Tensor x = at::rand(shape, gen, at::kFloat);
  // Each distinct plan is timed once; the fp32 plan is last so it is never skipped.
  std::vector<double> ms(candidates.size(), -1.0);
  for (size_t c = 0; c < candidates.size(); ++c) {
    bool repeated = false;
    for (size_t d = c + 1; d < candidates.size(); ++d)
      repeated |= candidates[d].choice == candidates[c].choice;
    if (repeated) continue;
    Plan plan;
    build(candidates[c].choice, plan);
    ms[c] = best_ms([&] { return run(plan, x, nullptr); });
  }
  const size_t fp32 = candidates.size() - 1;
  size_t best = fp32;
  for (size_t c : {size_t{1}, size_t{2}, size_t{0}}) {  // all-int8, float-only, per-step
    if (ms[c] >= 0 && ms[c] * kMinGain < ms[best]) best = c;
  }
  size_t runner_up = fp32;  // the fastest other plan, for the note
  for (size_t c = 0; c < fp32; ++c) {
    if (ms[c] >= 0 && (runner_up == fp32 || ms[c] < ms[runner_up])) runner_up = c;
  }
  build(candidates[best].choice, chosen_);
  use_chosen_ = true;
  const std::string at_batch = " at batch " + std::to_string(options.batch_size);
  if (best == fp32 && runner_up == fp32) {
    note_ = "auto: fp32 everywhere; every step was fastest on its fp32 dense kernel" + at_batch;
  } else if (best == fp32) {
    note_ = "auto: fp32 everywhere; the " + candidates[runner_up].name + " plan (" +
            format_ms(ms[runner_up]) + ") is not 1.1x faster than fp32 (" + format_ms(ms[fp32]) +
            ")" + at_batch;
  } else {
    note_ = "auto: " + candidates[best].name + " plan " + format_ms(ms[best]) + " vs fp32 " +
            format_ms(ms[fp32]) + at_batch;
  }
}

at::Tensor GraphPlan::preprocess(const at::Tensor& x) const {
  // A multiply by the reciprocal, as the runtime has always normalised: files evaluated before
  // the graph runtime give the same logits to the bit (a division differs in the last bit).
  return mean_.defined() ? (x - mean_) * inv_std_ : x;
}

at::Tensor GraphPlan::run(const Plan& plan, const at::Tensor& input,
                          const ActivationSink* sink) const {
  std::vector<at::Tensor> values(static_cast<size_t>(plan.num_slots));
  at::Tensor x = preprocess(input.to(at::kFloat));
  if (sink != nullptr) (*sink)("input", x);
  values[static_cast<size_t>(plan.input_slot)] = std::move(x);
  std::vector<at::Tensor> args;
  for (const Step& step : plan.steps) {
    args.clear();
    for (int64_t s : step.inputs) args.push_back(values[static_cast<size_t>(s)]);
    at::Tensor out = step.run(args);
    if (sink != nullptr && step.observed) (*sink)(step.value, out);
    values[static_cast<size_t>(step.output)] = std::move(out);
    for (int64_t s : step.release) values[static_cast<size_t>(s)] = at::Tensor();
  }
  return values[static_cast<size_t>(plan.output_slot)];
}

}  // namespace mcompress::runtime
