#include "mcompress/core/op_schema.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "mcompress/core/enum_names.h"
#include "mcompress/core/error.h"

namespace mcompress {
namespace {

using json = nlohmann::json;

std::string ints_to_string(const std::vector<int64_t>& values) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < values.size(); ++i) out << (i ? ", " : "") << values[i];
  out << "]";
  return out.str();
}

std::string product_symbol(const Dim& a, const Dim& b) {
  return a.to_string() + "*" + b.to_string();
}

// a * b for dimensions; a symbol times 1 stays the symbol.
Dim mul_dims(const Dim& a, const Dim& b, const std::string& what) {
  if (a.known() && b.known()) return Dim(checked_mul(a.value, b.value, what));
  if (a.known() && a.value == 1) return b;
  if (b.known() && b.value == 1) return a;
  return Dim::named(product_symbol(a, b));
}

Dim add_dims(const Dim& a, const Dim& b, const std::string& what) {
  if (a.known() && b.known()) return Dim(checked_add(a.value, b.value, what));
  return Dim::named("(" + a.to_string() + "+" + b.to_string() + ")");
}

// ---- shared checks ---------------------------------------------------------------------

std::string input_field(size_t index) { return "input " + std::to_string(index); }

void require_min_rank(const OpContext& c, size_t index, size_t rank, const char* layout) {
  const SymShape& s = c.inputs[index];
  if (s.size() < rank) {
    c.fail(input_field(index), "got shape " + to_string(s) +
                                   ", expected rank >= " + std::to_string(rank) + " " + layout);
  }
}

int64_t known_dim(const OpContext& c, size_t index, size_t axis, const char* what) {
  const Dim& d = c.inputs[index][axis];
  if (!d.known()) {
    c.fail(input_field(index), std::string(what) + " (axis " + std::to_string(axis) +
                                   ") must be a known size, got '" + d.symbol + "'");
  }
  return d.value;
}

// Normalises an ONNX axis in [-rank, rank - 1 + extra] to [0, rank - 1 + extra].
int64_t normalise_axis(const OpContext& c, int64_t axis, int64_t rank, int64_t extra) {
  if (axis < -rank || axis > rank - 1 + extra) {
    c.fail("attribute 'axis'", "got " + std::to_string(axis) + ", expected a value in [" +
                                   std::to_string(-rank) + ", " + std::to_string(rank - 1 + extra) +
                                   "] for an input of rank " + std::to_string(rank));
  }
  return axis < 0 ? axis + rank : axis;
}

// A per-spatial-axis list attribute: absent or empty means `fill` on every axis.
std::vector<int64_t> spatial_list(const OpContext& c, const std::string& attr, size_t count,
                                  int64_t fill) {
  std::vector<int64_t> values = c.has(attr) ? c.get_ints(attr) : std::vector<int64_t>{};
  if (values.empty()) return std::vector<int64_t>(count, fill);
  if (values.size() != count) {
    c.fail("attribute '" + attr + "'", "got " + std::to_string(values.size()) + " values " +
                                           ints_to_string(values) + ", expected " +
                                           std::to_string(count) + " for an input of shape " +
                                           to_string(c.inputs[0]));
  }
  return values;
}

// The sliding-window geometry of Conv and the pools over the spatial axes of input 0.
struct Window {
  std::vector<int64_t> kernel, strides, pads, dilations;
};

Window window_attrs(const OpContext& c, bool has_dilations) {
  const size_t spatial = c.inputs[0].size() - 2;
  Window w;
  w.kernel = spatial_list(c, "kernel_shape", spatial, 1);
  w.strides = spatial_list(c, "strides", spatial, 1);
  w.pads = spatial_list(c, "pads", 2 * spatial, 0);
  w.dilations =
      has_dilations ? spatial_list(c, "dilations", spatial, 1) : std::vector<int64_t>(spatial, 1);
  return w;
}

