#include "mcompress/interop/torchscript.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/script.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <sstream>

#include "isolated_call.h"
#include "mcompress/core/atomic_file.h"
#include "mcompress/core/error.h"
#include "mcompress/core/graph_network.h"
#include "script_checks.h"

namespace mcompress::interop {
namespace {

using torch::jit::Module;
using json = nlohmann::json;

std::string torch_message(const c10::Error& e) { return first_line(e.what_without_backtrace()); }

std::string display_path(const std::string& path) { return path.empty() ? "(top)" : path; }

// "__torch__.torch.nn.modules.container.___torch_mangle_0.Sequential" ->
// "torch.nn.modules.container.Sequential": TorchScript mangles a class name when two module
// types of one compilation unit share it (e.g. two Sequentials with different children).
std::string normalized_type(const Module& m) {
  std::string out;
  std::istringstream parts(m.type()->name()->qualifiedName());
  std::string part;
  while (std::getline(parts, part, '.')) {
    if (part == "__torch__" || part.rfind("___torch_mangle_", 0) == 0) continue;
    out += (out.empty() ? "" : ".") + part;
  }
  return out;
}

std::string class_name(const std::string& type) {
  const auto dot = type.rfind('.');
  return dot == std::string::npos ? type : type.substr(dot + 1);
}

// ---------------------------------------------------------------------------------------------
// Import: walks the module tree in registration order and collects spec layers and tensors.

class TreeReader {
 public:
  TreeReader(std::string file, bool spatial_input)
      : file_(std::move(file)), spatial_(spatial_input) {}

  // Reads `m` (at `path`, "" for the top) and everything below it.
  void read(const Module& m, const std::string& path) {
    const std::string type = normalized_type(m);
    const std::string cls = class_name(type);
    const bool torch_nn = type.rfind("torch.nn.modules.", 0) == 0;
    const bool ours = type.rfind("mcompress.", 0) == 0;
    if ((torch_nn || ours) && (cls == "Sequential" || cls == "ModuleList")) {
      read_children(m, path);
    } else if (ours && cls == "Model") {
      read_children(m, path);
    } else if (ours && cls == "Residual") {
      read_residual(m, path);
    } else if (torch_nn || ours) {
      read_layer(m, path, cls);
    } else if (type.rfind("torch.", 0) == 0) {
      unsupported(path, cls, "");
    } else {
      // A user-defined module: a container whose forward chains its children (the forward
      // check confirms it); tensors of its own would be used in ways a chain cannot express.
      const bool own_tensors =
          m.named_parameters(false).size() > 0 || m.named_buffers(false).size() > 0;
      if (own_tensors) unsupported(path, cls, " (it has parameters or buffers of its own)");
      if (m.named_children().size() == 0) unsupported(path, cls, "");
      read_children(m, path);
    }
  }

  std::vector<LayerSpec>& layers() { return layers_; }
  std::vector<std::string>& sources() { return sources_; }
  std::map<std::string, at::Tensor>& tensors() { return tensors_; }
  // Output size of the last Linear layer (0: none).
  int64_t last_linear_outputs() const { return last_linear_outputs_; }

 private:
  [[noreturn]] void unsupported(const std::string& path, const std::string& cls,
                                const std::string& why) const {
    throw ModelError(file_ + ": unsupported module '" + display_path(path) + "' of type " + cls +
                     why);
  }

  void read_children(const Module& m, const std::string& path) {
    for (const auto& child : m.named_children()) {
      read(child.value, path.empty() ? child.name : path + "." + child.name);
    }
  }

  // A layer setting: a constant (scripted torch.nn) or an attribute (our exports).
  c10::IValue setting(const Module& m, const std::string& path, const std::string& cls,
                      const std::string& name) const {
    MCOMPRESS_CHECK(m.hasattr(name), ModelError, file_, ": module '", display_path(path),
                    "' of type ", cls, " has no '", name,
                    "' setting (traced modules do not keep layer settings; save the model with "
                    "torch.jit.script)");
    return m.attr(name);
  }

  int64_t int_setting(const Module& m, const std::string& path, const std::string& cls,
                      const std::string& name) const {
    const auto v = setting(m, path, cls, name);
    MCOMPRESS_CHECK(v.isInt(), ModelError, file_, ": module '", display_path(path), "' of type ",
                    cls, ": '", name, "' is not an integer");
    return v.toInt();
  }

