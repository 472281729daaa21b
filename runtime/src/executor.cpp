#include "mcompress/runtime/executor.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <iomanip>
#include <sstream>

#include "graph_plan.h"
#include "kernels.h"
#include "mcompress/core/enum_names.h"
#include "mcompress/core/error.h"
#include "timing.h"

namespace mcompress::runtime {
namespace {

bool is_batchnorm(LayerType t) {
  return t == LayerType::kBatchNorm1d || t == LayerType::kBatchNorm2d;
}

BatchNormStats batchnorm_stats(const Model& m, const std::string& prefix, double eps) {
  return {m.tensor(prefix + "weight"), m.tensor(prefix + "bias"), m.tensor(prefix + "running_mean"),
          m.tensor(prefix + "running_var"), eps};
}

AffineWeights layer_weights(const Model& m, const std::string& prefix, bool has_bias, int64_t out) {
  return {m.tensor(prefix + "weight"),
          has_bias ? m.tensor(prefix + "bias") : at::zeros({out}, at::kFloat)};
}

std::string layer_range(size_t first, size_t last) {
  return first == last ? std::to_string(first) : std::to_string(first) + "-" + std::to_string(last);
}

// Which of its kernels a unit runs.
enum class Choice { kFp32, kInt8, kSparse };

// One plan unit: a layer group with its fp32 dense kernel and, when the model has them, an
// int8 form and a sparse (fp32, Eigen CSR) form.
struct Unit {
  std::string layers, op, note;
  KernelPtr fp32;
  KernelPtr int8;
  KernelPtr sparse;
  std::string int8_kind;  // "int8-static" / "int8-dynamic"
  std::string in_key;     // activation feeding the unit (static int8 quantizes with it)
  std::string out_key;    // activation the unit produces ("" = passes its input's through)
  Choice choice = Choice::kFp32;
  double fp32_ms = 0, int8_ms = 0, sparse_ms = 0;

  bool has_alternative() const { return int8 || sparse; }
  const Kernel* kernel() const {
    return choice == Choice::kInt8     ? int8.get()
           : choice == Choice::kSparse ? sparse.get()
                                       : fp32.get();
  }
  // The faster fp32-domain kernel as timed: sparse or dense.
  Choice float_choice() const {
    return sparse && sparse_ms * kMinGain < fp32_ms ? Choice::kSparse : Choice::kFp32;
  }
};

void append_note(Unit& u, const std::string& note) {
  u.note = u.note.empty() ? note : u.note + "; " + note;
}

std::string format_fixed(double value, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << value;
  return s.str();
}

// A materialised plan: kernels in order, with quantize/dequantize steps where domains change.
struct Materialized {
  std::vector<const Kernel*> kernels;
  std::vector<KernelPtr> owned;  // the transition kernels
  std::vector<PlanStep> steps;
};

}  // namespace

constexpr std::array<EnumName<KernelPolicy>, 4> kKernelPolicies = {
    {{KernelPolicy::kAuto, "auto"},
     {KernelPolicy::kInt8, "int8"},
     {KernelPolicy::kFp32, "fp32"},
     {KernelPolicy::kSparse, "sparse"}}};

std::string to_string(KernelPolicy p) { return enum_to_string(kKernelPolicies, p); }
KernelPolicy parse_kernel_policy(const std::string& name) {
  return parse_enum<ConfigError>(kKernelPolicies, name, "kernel policy");
}

struct Executor::Impl {
  ArchSpec spec;                     // sequential models
  std::unique_ptr<GraphPlan> graph;  // graph models: the whole plan
  std::vector<int64_t> input_shape;
  int64_t num_classes = 0;
  ExecutorOptions options;
  KernelPtr normalize;
  std::vector<Unit> units;
  Materialized plan;
  std::string plan_note;

  // ---- building units ----

  void add(size_t first, size_t last, std::string op, KernelPtr kernel, std::string out_key,
           std::string note = {}) {
    Unit u;
    u.layers = layer_range(first, last);
    u.op = std::move(op);
    u.fp32 = std::move(kernel);
    u.out_key = std::move(out_key);
    u.note = std::move(note);
    units.push_back(std::move(u));
  }