// Output sizes over the spatial axes (ONNX/PyTorch: floor, or ceil with the last window
// starting inside the input or its begin padding).
std::vector<Dim> window_output(const OpContext& c, const Window& w, bool ceil_mode) {
  const size_t spatial = w.kernel.size();
  std::vector<Dim> out;
  for (size_t i = 0; i < spatial; ++i) {
    const size_t axis = i + 2;
    const int64_t size = known_dim(c, 0, axis, "the spatial size");
    const std::string what =
        "node '" + c.node + "' (" + c.op + "): spatial axis " + std::to_string(axis);
    const int64_t effective =
        checked_add(checked_mul(w.dilations[i], w.kernel[i] - 1, what), 1, what);
    const int64_t padded =
        checked_add(checked_add(size, w.pads[i], what), w.pads[i + spatial], what);
    if (padded < effective) {
      c.fail(input_field(0), "axis " + std::to_string(axis) + " has size " + std::to_string(size) +
                                 ", padded to " + std::to_string(padded) +
                                 ", smaller than the kernel extent " + std::to_string(effective) +
                                 " (output size would be <= 0)");
    }
    const int64_t span = padded - effective;
    int64_t size_out = span / w.strides[i] + 1;
    if (ceil_mode && span % w.strides[i] != 0) {
      ++size_out;
      // PyTorch and ONNX Runtime drop a last window that would start in the end padding.
      if ((size_out - 1) * w.strides[i] >= size + w.pads[i]) --size_out;
    }
    out.push_back(Dim(size_out));
  }
  return out;
}

// Pools: PyTorch requires padding <= half the effective kernel.
void check_pool_pads(const OpContext& c, const Window& w) {
  const size_t spatial = w.kernel.size();
  for (size_t i = 0; i < 2 * spatial; ++i) {
    const int64_t k = w.dilations[i % spatial] * (w.kernel[i % spatial] - 1) + 1;
    if (2 * w.pads[i] > k) {
      c.fail("attribute 'pads'", "got " + ints_to_string(w.pads) +
                                     ", expected each pad <= half the kernel extent " +
                                     std::to_string(k));
    }
  }
}

// ---- shape inference per op --------------------------------------------------------------

std::vector<SymShape> same_shape(const OpContext& c) { return {c.inputs[0]}; }

SymShape broadcast(const OpContext& c, const SymShape& a, const SymShape& b) {
  const size_t rank = std::max(a.size(), b.size());
  SymShape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const Dim one(1);
    const Dim& x = i + a.size() >= rank ? a[i + a.size() - rank] : one;
    const Dim& y = i + b.size() >= rank ? b[i + b.size() - rank] : one;
    if (x == y || (y.known() && y.value == 1)) {
      out[i] = x;
    } else if (x.known() && x.value == 1) {
      out[i] = y;
    } else {
      c.fail("inputs", "shapes " + to_string(a) + " and " + to_string(b) +
                           " do not broadcast: axis " + std::to_string(i) + " has " +
                           x.to_string() + " and " + y.to_string() + ", expected equal sizes or 1");
    }
  }
  return out;
}

std::vector<SymShape> infer_broadcast(const OpContext& c) {
  return {broadcast(c, c.inputs[0], c.inputs[1])};
}

std::vector<SymShape> infer_conv(const OpContext& c) {
  require_min_rank(c, 0, 3, "[batch, channels, spatial...]");
  const SymShape& x = c.inputs[0];
  if (x.size() > 5)
    c.fail(input_field(0), "got shape " + to_string(x) + ", expected 1-3 spatial axes");
  const int64_t channels = known_dim(c, 0, 1, "the channel count");
  const int64_t out_channels = c.get_int("out_channels");
  const int64_t group = c.get_int("group");
  if (channels % group != 0 || out_channels % group != 0) {
    c.fail("attribute 'group'", "got " + std::to_string(group) + ", expected a divisor of the " +
                                    std::to_string(channels) + " input channels and of " +
                                    "out_channels " + std::to_string(out_channels));
  }
  const Window w = window_attrs(c, true);
  SymShape out = {x[0], Dim(out_channels)};
  for (const Dim& d : window_output(c, w, false)) out.push_back(d);
  return {out};
}

std::vector<ParamSpec> conv_params(const OpContext& c) {
  const int64_t out_channels = c.get_int("out_channels");
  std::vector<int64_t> weight = {out_channels, c.inputs[0][1].value / c.get_int("group")};
  for (int64_t k : c.get_ints("kernel_shape")) weight.push_back(k);
  std::vector<ParamSpec> out = {{"weight", weight, true, true, 0}};
  if (c.get_int("bias") == 1) out.push_back({"bias", {out_channels}, true, false, 0});
  return out;
}