  // An int or an (a, a) pair, as torch.nn stores kernel_size, stride, padding, dilation.
  int64_t square_setting(const Module& m, const std::string& path, const std::string& cls,
                         const std::string& name) const {
    const auto v = setting(m, path, cls, name);
    std::vector<int64_t> values;
    if (v.isInt()) {
      values = {v.toInt()};
    } else if (v.isIntList()) {
      values = v.toIntVector();
    } else if (v.isTuple()) {
      for (const auto& e : v.toTupleRef().elements()) {
        if (!e.isInt()) unsupported(path, cls, " with " + name + " " + show(v));
        values.push_back(e.toInt());
      }
    }
    if (values.empty() || values.size() > 2 || values.front() != values.back()) {
      unsupported(path, cls, " with " + name + " " + show(v) + " (only square values are)");
    }
    return values.front();
  }

  // A boolean setting, or `fallback` when the module does not store it.
  static bool bool_setting(const Module& m, const std::string& name, bool fallback) {
    if (!m.hasattr(name)) return fallback;
    const auto v = m.attr(name);
    return v.isBool() ? v.toBool() : fallback;
  }

  static std::string show(const c10::IValue& v) {
    std::ostringstream out;
    out << v;
    return out.str();
  }

  // A float32 copy of tensor attribute `name`; undefined when it is None or absent and
  // `optional`.
  at::Tensor tensor(const Module& m, const std::string& path, const std::string& cls,
                    const std::string& name, bool optional = false) const {
    const c10::IValue v = m.hasattr(name) ? m.attr(name) : c10::IValue();
    if (v.isNone() && optional) return {};
    MCOMPRESS_CHECK(v.isTensor(), ModelError, file_, ": module '", display_path(path), "' of type ",
                    cls, " has no tensor '", name, "'");
    const at::Tensor t = v.toTensor();
    MCOMPRESS_CHECK(t.is_floating_point(), ModelError, file_, ": tensor '", path, ".", name,
                    "' is ", t.dtype().name(), ", expected floating point");
    return t.detach().to(at::kFloat).contiguous().clone();
  }

  void add_layer(LayerSpec layer, const std::string& path) {
    layers_.push_back(layer);
    sources_.push_back(display_path(path));
  }
  std::string prefix() const { return std::to_string(layers_.size()) + "."; }