  // The int8 form of a conv/linear unit, when the model's quantization state asks for one.
  void attach_int8(Unit& u, const Model& m, const std::string& weight_name, const AffineWeights& w,
                   bool conv, Conv2dGeometry g, bool relu) {
    const auto* stored = m.quant.find_int8(weight_name);
    if (stored == nullptr) return;  // kept fp32 (not quantized, or excluded by the guard)
    const bool folded = u.op.find("+bn") != std::string::npos;
    const auto qweight =
        quantize_weight_for_kernel(w.weight, folded ? nullptr : stored, stored->axis >= 0);
    if (m.quant.mode == "int8-dynamic") {
      if (conv) return;  // dynamic quantization covers Linear layers, as in PyTorch
      u.int8 = make_linear_dynamic_int8(qweight, w.bias, relu);
      u.int8_kind = "int8-dynamic";
    } else if (m.quant.mode == "int8-static") {
      const auto* out = m.quant.find_activation(u.out_key);
      if (out == nullptr || m.quant.find_activation(u.in_key) == nullptr) {
        u.note = "no calibrated qparams: fp32";
        return;
      }
      u.int8 = conv ? make_conv2d_static_int8(qweight, w.bias, g, relu, *out)
                    : make_linear_static_int8(qweight, w.bias, relu, *out);
      u.int8_kind = "int8-static";
    }
  }

  // The sparse form of a Linear unit whose weight (batchnorm folded) is sparse enough to be a
  // candidate; the note records the density either way, so the plan shows why.
  void attach_sparse(Unit& u, const AffineWeights& w, bool relu) {
    const double density = static_cast<double>(w.weight.ne(0).sum().item<int64_t>()) /
                           static_cast<double>(w.weight.numel());
    if (density >= 1.0) return;
    if (density > options.sparse_candidate_density) {
      append_note(u, "density " + format_fixed(density, 3) + " > sparse bound " +
                         format_fixed(options.sparse_candidate_density, 2));
      return;
    }
    u.sparse = make_linear_sparse_fp32(w, relu);
    append_note(u, "density " + format_fixed(density, 3));
  }

  void build_units(const Model& model) {
    const auto& layers = spec.layers;
    std::string key = "input";  // the activation flowing into the next unit
    for (size_t i = 0; i < layers.size(); ++i) {
      const LayerSpec& l = layers[i];
      const std::string p = std::to_string(i) + ".";
      const size_t before = units.size();
      if (l.type == LayerType::kLinear || l.type == LayerType::kConv2d) {
        // conv/linear [+ batchnorm] [+ relu] become one kernel: the batchnorm is folded into
        // the weights and the relu runs on the output (fused in the int8 ops).
        const bool conv = l.type == LayerType::kConv2d;
        const int64_t out = conv ? l.out_channels : l.out_features;
        auto w = layer_weights(model, p, l.bias, out);
        size_t last = i;
        std::string op = conv ? "conv2d" : "linear";
        if (last + 1 < layers.size() && is_batchnorm(layers[last + 1].type)) {
          ++last;
          w = fold_batchnorm(w,
                             batchnorm_stats(model, std::to_string(last) + ".", layers[last].eps));
          op += "+bn";
        }
        const bool relu = last + 1 < layers.size() && layers[last + 1].type == LayerType::kReLU;
        if (relu) {
          ++last;
          op += "+relu";
        }
        const Conv2dGeometry g{l.stride, l.padding, l.groups};
        add(i, last, op, conv ? make_conv2d_fp32(w, g, relu) : make_linear_fp32(w, relu),
            std::to_string(last), op.find("+bn") != std::string::npos ? "batchnorm folded" : "");
        units.back().in_key = key;
        attach_int8(units.back(), model, p + "weight", w, conv, g, relu);
        if (!conv) attach_sparse(units.back(), w, relu);
        i = last;
      } else {
        switch (l.type) {
          case LayerType::kBatchNorm1d:
          case LayerType::kBatchNorm2d: {
            const bool relu = i + 1 < layers.size() && layers[i + 1].type == LayerType::kReLU;
            const size_t last = i + (relu ? 1 : 0);
            add(i, last, relu ? "batchnorm+relu" : "batchnorm",
                make_channel_affine_fp32(batchnorm_stats(model, p, l.eps), relu),
                std::to_string(last));
            i = last;
            break;
          }
          case LayerType::kReLU:
            add(i, i, "relu", make_relu(), "");
            break;
          case LayerType::kMaxPool2d:
            add(i, i, "maxpool2d", make_max_pool2d(l.kernel_size, l.stride, l.padding), "");
            break;
          case LayerType::kAvgPool2d:
            add(i, i, "avgpool2d", make_avg_pool2d(l.kernel_size, l.stride, l.padding), "");
            break;
          case LayerType::kAdaptiveAvgPool2d:
            add(i, i, "adaptive_avgpool2d", make_adaptive_avg_pool2d(l.output_size), "");
            break;
          case LayerType::kFlatten:
            add(i, i, "flatten", make_flatten(), "");
            break;
          case LayerType::kDropout:
            break;  // identity at inference: no kernel
          case LayerType::kResidual:
            build_residual(model, l, i, key);
            break;
          default:
            throw ModelError("runtime: no kernel for layer " + std::to_string(i) + " (" +
                             to_string(l.type) + ")");
        }
      }
      if (units.size() > before) {
        units.back().in_key = units.back().in_key.empty() ? key : units.back().in_key;
        if (!units.back().out_key.empty()) key = units.back().out_key;
      }
    }
  }