std::vector<SymShape> infer_gemm(const OpContext& c) {
  const SymShape& x = c.inputs[0];
  if (x.size() != 2) {
    c.fail(input_field(0), "got shape " + to_string(x) + ", expected rank 2 [batch, features]");
  }
  known_dim(c, 0, 1, "the feature count");
  return {{x[0], Dim(c.get_int("out_features"))}};
}

std::vector<ParamSpec> gemm_params(const OpContext& c) {
  const int64_t out = c.get_int("out_features");
  std::vector<ParamSpec> params = {{"weight", {out, c.inputs[0][1].value}, true, true, 0}};
  if (c.get_int("bias") == 1) params.push_back({"bias", {out}, true, false, 0});
  return params;
}

std::vector<SymShape> infer_matmul(const OpContext& c) {
  SymShape a = c.inputs[0], b = c.inputs[1];
  if (a.empty() || b.empty()) c.fail("inputs", "got a scalar, expected rank >= 1 on both inputs");
  const bool a_vector = a.size() == 1, b_vector = b.size() == 1;
  if (a_vector) a.insert(a.begin(), Dim(1));
  if (b_vector) b.push_back(Dim(1));
  const Dim& k_a = a[a.size() - 1];
  const Dim& k_b = b[b.size() - 2];
  if (k_a != k_b) {
    c.fail("inputs", "shapes " + to_string(c.inputs[0]) + " and " + to_string(c.inputs[1]) +
                         " do not multiply: got inner sizes " + k_a.to_string() + " and " +
                         k_b.to_string() + ", expected equal");
  }
  const SymShape batch_a(a.begin(), a.end() - 2), batch_b(b.begin(), b.end() - 2);
  SymShape out = broadcast(c, batch_a, batch_b);
  if (!a_vector) out.push_back(a[a.size() - 2]);
  if (!b_vector) out.push_back(b[b.size() - 1]);
  return {out};
}

std::vector<SymShape> infer_concat(const OpContext& c) {
  const SymShape& first = c.inputs[0];
  const int64_t rank = static_cast<int64_t>(first.size());
  if (rank == 0) c.fail(input_field(0), "got a scalar, expected rank >= 1");
  const auto axis = static_cast<size_t>(normalise_axis(c, c.get_int("axis"), rank, 0));
  SymShape out = first;
  const std::string what = "node '" + c.node + "' (Concat): axis size";
  for (size_t i = 1; i < c.inputs.size(); ++i) {
    const SymShape& s = c.inputs[i];
    bool agree = s.size() == first.size();
    for (size_t d = 0; agree && d < s.size(); ++d) agree = d == axis || s[d] == first[d];
    if (!agree) {
      c.fail(input_field(i), "got shape " + to_string(s) + ", expected " + to_string(first) +
                                 " except on axis " + std::to_string(axis));
    }
    out[axis] = add_dims(out[axis], s[axis], what);
  }
  return {out};
}

std::vector<SymShape> infer_clip(const OpContext& c) {
  if (c.has("min") && c.has("max") && c.get_float("min") > c.get_float("max")) {
    c.fail("attribute 'min'", "got min " + c.attrs["min"].dump() + " > max " +
                                  c.attrs["max"].dump() + ", expected min <= max");
  }
  return {c.inputs[0]};
}

std::vector<SymShape> infer_batchnorm(const OpContext& c) {
  require_min_rank(c, 0, 2, "[batch, channels, ...]");
  known_dim(c, 0, 1, "the channel count");
  return {c.inputs[0]};
}

std::vector<ParamSpec> batchnorm_params(const OpContext& c) {
  const int64_t channels = c.inputs[0][1].value;
  return {{"weight", {channels}, true, false, 0},
          {"bias", {channels}, true, false, 0},
          {"running_mean", {channels}, false, false, 0},
          {"running_var", {channels}, false, false, 0}};
}

std::vector<SymShape> infer_pool(const OpContext& c, bool has_dilations) {
  require_min_rank(c, 0, 3, "[batch, channels, spatial...]");
  const SymShape& x = c.inputs[0];
  if (x.size() > 5)
    c.fail(input_field(0), "got shape " + to_string(x) + ", expected 1-3 spatial axes");
  const Window w = window_attrs(c, has_dilations);
  check_pool_pads(c, w);
  SymShape out = {x[0], x[1]};
  for (const Dim& d : window_output(c, w, c.get_int("ceil_mode") == 1)) out.push_back(d);
  return {out};
}