  void read_layer(const Module& m, const std::string& path, const std::string& cls) {
    LayerSpec l;
    if (cls == "Identity") return;
    if (cls == "Linear") {
      if (spatial_) {
        // x.view(N, -1) / torch.flatten(x, 1) in a user's forward: no module of its own.
        LayerSpec flatten;
        flatten.type = LayerType::kFlatten;
        layers_.push_back(flatten);
        sources_.push_back("(implicit)");
        spatial_ = false;
      }
      const std::string p = prefix();
      const at::Tensor w = tensor(m, path, cls, "weight");
      const at::Tensor b = tensor(m, path, cls, "bias", true);
      l.type = LayerType::kLinear;
      l.in_features = w.size(1);
      l.out_features = w.size(0);
      l.bias = b.defined();
      tensors_[p + "weight"] = w;
      if (b.defined()) tensors_[p + "bias"] = b;
      last_linear_outputs_ = l.out_features;
    } else if (cls == "Conv2d") {
      const std::string p = prefix();
      const at::Tensor w = tensor(m, path, cls, "weight");
      const at::Tensor b = tensor(m, path, cls, "bias", true);
      if (w.dim() != 4 || w.size(2) != w.size(3)) {
        unsupported(path, cls, " with a non-square kernel");
      }
      const auto mode = setting(m, path, cls, "padding_mode");
      if (!mode.isString() || mode.toStringRef() != "zeros") {
        unsupported(path, cls, " with padding_mode " + show(mode));
      }
      if (square_setting(m, path, cls, "dilation") != 1) {
        unsupported(path, cls, " with dilation != 1");
      }
      l.type = LayerType::kConv2d;
      l.groups = int_setting(m, path, cls, "groups");
      l.in_channels = w.size(1) * l.groups;
      l.out_channels = w.size(0);
      l.kernel_size = w.size(2);
      l.stride = square_setting(m, path, cls, "stride");
      const auto padding = setting(m, path, cls, "padding");
      if (padding.isString()) {
        // padding="valid" is 0; "same" keeps the size, which stride 1 and an odd kernel allow.
        const std::string& how = padding.toStringRef();
        if (how == "valid") {
          l.padding = 0;
        } else if (how == "same" && l.stride == 1 && l.kernel_size % 2 == 1) {
          l.padding = (l.kernel_size - 1) / 2;
        } else {
          unsupported(path, cls,
                      " with padding '" + how + "' and kernel " + std::to_string(l.kernel_size));
        }
      } else {
        l.padding = square_setting(m, path, cls, "padding");
      }
      l.bias = b.defined();
      tensors_[p + "weight"] = w;
      if (b.defined()) tensors_[p + "bias"] = b;
    } else if (cls == "BatchNorm1d" || cls == "BatchNorm2d") {
      const std::string p = prefix();
      l.type = cls == "BatchNorm1d" ? LayerType::kBatchNorm1d : LayerType::kBatchNorm2d;
      read_batchnorm(m, path, cls, p, l);
    } else if (cls == "ReLU") {
      l.type = LayerType::kReLU;
    } else if (cls == "MaxPool2d" || cls == "AvgPool2d") {
      l.type = cls == "MaxPool2d" ? LayerType::kMaxPool2d : LayerType::kAvgPool2d;
      l.kernel_size = square_setting(m, path, cls, "kernel_size");
      const auto stride = setting(m, path, cls, "stride");
      const bool default_stride =
          stride.isNone() || (stride.isIntList() && stride.toIntVector().empty());
      l.stride = default_stride ? l.kernel_size : square_setting(m, path, cls, "stride");
      l.padding = square_setting(m, path, cls, "padding");
      if (bool_setting(m, "ceil_mode", false)) {
        unsupported(path, cls, " with ceil_mode=True");
      }
      if (l.type == LayerType::kMaxPool2d) {
        if (square_setting(m, path, cls, "dilation") != 1) {
          unsupported(path, cls, " with dilation != 1");
        }
        if (bool_setting(m, "return_indices", false)) {
          unsupported(path, cls, " with return_indices=True");
        }
      } else {
        if (!bool_setting(m, "count_include_pad", true)) {
          unsupported(path, cls, " with count_include_pad=False");
        }
        if (m.hasattr("divisor_override") && !m.attr("divisor_override").isNone()) {
          unsupported(path, cls, " with divisor_override");
        }
      }
    } else if (cls == "AdaptiveAvgPool2d") {
      l.type = LayerType::kAdaptiveAvgPool2d;
      l.output_size = square_setting(m, path, cls, "output_size");
    } else if (cls == "Flatten") {
      l.type = LayerType::kFlatten;
      if (int_setting(m, path, cls, "start_dim") != 1 ||
          int_setting(m, path, cls, "end_dim") != -1) {
        unsupported(path, cls, " other than Flatten(1, -1)");
      }
    } else if (cls == "Dropout") {
      l.type = LayerType::kDropout;
      const auto p = setting(m, path, cls, "p");
      MCOMPRESS_CHECK(p.isDouble(), ModelError, file_, ": module '", display_path(path),
                      "' of type Dropout: 'p' is not a number");
      l.p = p.toDouble();
    } else {
      unsupported(path, cls, "");
    }
    if (l.type == LayerType::kFlatten) spatial_ = false;
    add_layer(l, path);
  }

  void read_batchnorm(const Module& m, const std::string& path, const std::string& cls,
                      const std::string& p, LayerSpec& l) {
    const at::Tensor mean = tensor(m, path, cls, "running_mean", true);
    const at::Tensor var = tensor(m, path, cls, "running_var", true);
    if (!mean.defined() || !var.defined()) {
      unsupported(path, cls, " without running statistics (track_running_stats=False)");
    }
    l.num_features = mean.size(0);
    const auto eps = setting(m, path, cls, "eps");
    MCOMPRESS_CHECK(eps.isDouble(), ModelError, file_, ": module '", display_path(path),
                    "' of type ", cls, ": 'eps' is not a number");
    l.eps = eps.toDouble();
    // momentum=None (a cumulative average) only matters for training; keep PyTorch's default.
    const c10::IValue momentum = m.hasattr("momentum") ? m.attr("momentum") : c10::IValue();
    l.momentum = momentum.isDouble() ? momentum.toDouble() : 0.1;
    // affine=False: weight and bias are None, the same as ones and zeros.
    at::Tensor w = tensor(m, path, cls, "weight", true);
    at::Tensor b = tensor(m, path, cls, "bias", true);
    tensors_[p + "weight"] = w.defined() ? w : at::ones({l.num_features});
    tensors_[p + "bias"] = b.defined() ? b : at::zeros({l.num_features});
    tensors_[p + "running_mean"] = mean;
    tensors_[p + "running_var"] = var;
  }