  void build_residual(const Model& model, const LayerSpec& l, size_t i, const std::string& in_key) {
    const std::string p = std::to_string(i) + ".";
    const std::string k = std::to_string(i);
    auto fold = [&](const std::string& conv, const std::string& bn) {
      return fold_batchnorm(layer_weights(model, p + conv, false, l.out_channels),
                            batchnorm_stats(model, p + bn, 1e-5));
    };
    const auto w1 = fold("conv1.", "bn1."), w2 = fold("conv2.", "bn2.");
    AffineWeights ws;
    if (l.projection) ws = fold("shortcut.0.", "shortcut.1.");
    const Conv2dGeometry g1{l.stride, 1, 1}, g2{1, 1, 1}, gs{l.stride, 0, 1};
    add(i, i, l.projection ? "residual(projection)" : "residual",
        make_residual(make_conv2d_fp32(w1, g1, true), make_conv2d_fp32(w2, g2, false),
                      l.projection ? make_conv2d_fp32(ws, gs, false) : nullptr, k),
        k, "batchnorms folded");
    Unit& u = units.back();
    u.in_key = in_key;
    if (model.quant.mode != "int8-static" || model.quant.find_int8(p + "conv1.weight") == nullptr) {
      return;
    }
    const std::vector<std::string> keys = {in_key, k, k + ".conv1", k + ".conv2"};
    for (const auto& key : keys) {
      if (model.quant.find_activation(key) == nullptr) return;
    }
    if (l.projection && model.quant.find_activation(k + ".shortcut") == nullptr) return;
    auto q = [&](const AffineWeights& w) {
      return quantize_weight_for_kernel(w.weight, nullptr, true);
    };
    u.int8 = make_residual_int8(
        make_conv2d_static_int8(q(w1), w1.bias, g1, true,
                                *model.quant.find_activation(k + ".conv1")),
        make_conv2d_static_int8(q(w2), w2.bias, g2, false,
                                *model.quant.find_activation(k + ".conv2")),
        l.projection ? make_conv2d_static_int8(q(ws), ws.bias, gs, false,
                                               *model.quant.find_activation(k + ".shortcut"))
                     : nullptr,
        *model.quant.find_activation(k));
    u.int8_kind = "int8-static";
  }

  // ---- choosing and materialising ----

  Materialized materialize(const Model& model) const {
    Materialized m;
    bool quantized = false;
    std::string key = "input";
    auto transition = [&](KernelPtr k, const std::string& op, const std::string& note) {
      m.kernels.push_back(k.get());
      m.owned.push_back(std::move(k));
      m.steps.push_back({"", op, "convert", note, 0, 0, 0});
    };
    for (const auto& u : units) {
      const Kernel* k = u.kernel();
      if (k->domain() == Domain::kQuant && !quantized) {
        transition(make_quantize(*model.quant.find_activation(key)), "quantize",
                   "quint8 (" + key + ")");
        quantized = true;
      } else if (k->domain() == Domain::kFloat && quantized) {
        transition(make_dequantize(), "dequantize", "");
        quantized = false;
      }
      m.kernels.push_back(k);
      // Pools, relu and flatten run on whatever flows in; say which.
      const std::string kind = u.choice == Choice::kInt8                  ? u.int8_kind
                               : u.choice == Choice::kSparse              ? "fp32-sparse"
                               : k->domain() == Domain::kAny && quantized ? "int8-passthrough"
                                                                          : "fp32-dense";
      m.steps.push_back({u.layers, u.op, kind, u.note, u.fp32_ms, u.int8_ms, u.sparse_ms});
      if (!u.out_key.empty()) key = u.out_key;
    }
    if (quantized) transition(make_dequantize(), "dequantize", "logits");
    return m;
  }