std::vector<SymShape> infer_global_pool(const OpContext& c) {
  require_min_rank(c, 0, 3, "[batch, channels, spatial...]");
  SymShape out = c.inputs[0];
  std::fill(out.begin() + 2, out.end(), Dim(1));
  return {out};
}

std::vector<SymShape> infer_adaptive_pool(const OpContext& c) {
  require_min_rank(c, 0, 3, "[batch, channels, spatial...]");
  const SymShape& x = c.inputs[0];
  const std::vector<int64_t> sizes = spatial_list(c, "output_size", x.size() - 2, 1);
  SymShape out = {x[0], x[1]};
  for (int64_t s : sizes) out.push_back(Dim(s));
  return {out};
}

std::vector<SymShape> infer_flatten(const OpContext& c) {
  const SymShape& x = c.inputs[0];
  const int64_t rank = static_cast<int64_t>(x.size());
  const int64_t axis = normalise_axis(c, c.get_int("axis"), rank, 1);
  const std::string what = "node '" + c.node + "' (Flatten): element count";
  Dim outer(1), inner(1);
  for (int64_t i = 0; i < rank; ++i) {
    Dim& part = i < axis ? outer : inner;
    part = mul_dims(part, x[static_cast<size_t>(i)], what);
  }
  return {{outer, inner}};
}

// ONNX Reshape with allowzero = 0: 0 copies the input's size on that axis, -1 is inferred.
// Symbolic sizes cancel between input and output; what remains must be known.
std::vector<SymShape> infer_reshape(const OpContext& c) {
  const SymShape& x = c.inputs[0];
  const std::vector<int64_t> target = c.get_ints("shape");
  const std::string what = "node '" + c.node + "' (Reshape): element count";
  if (target.empty()) c.fail("attribute 'shape'", "got [], expected at least one size");
  int64_t known_in = 1;
  std::multiset<std::string> symbols;
  for (const Dim& d : x) {
    if (d.known()) {
      known_in = checked_mul(known_in, d.value, what);
    } else {
      symbols.insert(d.symbol);
    }
  }
  SymShape out;
  int64_t known_out = 1;
  int64_t infer_at = -1;
  for (size_t i = 0; i < target.size(); ++i) {
    const int64_t t = target[i];
    if (t == -1) {
      if (infer_at >= 0)
        c.fail("attribute 'shape'", "got " + ints_to_string(target) + ", expected at most one -1");
      infer_at = static_cast<int64_t>(i);
      out.push_back(Dim(1));
      continue;
    }
    Dim d(t);
    if (t == 0) {
      if (i >= x.size()) {
        c.fail("attribute 'shape'", "got 0 at index " + std::to_string(i) + " of " +
                                        ints_to_string(target) + ", but the input " + to_string(x) +
                                        " has no axis " + std::to_string(i));
      }
      d = x[i];
    }
    if (d.known()) {
      known_out = checked_mul(known_out, d.value, what);
    } else {
      auto it = symbols.find(d.symbol);
      if (it == symbols.end()) {
        c.fail("attribute 'shape'",
               "output size '" + d.symbol + "' is not a size of the input " + to_string(x));
      }
      symbols.erase(it);
    }
    out.push_back(d);
  }
  const std::string mismatch = "got " + ints_to_string(target) + " for an input of shape " +
                               to_string(x) + ", expected the same number of elements";
  if (infer_at < 0) {
    if (!symbols.empty() || known_in != known_out) c.fail("attribute 'shape'", mismatch);
    return {out};
  }
  if (known_out == 0 || known_in % known_out != 0) c.fail("attribute 'shape'", mismatch);
  Dim inferred(known_in / known_out);
  for (const std::string& s : symbols) inferred = mul_dims(inferred, Dim::named(s), what);
  out[static_cast<size_t>(infer_at)] = inferred;
  return {out};
}

// ---- the table ---------------------------------------------------------------------------

AttrSpec int_attr(std::string name, json fallback, int64_t lo, int64_t hi) {
  AttrSpec a;
  a.name = std::move(name);
  a.kind = AttrKind::kInt;
  a.default_value = std::move(fallback);
  a.min_int = lo;
  a.max_int = hi;
  return a;
}

AttrSpec ints_attr(std::string name, json fallback, int64_t lo, int64_t hi) {
  AttrSpec a = int_attr(std::move(name), std::move(fallback), lo, hi);
  a.kind = AttrKind::kInts;
  return a;
}