  // A block written by export_torchscript: children conv1, bn1, conv2, bn2 and an optional
  // shortcut Sequential (conv, bn).
  void read_residual(const Module& m, const std::string& path) {
    const std::string cls = "Residual";
    auto child = [&](const Module& parent, const std::string& name) {
      MCOMPRESS_CHECK(parent.hasattr(name) && parent.attr(name).isModule(), ModelError, file_,
                      ": residual block '", display_path(path), "' has no submodule '", name, "'");
      return parent.attr(name).toModule();
    };
    const std::string p = prefix();
    const Module conv1 = child(m, "conv1");
    const at::Tensor w1 = tensor(conv1, path + ".conv1", "Conv2d", "weight");
    LayerSpec l;
    l.type = LayerType::kResidual;
    l.in_channels = w1.size(1);
    l.out_channels = w1.size(0);
    l.stride = square_setting(conv1, path + ".conv1", "Conv2d", "stride");
    tensors_[p + "conv1.weight"] = w1;
    LayerSpec bn;
    read_batchnorm(child(m, "bn1"), path + ".bn1", "BatchNorm2d", p + "bn1.", bn);
    tensors_[p + "conv2.weight"] = tensor(child(m, "conv2"), path + ".conv2", "Conv2d", "weight");
    read_batchnorm(child(m, "bn2"), path + ".bn2", "BatchNorm2d", p + "bn2.", bn);
    if (m.hasattr("shortcut") && m.attr("shortcut").isModule()) {
      const Module shortcut = child(m, "shortcut");
      l.projection = true;
      tensors_[p + "shortcut.0.weight"] =
          tensor(child(shortcut, "0"), path + ".shortcut.0", "Conv2d", "weight");
      read_batchnorm(child(shortcut, "1"), path + ".shortcut.1", "BatchNorm2d", p + "shortcut.1.",
                     bn);
    }
    add_layer(l, path);
  }