  at::Tensor run(const Materialized& m, const at::Tensor& input) const {
    auto x = normalize->run(input.to(at::kFloat));
    for (const auto* kernel : m.kernels) x = kernel->run(x);
    return x;
  }

  // Times each unit's kernels on the activations a real batch produces there, and chooses the
  // fastest per unit.
  void time_units(const Model& model) {
    std::vector<int64_t> shape{options.batch_size};
    for (auto d : spec.input_shape) shape.push_back(d);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(12345);
    auto x = normalize->run(at::rand(shape, gen, at::kFloat));
    for (auto& u : units) {
      if (u.has_alternative()) {
        u.fp32_ms = best_ms([&] { return u.fp32->run(x); });
        if (u.sparse) u.sparse_ms = best_ms([&] { return u.sparse->run(x); });
        u.choice = u.float_choice();
        if (u.int8 && u.int8->domain() == Domain::kQuant) {
          const auto* q = model.quant.find_activation(u.in_key);
          const auto xq = at::quantize_per_tensor(x, q->scale, q->zero_point, at::kQUInt8);
          u.int8_ms = best_ms([&] { return u.int8->run(xq); });
        } else if (u.int8) {
          u.int8_ms = best_ms([&] { return u.int8->run(x); });
        }
        const double float_ms = u.choice == Choice::kSparse ? u.sparse_ms : u.fp32_ms;
        if (u.int8 && u.int8_ms * kMinGain < float_ms) u.choice = Choice::kInt8;
      }
      x = u.fp32->run(x);
    }
  }

  void compile(const Model& model) {
    if (!model.is_sequential()) {
      graph = std::make_unique<GraphPlan>(model, options);
      plan.steps = graph->steps();
      plan_note = graph->plan_note();
      input_shape = graph->input_shape();
      num_classes = graph->num_classes();
      return;
    }
    spec = model.spec();
    input_shape = spec.input_shape;
    num_classes = spec.num_classes;
    const auto channels = static_cast<int64_t>(spec.input_shape[0]);
    auto expand = [&](const std::vector<double>& v) {
      auto t = at::tensor(v, at::kFloat);
      return v.size() == 1 ? t.expand({channels}).contiguous() : t;
    };
    normalize = make_normalize_fp32(expand(spec.mean), expand(spec.std));
    const bool int8_mode = model.quant.mode == "int8-static" || model.quant.mode == "int8-dynamic";
    if (int8_mode) ensure_quantized_engine();
    build_units(model);
    const bool any_alternative =
        std::any_of(units.begin(), units.end(), [](const Unit& u) { return u.has_alternative(); });
    if (!any_alternative || options.policy == KernelPolicy::kFp32) {
      plan = materialize(model);
      return;
    }
    if (options.policy == KernelPolicy::kInt8 || options.policy == KernelPolicy::kSparse) {
      const bool int8 = options.policy == KernelPolicy::kInt8;
      for (auto& u : units) {
        u.choice = int8 ? (u.int8 ? Choice::kInt8 : Choice::kFp32)
                        : (u.sparse ? Choice::kSparse : Choice::kFp32);
      }
      plan = materialize(model);
      return;
    }
    choose_auto(model);
  }