AttrSpec float_attr(std::string name, json fallback, double lo, double hi, bool optional = false) {
  AttrSpec a;
  a.name = std::move(name);
  a.kind = AttrKind::kFloat;
  a.default_value = std::move(fallback);
  a.min_float = lo;
  a.max_float = hi;
  a.optional = optional;
  return a;
}

const json kRequired = nullptr;
const json kEmptyList = json::array();

std::vector<AttrSpec> window_attr_specs(bool dilations) {
  std::vector<AttrSpec> out = {
      ints_attr("kernel_shape", kRequired, 1, kMaxWindowAttr),
      ints_attr("strides", kEmptyList, 1, kMaxWindowAttr),
      ints_attr("pads", kEmptyList, 0, kMaxWindowAttr),
  };
  if (dilations) out.push_back(ints_attr("dilations", kEmptyList, 1, kMaxWindowAttr));
  return out;
}

template <typename... Extra>
std::vector<AttrSpec> concat_attrs(std::vector<AttrSpec> base, Extra... extra) {
  (base.push_back(std::move(extra)), ...);
  return base;
}

std::vector<OpSchema> build_table() {
  using Infer = std::function<std::vector<SymShape>(const OpContext&)>;
  const Infer pool = [](const OpContext& c) { return infer_pool(c, true); };
  const Infer avg_pool = [](const OpContext& c) { return infer_pool(c, false); };
  // {op, summary, min_inputs, max_inputs, outputs, attrs, float_inputs, infer, params}
  return {
      {"Conv",
       "ONNX Conv over 1-3 spatial axes; the weight [out_channels, in/group, kernel...] and "
       "optional bias are parameters, so out_channels and bias (0/1) are attributes",
       1, 1, 1,
       concat_attrs(window_attr_specs(true), int_attr("out_channels", kRequired, 1, kMaxDimSize),
                    int_attr("group", 1, 1, kMaxDimSize), int_attr("bias", 1, 0, 1)),
       true, infer_conv, conv_params},
      {"Gemm",
       "ONNX Gemm(x, weight, bias) with transB = 1 and alpha = beta = 1 (PyTorch Linear): "
       "x [batch, in], weight [out_features, in], bias (0/1) [out_features]",
       1,
       1,
       1,
       {int_attr("out_features", kRequired, 1, kMaxDimSize), int_attr("bias", 1, 0, 1)},
       true,
       infer_gemm,
       gemm_params},
      {"MatMul",
       "ONNX MatMul (numpy matmul with broadcast batch axes)",
       2,
       2,
       1,
       {},
       true,
       infer_matmul,
       nullptr},
      {"Add", "ONNX Add with numpy broadcasting", 2, 2, 1, {}, true, infer_broadcast, nullptr},
      {"Mul", "ONNX Mul with numpy broadcasting", 2, 2, 1, {}, true, infer_broadcast, nullptr},
      {"Concat",
       "ONNX Concat along `axis` (negative counts from the end)",
       1,
       -1,
       1,
       {int_attr("axis", kRequired, -kMaxRank, kMaxRank - 1)},
       false,
       infer_concat,
       nullptr},
      {"Relu", "max(x, 0)", 1, 1, 1, {}, true, same_shape, nullptr},
      {"Clip",
       "ONNX Clip with min/max as attributes (absent: unbounded); ReLU6 is min 0, max 6",
       1,
       1,
       1,
       {float_attr("min", kRequired, -1e300, 1e300, true),
        float_attr("max", kRequired, -1e300, 1e300, true)},
       true,
       infer_clip,
       nullptr},
      {"HardSwish", "x * max(0, min(1, x / 6 + 1/2))", 1, 1, 1, {}, true, same_shape, nullptr},
      {"HardSigmoid",
       "max(0, min(1, alpha * x + beta)) (ONNX defaults 0.2, 0.5)",
       1,
       1,
       1,
       {float_attr("alpha", 0.2, -1e300, 1e300), float_attr("beta", 0.5, -1e300, 1e300)},
       true,
       same_shape,
       nullptr},
      {"Sigmoid", "1 / (1 + exp(-x))", 1, 1, 1, {}, true, same_shape, nullptr},
      {"Tanh", "tanh(x)", 1, 1, 1, {}, true, same_shape, nullptr},
      {"SiLU",
       "x * sigmoid(x) (not an ONNX op; exported as Sigmoid and Mul)",
       1,
       1,
       1,
       {},
       true,
       same_shape,
       nullptr},
      {"BatchNormalization",
       "ONNX BatchNormalization in inference form over axis 1; running = running * momentum + "
       "batch * (1 - momentum) (ONNX momentum: PyTorch's 0.1 is 0.9 here); weight, bias, "
       "running_mean, running_var [channels] are parameters",
       1,
       1,
       1,
       {float_attr("epsilon", 1e-5, 1e-300, 1e300), float_attr("momentum", 0.9, 0.0, 1.0)},
       true,
       infer_batchnorm,
       batchnorm_params},
      {"MaxPool", "ONNX MaxPool (strides default 1; pads <= half the kernel extent)", 1, 1, 1,
       concat_attrs(window_attr_specs(true), int_attr("ceil_mode", 0, 0, 1)), true, pool, nullptr},
      {"AveragePool", "ONNX AveragePool (count_include_pad default 0; PyTorch's AvgPool2d is 1)", 1,
       1, 1,
       concat_attrs(window_attr_specs(false), int_attr("ceil_mode", 0, 0, 1),
                    int_attr("count_include_pad", 0, 0, 1)),
       true, avg_pool, nullptr},
      {"GlobalAveragePool",
       "ONNX GlobalAveragePool: [N, C, ...] -> [N, C, 1, ...]",
       1,
       1,
       1,
       {},
       true,
       infer_global_pool,
       nullptr},
      {"AdaptiveAveragePool",
       "PyTorch adaptive_avg_pool over the spatial axes to `output_size` (not an ONNX op)",
       1,
       1,
       1,
       {ints_attr("output_size", kRequired, 1, kMaxWindowAttr)},
       true,
       infer_adaptive_pool,
       nullptr},
      {"Flatten",
       "ONNX Flatten: [prod(shape[:axis]), prod(shape[axis:])]",
       1,
       1,
       1,
       {int_attr("axis", 1, -kMaxRank, kMaxRank)},
       false,
       infer_flatten,
       nullptr},
      {"Reshape",
       "ONNX Reshape with the target shape as an attribute (0 copies, -1 infers; allowzero 0)",
       1,
       1,
       1,
       {ints_attr("shape", kRequired, -1, kMaxDimSize)},
       false,
       infer_reshape,
       nullptr},
      {"Dropout",
       "ONNX Dropout with `ratio` as an attribute; identity in inference",
       1,
       1,
       1,
       {float_attr("ratio", 0.5, 0.0, 0.999999)},
       true,
       same_shape,
       nullptr},
      {"Identity", "y = x", 1, 1, 1, {}, false, same_shape, nullptr},
  };
}