  std::string file_;
  bool spatial_;  // the activation flowing into the next layer is [C,H,W]
  std::vector<LayerSpec> layers_;
  std::vector<std::string> sources_;
  std::map<std::string, at::Tensor> tensors_;
  int64_t last_linear_outputs_ = 0;
};

Module load_module(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  MCOMPRESS_CHECK(fs::exists(path, ec), IoError, path, ": no such file");
  MCOMPRESS_CHECK(fs::is_regular_file(path, ec), IoError, path, ": not a regular file");
  MCOMPRESS_CHECK(std::ifstream(path, std::ios::binary).good(), IoError, path,
                  ": cannot open for reading");
  try {
    Module module = torch::jit::load(path, torch::kCPU);
    check_all_views(module, path);
    return module;
  } catch (const c10::Error& e) {
    throw FormatError(path + ": not a TorchScript file saved by torch.jit.save (" +
                      torch_message(e) + ")");
  } catch (const std::exception& e) {
    throw FormatError(path + ": not a TorchScript file saved by torch.jit.save (" +
                      first_line(e.what()) + ")");
  }
}

// A list attribute written by export_torchscript, if present.
template <typename T>
std::optional<std::vector<T>> list_attribute(const Module& m, const std::string& name) {
  if (!m.hasattr(name)) return std::nullopt;
  const auto v = m.attr(name);
  if constexpr (std::is_same_v<T, int64_t>) {
    if (v.isIntList()) return v.toIntVector();
  } else {
    if (v.isDoubleList()) return v.toDoubleVector();
  }
  return std::nullopt;
}

// Runs the TorchScript module and our network on one seeded random input and fails when they
// differ: the proof that the module tree read in registration order is what forward computes.
void check_forward(Module& module, const Model& model, const std::string& file, bool normalises,
                   uint64_t seed, double timeout, TorchScriptImportReport& report) {
  torch::NoGradGuard no_grad;
  GraphNetwork net(model.graph());
  net->load(model);
  net->eval();
  std::vector<int64_t> shape = model.spec().input_shape;
  shape.insert(shape.begin(), 2);
  at::Generator generator = at::detail::createCPUGenerator(seed);
  const at::Tensor x = torch::rand(shape, generator);
  const at::Tensor ours = net->forward(x);
  module.eval();
  const at::Tensor input = normalises ? x : net->preprocess(x);
  const at::Tensor theirs = run_isolated(
      [&] {
        c10::IValue out;
        try {
          out = module.forward({input});
        } catch (const c10::Error& e) {
          throw ModelError(
              "fails on an input of shape " + shape_to_string(shape) +
              " (see --input-shape): " + script_error_summary(e.what_without_backtrace()));
        } catch (const std::exception& e) {  // torch::jit::JITException: a `raise` in the code
          throw ModelError("fails on an input of shape " + shape_to_string(shape) +
                           " (see --input-shape): " + script_error_summary(e.what()));
        }
        MCOMPRESS_CHECK(out.isTensor(), ModelError, "does not return one tensor");
        return out.toTensor();
      },
      timeout, file + ": the module's forward");
  MCOMPRESS_CHECK(theirs.sizes() == ours.sizes(), ModelError, file,
                  ": the module's forward returns ", shape_to_string(theirs.sizes().vec()),
                  " but the chain of its layers gives ", shape_to_string(ours.sizes().vec()),
                  "; only modules whose forward chains their children in order are supported");
  report.max_abs_difference = (theirs - ours).abs().max().item<double>();
  report.max_abs_output = ours.abs().max().item<double>();
  const double tolerance = 1e-4 * std::max(1.0, report.max_abs_output);
  MCOMPRESS_CHECK(report.max_abs_difference <= tolerance, ModelError, file,
                  ": the module's forward is not the chain of its submodules in registration "
                  "order (outputs differ by up to ",
                  report.max_abs_difference, " on a random input, tolerance ", tolerance,
                  "); only such plain chains can be imported");
}

// ---------------------------------------------------------------------------------------------
// Export: builds a torch::jit::Module per layer, each with the settings torch.nn would store
// (so that import_torchscript reads our files like scripted torch.nn layers) and a forward in
// TorchScript source with the settings as literals.

std::string literal(double v) {
  std::ostringstream out;
  out << std::setprecision(std::numeric_limits<double>::max_digits10) << v;
  std::string s = out.str();
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // a float literal, not an int
  return s;
}
std::string pair(int64_t v) { return "[" + std::to_string(v) + ", " + std::to_string(v) + "]"; }

class ModuleBuilder {
 public:
  explicit ModuleBuilder(const Model& model) : model_(model) {}

  Module build() {
    const ArchSpec& spec = model_.spec();
    Module top = make("Model");
    top.register_attribute("arch", c10::StringType::get(), spec.to_json_text());
    top.register_attribute("quantization", c10::StringType::get(), quantization_json(model_));
    top.register_attribute("input_shape", c10::ListType::ofInts(),
                           c10::List<int64_t>(spec.input_shape));
    top.register_attribute("input_mean", c10::ListType::ofFloats(), c10::List<double>(spec.mean));
    top.register_attribute("input_std", c10::ListType::ofFloats(), c10::List<double>(spec.std));
    const std::string view = spec.input_shape.size() == 3 ? "[1, -1, 1, 1]" : "[1, -1]";
    std::string src =
        "def forward(self, x: Tensor) -> Tensor:\n"
        "    x = (x - torch.tensor(self.input_mean).view(" +
        view + ")) / torch.tensor(self.input_std).view(" + view + ")\n";
    for (size_t i = 0; i < spec.layers.size(); ++i) {
      const std::string name = std::to_string(i);
      top.register_module(name, layer(spec.layers[i], name + "."));
      src += "    x = getattr(self, \"" + name + "\").forward(x)\n";
    }
    src += "    return x\n";
    top.define(src);
    return top;
  }

 private:
  Module make(const std::string& cls) {
    // shouldMangle: every layer gets its own class (its settings differ), as torch.jit.script
    // names them: __torch__.mcompress.___torch_mangle_3.Conv2d.
    Module m(c10::QualifiedName("__torch__.mcompress." + cls), unit_, /*shouldMangle=*/true);
    m.register_attribute("training", c10::BoolType::get(), false);
    return m;
  }