  // Auto: per-unit timing, then a whole-model check of the candidate plans: quantize and
  // dequantize steps cost time too, so the fastest whole plan wins and the result is never
  // slower than fp32 dense at the deployment batch size (fp32 wins ties). Sparse kernels run
  // in the fp32 domain, so the float-only plan (sparse where faster) needs no conversions.
  void choose_auto(const Model& model) {
    time_units(model);
    struct Candidate {
      std::string name;
      std::vector<Choice> choice;
    };
    std::vector<Candidate> candidates = {
        {"per-layer", {}}, {"all-int8", {}}, {"float-only", {}}, {"fp32", {}}};
    for (const auto& u : units) {
      candidates[0].choice.push_back(u.choice);
      candidates[1].choice.push_back(u.int8 ? Choice::kInt8 : u.float_choice());
      candidates[2].choice.push_back(u.float_choice());
      candidates[3].choice.push_back(Choice::kFp32);
    }
    std::vector<int64_t> shape{options.batch_size};
    for (auto d : spec.input_shape) shape.push_back(d);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(54321);
    const auto x = at::rand(shape, gen, at::kFloat);
    // Each distinct plan is timed once; the fp32 plan is last so it is never skipped.
    std::vector<double> ms(candidates.size(), -1.0);
    for (size_t c = 0; c < candidates.size(); ++c) {
      bool repeated = false;
      for (size_t d = c + 1; d < candidates.size(); ++d)
        repeated |= candidates[d].choice == candidates[c].choice;
      if (repeated) continue;
      set_choices(candidates[c].choice);
      const Materialized m = materialize(model);
      ms[c] = best_ms([&] { return run(m, x); });
    }
    // fp32 first, then each plan in a fixed order replaces the pick only when kMinGain faster,
    // so plans within noise of each other cannot swap between runs.
    const size_t fp32 = candidates.size() - 1;
    size_t best = fp32;
    for (size_t c : {size_t{1}, size_t{2}, size_t{0}}) {  // all-int8, float-only, per-layer
      if (ms[c] >= 0 && ms[c] * kMinGain < ms[best]) best = c;
    }
    size_t runner_up = fp32;  // the best non-fp32 plan, for the note
    for (size_t c = 0; c < fp32; ++c) {
      if (ms[c] >= 0 && (runner_up == fp32 || ms[c] < ms[runner_up])) runner_up = c;
    }
    set_choices(candidates[best].choice);
    plan = materialize(model);
    const std::string at_batch = " at batch " + std::to_string(options.batch_size);
    if (best == fp32 && runner_up == fp32) {
      plan_note =
          "auto: fp32 everywhere; every layer was fastest on its fp32 dense kernel" + at_batch;
    } else if (best == fp32) {
      plan_note = "auto: fp32 everywhere; the " + candidates[runner_up].name + " plan (" +
                  format_ms(ms[runner_up]) + ") is not 1.1x faster than fp32 (" +
                  format_ms(ms[fp32]) + ")" + at_batch;
    } else {
      plan_note = "auto: " + candidates[best].name + " plan " + format_ms(ms[best]) + " vs fp32 " +
                  format_ms(ms[fp32]) + at_batch;
    }
  }

  void set_choices(const std::vector<Choice>& choice) {
    for (size_t i = 0; i < units.size(); ++i) units[i].choice = choice[i];
  }
  static std::string format_ms(double ms) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(3) << ms << " ms";
    return s.str();
  }
};

Executor::Executor(const Model& model, const ExecutorOptions& options)
    : impl_(std::make_unique<Impl>()) {
  MCOMPRESS_CHECK(options.batch_size >= 1, ConfigError, "deployment batch size must be >= 1, got ",
                  options.batch_size);
  impl_->options = options;
  impl_->compile(model);
}

Executor::~Executor() = default;
Executor::Executor(Executor&&) noexcept = default;
Executor& Executor::operator=(Executor&&) noexcept = default;

const std::vector<PlanStep>& Executor::plan() const { return impl_->plan.steps; }
const std::vector<int64_t>& Executor::input_shape() const { return impl_->input_shape; }
int64_t Executor::num_classes() const { return impl_->num_classes; }
const std::string& Executor::plan_note() const { return impl_->plan_note; }

int64_t Executor::int8_layers() const {
  int64_t n = 0;
  for (const auto& s : impl_->plan.steps)
    n += s.kernel == "int8-static" || s.kernel == "int8-dynamic";
  return n;
}

int64_t Executor::sparse_layers() const {
  int64_t n = 0;
  for (const auto& s : impl_->plan.steps) n += s.kernel == "fp32-sparse";
  return n;
}

static void check_input(const std::vector<int64_t>& shape, const at::Tensor& input) {
  MCOMPRESS_CHECK(input.dim() == static_cast<int64_t>(shape.size()) + 1 &&
                      input.sizes().slice(1).vec() == shape,
                  ModelError, "input has shape ", shape_to_string(input.sizes().vec()),
                  ", the model expects [N, ", shape_to_string(shape).substr(1));
}

at::Tensor Executor::run(const at::Tensor& input) const {
  check_input(impl_->input_shape, input);
  at::NoGradGuard no_grad;
  if (impl_->graph) return impl_->graph->run(input);
  return impl_->run(impl_->plan, input);
}

at::Tensor Executor::run_observed(
    const at::Tensor& input,
    const std::function<void(const std::string&, const at::Tensor&)>& sink) const {
  check_input(impl_->input_shape, input);
  at::NoGradGuard no_grad;
  if (impl_->graph) return impl_->graph->run_observed(input, sink);
  auto x = impl_->normalize->run(input.to(at::kFloat));
  sink("input", x);
  for (const auto& u : impl_->units) {
    x = u.fp32->run_observed(x, sink);
    if (!u.out_key.empty()) sink(u.out_key, x);
  }
  return x;
}

}  // namespace mcompress::runtime