void check_attr_value(const AttrSpec& spec, const json& value, const std::string& node,
                      const std::string& op) {
  const std::string at = "node '" + node + "' (" + op + "): attribute '" + spec.name + "'";
  auto check_int = [&](const json& v, const std::string& got) {
    MCOMPRESS_CHECK(v.is_number_integer() &&
                        (!v.is_number_unsigned() || v.get<uint64_t>() <= uint64_t{INT64_MAX}),
                    ModelError, at, ": got ", got, ", expected ",
                    spec.kind == AttrKind::kInts ? "a list of integers" : "an integer");
    const auto x = v.get<int64_t>();
    MCOMPRESS_CHECK(x >= spec.min_int && x <= spec.max_int, ModelError, at, ": got ", got,
                    ", expected ", spec.kind == AttrKind::kInts ? "values" : "a value", " in [",
                    spec.min_int, ", ", spec.max_int, "]");
  };
  switch (spec.kind) {
    case AttrKind::kInt:
      check_int(value, value.dump());
      return;
    case AttrKind::kInts:
      MCOMPRESS_CHECK(value.is_array(), ModelError, at, ": got ", value.dump(),
                      ", expected a list of integers");
      MCOMPRESS_CHECK(value.size() <= static_cast<size_t>(kMaxAttrListLength), ModelError, at,
                      ": got ", value.size(), " values, expected at most ", kMaxAttrListLength);
      for (const json& v : value) check_int(v, value.dump());
      return;
    case AttrKind::kFloat: {
      MCOMPRESS_CHECK(value.is_number(), ModelError, at, ": got ", value.dump(),
                      ", expected a number");
      const auto x = value.get<double>();
      MCOMPRESS_CHECK(std::isfinite(x) && x >= spec.min_float && x <= spec.max_float, ModelError,
                      at, ": got ", value.dump(), ", expected a value in [", spec.min_float, ", ",
                      spec.max_float, "]");
      return;
    }
  }
}

}  // namespace