  // The model's tensor as exported: fp32 master (dequantized values for quantized tensors)
  // with masked-out entries zero.
  at::Tensor value(const std::string& name) const {
    at::Tensor t = model_.tensor(name).detach().to(at::kFloat).contiguous().clone();
    const auto mask = model_.masks.find(name);
    if (mask != model_.masks.end()) t.masked_fill_(mask->second.to(at::kBool).logical_not(), 0.0f);
    return t;
  }

  void parameter(Module& m, const std::string& attr, const std::string& name) {
    m.register_parameter(attr, value(name).requires_grad_(true), /*is_buffer=*/false);
  }
  void optional_parameter(Module& m, const std::string& attr, const std::string& name) {
    if (model_.has_tensor(name)) {
      parameter(m, attr, name);
    } else {
      m.register_attribute(attr, c10::OptionalType::create(c10::TensorType::get()), c10::IValue());
    }
  }
  static void int_attr(Module& m, const std::string& name, int64_t v) {
    m.register_attribute(name, c10::IntType::get(), v);
  }
  static void pair_attr(Module& m, const std::string& name, int64_t v) {
    m.register_attribute(name, c10::TupleType::create({c10::IntType::get(), c10::IntType::get()}),
                         c10::ivalue::Tuple::create({v, v}));
  }
  static void bool_attr(Module& m, const std::string& name, bool v) {
    m.register_attribute(name, c10::BoolType::get(), v);
  }
  static void float_attr(Module& m, const std::string& name, double v) {
    m.register_attribute(name, c10::FloatType::get(), v);
  }

  Module conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding,
              int64_t groups, const std::string& p) {
    Module m = make("Conv2d");
    parameter(m, "weight", p + "weight");
    optional_parameter(m, "bias", p + "bias");
    int_attr(m, "in_channels", in);
    int_attr(m, "out_channels", out);
    pair_attr(m, "kernel_size", kernel);
    pair_attr(m, "stride", stride);
    pair_attr(m, "padding", padding);
    pair_attr(m, "dilation", 1);
    int_attr(m, "groups", groups);
    m.register_attribute("padding_mode", c10::StringType::get(), std::string("zeros"));
    m.define(
        "def forward(self, x: Tensor) -> Tensor:\n    return torch.conv2d(x, self.weight, "
        "self.bias, " +
        pair(stride) + ", " + pair(padding) + ", [1, 1], " + std::to_string(groups) + ")\n");
    return m;
  }

  Module batchnorm(const std::string& cls, int64_t features, double eps, double momentum,
                   const std::string& p) {
    Module m = make(cls);
    parameter(m, "weight", p + "weight");
    parameter(m, "bias", p + "bias");
    m.register_buffer("running_mean", value(p + "running_mean"));
    m.register_buffer("running_var", value(p + "running_var"));
    int_attr(m, "num_features", features);
    float_attr(m, "eps", eps);
    float_attr(m, "momentum", momentum);
    bool_attr(m, "affine", true);
    bool_attr(m, "track_running_stats", true);
    // Inference form: always the running statistics, whatever m.training says.
    m.define(
        "def forward(self, x: Tensor) -> Tensor:\n    return torch.batch_norm(x, self.weight, "
        "self.bias, self.running_mean, self.running_var, False, 0.0, " +
        literal(eps) + ", False)\n");
    return m;
  }

  Module residual(const LayerSpec& l, const std::string& p) {
    // core/src/network.cpp: relu(bn1(conv1 3x3, stride)) -> bn2(conv2 3x3) -> + shortcut -> relu;
    // the shortcut is the identity or conv 1x1 (stride) + bn. Batch norms use eps 1e-5.
    Module m = make("Residual");
    m.register_module("conv1",
                      conv(l.in_channels, l.out_channels, 3, l.stride, 1, 1, p + "conv1."));
    m.register_module("bn1", batchnorm("BatchNorm2d", l.out_channels, 1e-5, 0.1, p + "bn1."));
    m.register_module("conv2", conv(l.out_channels, l.out_channels, 3, 1, 1, 1, p + "conv2."));
    m.register_module("bn2", batchnorm("BatchNorm2d", l.out_channels, 1e-5, 0.1, p + "bn2."));
    std::string src =
        "def forward(self, x: Tensor) -> Tensor:\n"
        "    y = torch.relu(self.bn1.forward(self.conv1.forward(x)))\n"
        "    y = self.bn2.forward(self.conv2.forward(y))\n";
    if (l.projection) {
      Module shortcut = make("Sequential");
      shortcut.register_module(
          "0", conv(l.in_channels, l.out_channels, 1, l.stride, 0, 1, p + "shortcut.0."));
      shortcut.register_module(
          "1", batchnorm("BatchNorm2d", l.out_channels, 1e-5, 0.1, p + "shortcut.1."));
      shortcut.define(
          "def forward(self, x: Tensor) -> Tensor:\n"
          "    x = getattr(self, \"0\").forward(x)\n"
          "    return getattr(self, \"1\").forward(x)\n");
      m.register_module("shortcut", shortcut);
      src += "    return torch.relu(y + self.shortcut.forward(x))\n";
    } else {
      src += "    return torch.relu(y + x)\n";
    }
    m.define(src);
    return m;
  }

  Module layer(const LayerSpec& l, const std::string& p) {
    const std::string head = "def forward(self, x: Tensor) -> Tensor:\n    return ";
    switch (l.type) {
      case LayerType::kLinear: {
        Module m = make("Linear");
        parameter(m, "weight", p + "weight");
        optional_parameter(m, "bias", p + "bias");
        int_attr(m, "in_features", l.in_features);
        int_attr(m, "out_features", l.out_features);
        m.define(head + "torch.linear(x, self.weight, self.bias)\n");
        return m;
      }
      case LayerType::kConv2d:
        return conv(l.in_channels, l.out_channels, l.kernel_size, l.stride, l.padding, l.groups, p);
      case LayerType::kBatchNorm1d:
        return batchnorm("BatchNorm1d", l.num_features, l.eps, l.momentum, p);
      case LayerType::kBatchNorm2d:
        return batchnorm("BatchNorm2d", l.num_features, l.eps, l.momentum, p);
      case LayerType::kReLU: {
        Module m = make("ReLU");
        bool_attr(m, "inplace", false);
        m.define(head + "torch.relu(x)\n");
        return m;
      }
      case LayerType::kMaxPool2d: {
        Module m = make("MaxPool2d");
        pair_attr(m, "kernel_size", l.kernel_size);
        pair_attr(m, "stride", l.stride);
        pair_attr(m, "padding", l.padding);
        pair_attr(m, "dilation", 1);
        bool_attr(m, "ceil_mode", false);
        bool_attr(m, "return_indices", false);
        m.define(head + "torch.max_pool2d(x, " + pair(l.kernel_size) + ", " + pair(l.stride) +
                 ", " + pair(l.padding) + ", [1, 1], False)\n");
        return m;
      }
      case LayerType::kAvgPool2d: {
        Module m = make("AvgPool2d");
        pair_attr(m, "kernel_size", l.kernel_size);
        pair_attr(m, "stride", l.stride);
        pair_attr(m, "padding", l.padding);
        bool_attr(m, "ceil_mode", false);
        bool_attr(m, "count_include_pad", true);
        m.define(head + "torch.avg_pool2d(x, " + pair(l.kernel_size) + ", " + pair(l.stride) +
                 ", " + pair(l.padding) + ", False, True)\n");
        return m;
      }
      case LayerType::kAdaptiveAvgPool2d: {
        Module m = make("AdaptiveAvgPool2d");
        pair_attr(m, "output_size", l.output_size);
        m.define(head + "torch.adaptive_avg_pool2d(x, " + pair(l.output_size) + ")\n");
        return m;
      }
      case LayerType::kFlatten: {
        Module m = make("Flatten");
        int_attr(m, "start_dim", 1);
        int_attr(m, "end_dim", -1);
        m.define(head + "torch.flatten(x, 1)\n");
        return m;
      }
      case LayerType::kDropout: {
        Module m = make("Dropout");
        float_attr(m, "p", l.p);
        bool_attr(m, "inplace", false);
        m.define(head + "x\n");  // inference: the identity
        return m;
      }
      case LayerType::kResidual:
        return residual(l, p);
    }
    throw ModelError("cannot export layer type " + to_string(l.type));
  }