// ---- Dim, DType ----------------------------------------------------------------------------

Dim Dim::named(std::string symbol) {
  Dim d;
  d.symbol = std::move(symbol);
  return d;
}

std::string Dim::to_string() const { return known() ? std::to_string(value) : symbol; }

std::string to_string(const SymShape& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + shape[i].to_string();
  return out + "]";
}

constexpr std::array<EnumName<DType>, 2> kDTypes = {
    {{DType::kFloat32, "float32"}, {DType::kInt64, "int64"}}};

std::string to_string(DType dtype) { return enum_to_string(kDTypes, dtype); }
DType parse_dtype(const std::string& name) {
  return parse_enum<ModelError>(kDTypes, name, "dtype");
}

// ---- OpContext -------------------------------------------------------------------------------

int64_t OpContext::get_int(const std::string& attr) const { return attrs.at(attr).get<int64_t>(); }

std::vector<int64_t> OpContext::get_ints(const std::string& attr) const {
  return attrs.at(attr).get<std::vector<int64_t>>();
}

double OpContext::get_float(const std::string& attr) const { return attrs.at(attr).get<double>(); }

void OpContext::fail(const std::string& field, const std::string& message) const {
  throw ModelError("node '" + node + "' (" + op + "): " + field + ": " + message);
}

// ---- OpSchema --------------------------------------------------------------------------------

json OpSchema::resolve_attrs(const std::string& node, const json& given) const {
  const std::string at = "node '" + node + "' (" + op + ")";
  MCOMPRESS_CHECK(given.is_object(), ModelError, at, ": attrs: got ", given.dump(),
                  ", expected an object");
  std::string accepted;
  for (const auto& a : attrs) accepted += (accepted.empty() ? "" : ", ") + a.name;
  if (accepted.empty()) accepted = "none";
  json out = json::object();
  for (const auto& [key, value] : given.items()) {
    const auto it = std::find_if(attrs.begin(), attrs.end(),
                                 [&key = key](const AttrSpec& a) { return a.name == key; });
    MCOMPRESS_CHECK(it != attrs.end(), ModelError, at, ": attribute '", key,
                    "': unknown; expected one of: ", accepted);
    check_attr_value(*it, value, node, op);
    out[key] = value;
  }
  for (const auto& a : attrs) {
    if (out.contains(a.name)) continue;
    if (!a.default_value.is_null()) {
      out[a.name] = a.default_value;
    } else {
      MCOMPRESS_CHECK(a.optional, ModelError, at, ": attribute '", a.name,
                      "': missing; it is required");
    }
  }
  return out;
}

const std::vector<OpSchema>& op_schemas() {
  static const std::vector<OpSchema> table = build_table();
  return table;
}

const OpSchema* find_op_schema(const std::string& op) {
  for (const auto& schema : op_schemas()) {
    if (schema.op == op) return &schema;
  }
  return nullptr;
}

const OpSchema& op_schema(const std::string& op) {
  if (const OpSchema* schema = find_op_schema(op)) return *schema;
  std::string accepted;
  for (const auto& schema : op_schemas()) accepted += (accepted.empty() ? "" : ", ") + schema.op;
  throw ModelError("unknown op '" + op + "'; accepted: " + accepted);
}

int64_t checked_add(int64_t a, int64_t b, const std::string& what) {
  int64_t out = 0;
  MCOMPRESS_CHECK(!__builtin_add_overflow(a, b, &out), ModelError, what, ": integer overflow in ",
                  a, " + ", b);
  return out;
}

int64_t checked_sub(int64_t a, int64_t b, const std::string& what) {
  int64_t out = 0;
  MCOMPRESS_CHECK(!__builtin_sub_overflow(a, b, &out), ModelError, what, ": integer overflow in ",
                  a, " - ", b);
  return out;
}

int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  int64_t out = 0;
  MCOMPRESS_CHECK(!__builtin_mul_overflow(a, b, &out), ModelError, what, ": integer overflow in ",
                  a, " * ", b);
  return out;
}

}  // namespace mcompress