  const Model& model_;
  std::shared_ptr<torch::jit::CompilationUnit> unit_ =
      std::make_shared<torch::jit::CompilationUnit>();
};

std::vector<double> to_vector(const at::Tensor& t) {
  const at::Tensor c = t.detach().to(at::kDouble).contiguous().reshape({-1});
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace

Model import_torchscript(const std::string& path, const TorchScriptImportOptions& options,
                         TorchScriptImportReport* report_out) {
  Module module = load_module(path);
  TorchScriptImportReport report;

  // Our own exports normalise inside forward and record the input shape.
  const auto recorded_shape = list_attribute<int64_t>(module, "input_shape");
  const auto recorded_mean = list_attribute<double>(module, "input_mean");
  const auto recorded_std = list_attribute<double>(module, "input_std");
  report.normalisation_in_module =
      normalized_type(module) == "mcompress.Model" && recorded_mean && recorded_std;
  MCOMPRESS_CHECK(!report.normalisation_in_module || (!options.mean && !options.std), ConfigError,
                  path,
                  ": the module normalises its input itself (written by mcompress export); do "
                  "not give --mean/--std");

  ArchSpec spec;
  spec.name = options.name.empty() ? std::filesystem::path(path).stem().string() : options.name;
  spec.input_shape = options.input_shape          ? *options.input_shape
                     : recorded_shape.has_value() ? *recorded_shape
                                                  : std::vector<int64_t>{1, 28, 28};
  if (report.normalisation_in_module) {
    spec.mean = *recorded_mean;
    spec.std = *recorded_std;
  } else {
    spec.mean = options.mean.value_or(std::vector<double>{0.0});
    spec.std = options.std.value_or(std::vector<double>{1.0});
  }

  TreeReader reader(path, spec.input_shape.size() == 3);
  reader.read(module, "");
  MCOMPRESS_CHECK(reader.last_linear_outputs() > 0, ModelError, path,
                  ": no Linear layer (the class count is the output size of the last Linear)");
  spec.num_classes = reader.last_linear_outputs();
  spec.layers = reader.layers();
  try {
    spec = spec.resolved();
  } catch (const ModelError& e) {
    // Spec errors start "layer <i> (<type>): ..."; name the module that layer came from.
    std::string where;
    const std::string what = e.what();
    size_t index = 0;
    if (std::sscanf(what.c_str(), "layer %zu ", &index) == 1 && index < reader.sources().size()) {
      where = "module '" + reader.sources()[index] + "', ";
    }
    throw ModelError(path + ": " + what + " (" + where + "input shape " +
                     shape_to_string(spec.input_shape) + "; see --input-shape)");
  }
  Model model = [&] {
    try {
      return Model::from_tensors(spec, reader.tensors());
    } catch (const ModelError& e) {
      throw ModelError(path + ": " + e.what());
    }
  }();
  report.layer_sources = reader.sources();
  check_forward(module, model, path, report.normalisation_in_module, options.seed,
                options.forward_timeout, report);
  if (report_out != nullptr) *report_out = std::move(report);
  return model;
}

std::string quantization_json(const Model& model) {
  json doc = {
      {"mode", model.quant.mode}, {"tensors", json::object()}, {"activations", json::object()}};
  for (const auto& [name, q] : model.quant.tensors) {
    json t = {{"encoding", to_string(q.encoding)}};
    if (q.encoding == Encoding::kInt8) {
      t["axis"] = q.axis;
      t["scale"] = to_vector(q.scale);
      t["zero_point"] = to_vector(q.zero_point);
    } else if (q.encoding == Encoding::kCodebook) {
      t["bits"] = q.bits;
      t["codebook"] = to_vector(q.codebook);
    }
    doc["tensors"][name] = t;
  }
  for (const auto& [key, a] : model.quant.activations) {
    doc["activations"][key] = {
        {"scale", a.scale}, {"zero_point", a.zero_point}, {"observer", a.observer}};
  }
  return doc.dump();
}

void export_torchscript(const Model& model, const std::string& path,
                        const TorchScriptExportOptions& options) {
  MCOMPRESS_CHECK(options.overwrite || !std::filesystem::exists(path), IoError, "output '", path,
                  "' exists; pass --force to overwrite it");
  std::ostringstream bytes;
  try {
    ModuleBuilder(model).build().save(bytes);
  } catch (const c10::Error& e) {
    throw ModelError("cannot build the TorchScript module of '" + model.spec().name +
                     "': " + torch_message(e));
  }
  write_file_atomically(path, bytes.str());
}

}  // namespace mcompress::interop
