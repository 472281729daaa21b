#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <initializer_list>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "graph_support.h"
#include "mcompress/core/error.h"
#include "mcompress/core/graph.h"
#include "mcompress/core/op_schema.h"
#include "mcompress/core/zoo.h"
#include "reference_network.h"

namespace mcompress {
namespace {

using json = nlohmann::json;
using testing::kBatch;

using testing::expect_model_error;

// ---- op schemas, one node at a time ------------------------------------------------------

struct Inferred {
  std::vector<SymShape> outputs;
  std::vector<ParamSpec> params;
};

Inferred infer(const std::string& op, const json& attrs, const std::vector<SymShape>& inputs,
               DType dtype = DType::kFloat32) {
  const OpSchema& schema = op_schema(op);
  const std::string node = "n";
  const json resolved = schema.resolve_attrs(node, attrs);
  const std::vector<DType> types(inputs.size(), dtype);
  const OpContext ctx{node, schema.op, resolved, inputs, types};
  Inferred out;
  out.outputs = schema.infer(ctx);
  if (schema.params) out.params = schema.params(ctx);
  return out;
}

SymShape infer1(const std::string& op, const json& attrs, const std::vector<SymShape>& inputs) {
  return infer(op, attrs, inputs).outputs.at(0);
}

TEST(OpSchemaTest, OneRowPerOpWithOnnxNames) {
  std::set<std::string> names;
  for (const auto& s : op_schemas()) {
    EXPECT_TRUE(names.insert(s.op).second) << "duplicate row " << s.op;
    EXPECT_TRUE(static_cast<bool>(s.infer)) << s.op;
    EXPECT_FALSE(s.summary.empty()) << s.op;
  }
  for (const char* op : {"Conv",
                         "Gemm",
                         "MatMul",
                         "Add",
                         "Mul",
                         "Concat",
                         "Relu",
                         "Clip",
                         "HardSwish",
                         "HardSigmoid",
                         "Sigmoid",
                         "Tanh",
                         "SiLU",
                         "BatchNormalization",
                         "MaxPool",
                         "AveragePool",
                         "GlobalAveragePool",
                         "Flatten",
                         "Reshape",
                         "Dropout",
                         "Identity"}) {
    EXPECT_EQ(names.count(op), 1u) << op;
  }
  expect_model_error([] { op_schema("Convolution"); }, {"unknown op 'Convolution'", "Conv, Gemm"});
}

TEST(OpSchemaTest, ConvShapes) {
  const json base = {{"out_channels", 8}, {"kernel_shape", {3, 3}}};
  EXPECT_EQ(infer1("Conv", base, {{kBatch, 3, 32, 32}}), (SymShape{kBatch, 8, 30, 30}));
  json padded = base;
  padded["pads"] = {1, 1, 1, 1};
  EXPECT_EQ(infer1("Conv", padded, {{1, 3, 32, 32}}), (SymShape{1, 8, 32, 32}));  // batch 1
  json strided = padded;
  strided["strides"] = {2, 2};
  EXPECT_EQ(infer1("Conv", strided, {{kBatch, 3, 32, 32}}), (SymShape{kBatch, 8, 16, 16}));
  EXPECT_EQ(infer1("Conv", strided, {{kBatch, 3, 7, 7}}), (SymShape{kBatch, 8, 4, 4}));
  json dilated = base;
  dilated["dilations"] = {2, 3};  // extents 5 and 7
  EXPECT_EQ(infer1("Conv", dilated, {{kBatch, 3, 32, 32}}), (SymShape{kBatch, 8, 28, 26}));
  json asymmetric = {
      {"out_channels", 4}, {"kernel_shape", {2, 2}}, {"strides", {2, 2}}, {"pads", {0, 0, 1, 1}}};
  EXPECT_EQ(infer1("Conv", asymmetric, {{kBatch, 3, 7, 7}}), (SymShape{kBatch, 4, 4, 4}));
  // 1-D convolution over [batch, channels, length].
  EXPECT_EQ(infer1("Conv", {{"out_channels", 2}, {"kernel_shape", {5}}}, {{kBatch, 3, 100}}),
            (SymShape{kBatch, 2, 96}));

  // Parameters: weight [out, in/group, k, k] on axis 0 and compressible; bias optional.
  const auto plain = infer("Conv", padded, {{kBatch, 3, 32, 32}});
  ASSERT_EQ(plain.params.size(), 2u);
  EXPECT_EQ(plain.params[0].role, "weight");
  EXPECT_EQ(plain.params[0].shape, (std::vector<int64_t>{8, 3, 3, 3}));
  EXPECT_TRUE(plain.params[0].compressible);
  EXPECT_EQ(plain.params[0].channel_axis, 0);
  EXPECT_EQ(plain.params[1].role, "bias");
  EXPECT_FALSE(plain.params[1].compressible);
  json no_bias = padded;
  no_bias["bias"] = 0;
  EXPECT_EQ(infer("Conv", no_bias, {{kBatch, 3, 32, 32}}).params.size(), 1u);
}

TEST(OpSchemaTest, DepthwiseConv) {
  const json dw = {{"out_channels", 32},
                   {"kernel_shape", {3, 3}},
                   {"pads", {1, 1, 1, 1}},
                   {"strides", {2, 2}},
                   {"group", 32}};
  const auto r = infer("Conv", dw, {{kBatch, 32, 112, 112}});
  EXPECT_EQ(r.outputs[0], (SymShape{kBatch, 32, 56, 56}));
  EXPECT_EQ(r.params[0].shape, (std::vector<int64_t>{32, 1, 3, 3}));
  // Channel multiplier 2.
  json mult = dw;
  mult["out_channels"] = 64;
  EXPECT_EQ(infer("Conv", mult, {{kBatch, 32, 8, 8}}).params[0].shape,
            (std::vector<int64_t>{64, 1, 3, 3}));
}

TEST(OpSchemaTest, ConvErrorsNameTheNodeAndField) {
  const json base = {{"out_channels", 8}, {"kernel_shape", {3, 3}}};
  auto with = [&](const std::string& key, const json& value) {
    json a = base;
    a[key] = value;
    return a;
  };
  expect_model_error(
      [&] {
        infer("Conv", with("group", 3), {{kBatch, 4, 8, 8}});
      },
      {"node 'n' (Conv)", "attribute 'group'", "got 3", "4 input channels"});
  expect_model_error(
      [&] {
        infer("Conv", with("strides", {0, 1}), {{kBatch, 4, 8, 8}});
      },
      {"node 'n' (Conv)", "attribute 'strides'", "got [0,1]", "[1, 65536]"});
  expect_model_error(
      [&] {
        infer("Conv", with("kernel_shape", {0, 3}), {{kBatch, 4, 8, 8}});
      },
      {"attribute 'kernel_shape'", "got [0,3]"});
  expect_model_error(
      [&] {
        infer("Conv", with("pads", {-1, 0, 0, 0}), {{kBatch, 4, 8, 8}});
      },
      {"attribute 'pads'", "got [-1,0,0,0]"});
  expect_model_error(
      [&] {
        infer("Conv", with("pads", {1, 1}), {{kBatch, 4, 8, 8}});
      },
      {"attribute 'pads'", "got 2 values", "expected 4"});
  expect_model_error(
      [&] {
        infer("Conv", with("kernel_shape", {3}), {{kBatch, 4, 8, 8}});
      },
      {"attribute 'kernel_shape'", "expected 2"});
  expect_model_error(
      [&] {
        infer("Conv", with("kernel_shape", {9, 9}), {{kBatch, 4, 8, 8}});
      },
      {"node 'n' (Conv)", "input 0", "smaller than the kernel extent 9",
       "output size would be <= 0"});
  expect_model_error(
      [&] {
        infer("Conv", with("stride", 1), {{kBatch, 4, 8, 8}});
      },
      {"attribute 'stride'", "unknown", "strides"});
  expect_model_error(
      [&] {
        infer("Conv", {{"kernel_shape", {3, 3}}}, {{kBatch, 4, 8, 8}});
      },
      {"attribute 'out_channels'", "missing"});
  expect_model_error(
      [&] {
        infer("Conv", with("group", 1.5), {{kBatch, 4, 8, 8}});
      },
      {"attribute 'group'", "got 1.5", "expected an integer"});
  expect_model_error(
      [&] {
        infer("Conv", base, {{kBatch, 4}});
      },
      {"input 0", "got shape [batch, 4]", "expected rank >= 3"});
  expect_model_error(
      [&] {
        infer("Conv", base, {{kBatch, Dim::named("c"), 8, 8}});
      },
      {"input 0", "channel count", "'c'"});
}

TEST(OpSchemaTest, HugePaddingIsAnErrorNotOverflow) {
  json a = {{"out_channels", 8}, {"kernel_shape", {3, 3}}, {"pads", {2147483634, 0, 0, 0}}};
  expect_model_error(
      [&] {
        infer("Conv", a, {{kBatch, 3, 28, 28}});
      },
      {"node 'n' (Conv)", "attribute 'pads'", "2147483634", "[0, 65536]"});
  json b = {{"kernel_shape", {3, 3}}, {"pads", {0, 0, 9223372036854775807LL, 0}}};
  expect_model_error([&] { infer("MaxPool", b, {{kBatch, 3, 28, 28}}); }, {"attribute 'pads'"});
  // Products of large dimensions are checked, not wrapped.
  const Dim big(kMaxDimSize);
  expect_model_error(
      [&] {
        infer("Flatten", {{"axis", 1}}, {{kBatch, big, big, big}});
      },
      {"node 'n' (Flatten)", "integer overflow"});
  expect_model_error(
      [&] {
        infer("Reshape", {{"shape", {-1}}}, {{big, big}});
      },
      {"integer overflow"});
  EXPECT_THROW(checked_add(INT64_MAX, 1, "x"), ModelError);
  EXPECT_THROW(checked_sub(INT64_MIN, 1, "x"), ModelError);
  EXPECT_THROW(checked_mul(INT64_MAX / 2 + 1, 2, "x"), ModelError);
  EXPECT_EQ(checked_mul(-3, 4, "x"), -12);
}

TEST(OpSchemaTest, GemmAndMatMul) {
  const auto g = infer("Gemm", {{"out_features", 300}}, {{kBatch, 784}});
  EXPECT_EQ(g.outputs[0], (SymShape{kBatch, 300}));
  ASSERT_EQ(g.params.size(), 2u);
  EXPECT_EQ(g.params[0].shape, (std::vector<int64_t>{300, 784}));
  EXPECT_EQ(g.params[1].shape, (std::vector<int64_t>{300}));
  EXPECT_EQ(infer("Gemm", {{"out_features", 3}, {"bias", 0}}, {{1, 5}}).params.size(), 1u);
  expect_model_error(
      [] {
        infer("Gemm", {{"out_features", 10}}, {{kBatch, 16, 5, 5}});
      },
      {"node 'n' (Gemm)", "input 0", "got shape [batch, 16, 5, 5]", "expected rank 2"});
  expect_model_error(
      [] {
        infer("Gemm", {{"out_features", 0}}, {{kBatch, 5}});
      },
      {"attribute 'out_features'", "got 0"});

  EXPECT_EQ(infer1("MatMul", json::object(), {{kBatch, 4, 5}, {5, 6}}), (SymShape{kBatch, 4, 6}));
  EXPECT_EQ(infer1("MatMul", json::object(), {{2, 1, 4, 5}, {3, 5, 6}}), (SymShape{2, 3, 4, 6}));
  EXPECT_EQ(infer1("MatMul", json::object(), {{5}, {5, 6}}), (SymShape{6}));
  EXPECT_EQ(infer1("MatMul", json::object(), {{4, 5}, {5}}), (SymShape{4}));
  EXPECT_EQ(infer1("MatMul", json::object(), {{5}, {5}}), SymShape{});  // a scalar
  EXPECT_TRUE(infer("MatMul", json::object(), {{4, 5}, {5, 6}}).params.empty());
  expect_model_error(
      [] {
        infer("MatMul", json::object(), {{kBatch, 4, 5}, {6, 7}});
      },
      {"node 'n' (MatMul)", "inner sizes 5 and 6", "expected equal"});
}

TEST(OpSchemaTest, BroadcastAndConcat) {
  EXPECT_EQ(infer1("Add", json::object(), {{kBatch, 16, 8, 8}, {1, 16, 1, 1}}),
            (SymShape{kBatch, 16, 8, 8}));
  EXPECT_EQ(infer1("Mul", json::object(), {{kBatch, 16, 8, 8}, {16, 1, 1}}),
            (SymShape{kBatch, 16, 8, 8}));
  EXPECT_EQ(infer1("Add", json::object(), {{1, 5}, {kBatch, 1}}), (SymShape{kBatch, 5}));
  expect_model_error(
      [] {
        infer("Add", json::object(), {{kBatch, 16, 8, 8}, {kBatch, 32, 4, 4}});
      },
      {"node 'n' (Add)", "inputs", "[batch, 16, 8, 8] and [batch, 32, 4, 4]",
       "axis 1 has 16 and 32"});

  EXPECT_EQ(infer1("Concat", {{"axis", 1}}, {{kBatch, 3, 4, 4}, {kBatch, 5, 4, 4}}),
            (SymShape{kBatch, 8, 4, 4}));
  EXPECT_EQ(infer1("Concat", {{"axis", -1}}, {{kBatch, 3}, {kBatch, 5}, {kBatch, 1}}),
            (SymShape{kBatch, 9}));
  expect_model_error(
      [] {
        infer("Concat", {{"axis", 1}}, {{kBatch, 3, 4, 4}, {kBatch, 5, 4, 5}});
      },
      {"node 'n' (Concat)", "input 1", "got shape [batch, 5, 4, 5]",
       "expected [batch, 3, 4, 4] except on axis 1"});
  expect_model_error(
      [] {
        infer("Concat", {{"axis", 4}}, {{kBatch, 3, 4, 4}});
      },
      {"attribute 'axis'", "got 4", "[-4, 3]"});
  expect_model_error(
      [] {
        infer("Concat", json::object(), {{kBatch, 3}});
      },
      {"attribute 'axis'", "missing"});
}

TEST(OpSchemaTest, ElementwiseOpsKeepTheShape) {
  const SymShape x = {kBatch, 16, 7, 7};
  for (const char* op :
       {"Relu", "Sigmoid", "Tanh", "SiLU", "HardSwish", "HardSigmoid", "Dropout", "Identity"}) {
    EXPECT_EQ(infer1(op, json::object(), {x}), x) << op;
  }
  const OpSchema& hs = op_schema("HardSigmoid");
  const json filled = hs.resolve_attrs("n", json::object());
  EXPECT_DOUBLE_EQ(filled["alpha"].get<double>(), 0.2);
  EXPECT_DOUBLE_EQ(filled["beta"].get<double>(), 0.5);
  EXPECT_EQ(infer1("Clip", {{"min", 0.0}, {"max", 6.0}}, {x}), x);  // ReLU6
  EXPECT_FALSE(op_schema("Clip").resolve_attrs("n", json::object()).contains("min"));
  expect_model_error(
      [&] {
        infer("Clip", {{"min", 6.0}, {"max", 0.0}}, {x});
      },
      {"node 'n' (Clip)", "attribute 'min'", "expected min <= max"});
  expect_model_error(
      [&] {
        infer("Dropout", {{"ratio", 1.0}}, {x});
      },
      {"node 'n' (Dropout)", "attribute 'ratio'", "got 1.0"});
  expect_model_error(
      [&] {
        infer("Relu", {{"alpha", 1}}, {x});
      },
      {"node 'n' (Relu)", "attribute 'alpha'", "unknown", "none"});
  EXPECT_EQ(infer1("Identity", json::object(), {{kBatch, 12}}), (SymShape{kBatch, 12}));
}

TEST(OpSchemaTest, BatchNormalization) {
  const auto r = infer("BatchNormalization", json::object(), {{kBatch, 16, 7, 7}});
  EXPECT_EQ(r.outputs[0], (SymShape{kBatch, 16, 7, 7}));
  ASSERT_EQ(r.params.size(), 4u);
  const std::vector<std::string> roles = {"weight", "bias", "running_mean", "running_var"};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(r.params[i].role, roles[i]);
    EXPECT_EQ(r.params[i].shape, (std::vector<int64_t>{16}));
    EXPECT_FALSE(r.params[i].compressible);
    EXPECT_EQ(r.params[i].trainable, i < 2);
  }
  EXPECT_EQ(infer1("BatchNormalization", json::object(), {{1, 300}}), (SymShape{1, 300}));
  expect_model_error(
      [] {
        infer("BatchNormalization", {{"epsilon", 0}}, {{kBatch, 4}});
      },
      {"attribute 'epsilon'", "got 0"});
  expect_model_error(
      [] {
        infer("BatchNormalization", {{"momentum", 1.5}}, {{kBatch, 4}});
      },
      {"attribute 'momentum'", "got 1.5"});
}

TEST(OpSchemaTest, Pools) {
  const json k3s2p1 = {{"kernel_shape", {3, 3}}, {"strides", {2, 2}}, {"pads", {1, 1, 1, 1}}};
  EXPECT_EQ(infer1("MaxPool", k3s2p1, {{kBatch, 64, 112, 112}}), (SymShape{kBatch, 64, 56, 56}));
  EXPECT_EQ(infer1("MaxPool", {{"kernel_shape", {2, 2}}}, {{1, 3, 5, 5}}),
            (SymShape{1, 3, 4, 4}));  // ONNX: strides default to 1
  const json ceil = {{"kernel_shape", {2, 2}}, {"strides", {2, 2}}, {"ceil_mode", 1}};
  EXPECT_EQ(infer1("MaxPool", ceil, {{kBatch, 3, 5, 5}}), (SymShape{kBatch, 3, 3, 3}));
  EXPECT_EQ(infer1("AveragePool", ceil, {{kBatch, 3, 4, 4}}), (SymShape{kBatch, 3, 2, 2}));
  EXPECT_EQ(infer1("AveragePool",
                   {{"kernel_shape", {2, 2}},
                    {"strides", {2, 2}},
                    {"pads", {1, 1, 1, 1}},
                    {"count_include_pad", 1}},
                   {{kBatch, 3, 16, 16}}),
            (SymShape{kBatch, 3, 9, 9}));
  expect_model_error(
      [] {
        infer("MaxPool", {{"kernel_shape", {2, 2}}, {"pads", {2, 2, 2, 2}}}, {{kBatch, 3, 8, 8}});
      },
      {"node 'n' (MaxPool)", "attribute 'pads'", "half the kernel extent 2"});
  expect_model_error(
      [] {
        infer("AveragePool", {{"kernel_shape", {2, 2}}, {"dilations", {1, 1}}},
              {{kBatch, 3, 8, 8}});
      },
      {"attribute 'dilations'", "unknown"});
  expect_model_error(
      [] {
        infer("MaxPool", {{"kernel_shape", {4, 4}}}, {{kBatch, 3, 3, 3}});
      },
      {"node 'n' (MaxPool)", "output size would be <= 0"});
  EXPECT_EQ(infer1("GlobalAveragePool", json::object(), {{kBatch, 64, 7, 7}}),
            (SymShape{kBatch, 64, 1, 1}));
  EXPECT_EQ(infer1("AdaptiveAveragePool", {{"output_size", {2, 3}}}, {{kBatch, 8, 7, 7}}),
            (SymShape{kBatch, 8, 2, 3}));
}

TEST(OpSchemaTest, FlattenAndReshape) {
  const SymShape x = {kBatch, 16, 5, 5};
  EXPECT_EQ(infer1("Flatten", json::object(), {x}), (SymShape{kBatch, 400}));
  EXPECT_EQ(infer1("Flatten", {{"axis", 2}}, {x}), (SymShape{Dim::named("batch*16"), 25}));
  EXPECT_EQ(infer1("Flatten", {{"axis", 0}}, {{1, 16, 5, 5}}), (SymShape{1, 400}));
  EXPECT_EQ(infer1("Flatten", {{"axis", -1}}, {{2, 16, 5, 5}}), (SymShape{160, 5}));
  EXPECT_EQ(infer1("Flatten", {{"axis", 4}}, {{2, 16, 5, 5}}), (SymShape{800, 1}));
  expect_model_error([&] { infer("Flatten", {{"axis", 5}}, {x}); }, {"attribute 'axis'", "got 5"});

  EXPECT_EQ(infer1("Reshape", {{"shape", {0, 16, 5, 5}}}, {{kBatch, 400}}), x);
  EXPECT_EQ(infer1("Reshape", {{"shape", {-1, 400}}}, {x}), (SymShape{kBatch, 400}));
  EXPECT_EQ(infer1("Reshape", {{"shape", {0, -1}}}, {x}), (SymShape{kBatch, 400}));
  EXPECT_EQ(infer1("Reshape", {{"shape", {4, -1}}}, {{2, 6, 2}}), (SymShape{4, 6}));
  expect_model_error(
      [&] {
        infer("Reshape", {{"shape", {0, 401}}}, {x});
      },
      {"node 'n' (Reshape)", "attribute 'shape'", "got [0, 401]",
       "expected the same number of elements"});
  expect_model_error([&] { infer("Reshape", {{"shape", {-1, -1}}}, {x}); }, {"at most one -1"});
  expect_model_error(
      [&] {
        infer("Reshape", {{"shape", {-1, 7}}}, {x});
      },
      {"same number of elements"});
}

// ---- graphs ---------------------------------------------------------------------------------

Node node(const std::string& name, const std::string& op, std::vector<std::string> inputs,
          json attrs = json::object()) {
  return Node{name, op, std::move(inputs), {name}, std::move(attrs), {}};
}

// input [batch, 1, 8, 8] -> conv -> relu -> flat -> fc [batch, 10]
Graph small_graph() {
  Graph g;
  g.inputs = {ValueInfo{"image", DType::kFloat32, {kBatch, 1, 8, 8}}};
  g.nodes = {node("conv", "Conv", {"image"},
                  {{"out_channels", 4}, {"kernel_shape", {3, 3}}, {"pads", {1, 1, 1, 1}}}),
             node("relu", "Relu", {"conv"}), node("flat", "Flatten", {"relu"}),
             node("fc", "Gemm", {"flat"}, {{"out_features", 10}})};
  g.outputs = {"fc"};
  g.preprocess = {Preprocess::Kind::kNormalize, {0.5}, {0.25}};
  g.task.num_classes = 10;
  return g;
}

Node& find_node(Graph& g, const std::string& name) {
  for (Node& n : g.nodes) {
    if (n.name == name) return n;
  }
  throw std::logic_error("no node " + name);
}

void expect_invalid(const std::function<void(Graph&)>& edit,
                    std::initializer_list<std::string> parts) {
  Graph g = small_graph();
  edit(g);
  expect_model_error([&] { g.validate(); }, parts);
}

TEST(GraphTest, AnalyzeInfersValuesAndParameters) {
  const Graph g = small_graph();
  const GraphInfo info = g.analyze();
  EXPECT_EQ(info.values.at("conv").shape, (SymShape{kBatch, 4, 8, 8}));
  EXPECT_EQ(info.values.at("flat").shape, (SymShape{kBatch, 256}));
  EXPECT_EQ(info.values.at("fc").shape, (SymShape{kBatch, 10}));
  std::vector<std::string> names;
  for (const auto& p : info.params) names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{"conv.weight", "conv.bias", "fc.weight", "fc.bias"}));
  EXPECT_EQ(info.params[2].spec.shape, (std::vector<int64_t>{10, 256}));
  EXPECT_EQ(info.attrs[0]["group"], 1);  // defaults filled in
}

TEST(GraphTest, EveryValidationErrorNamesNodeAndField) {
  expect_invalid([](Graph& g) { find_node(g, "relu").op = "Relux"; },
                 {"node 'relu'", "op", "got 'Relux'", "expected one of", "Relu"});
  expect_invalid([](Graph& g) { find_node(g, "fc").attrs.erase("out_features"); },
                 {"node 'fc' (Gemm)", "attribute 'out_features'", "missing"});
  expect_invalid(
      [](Graph& g) {
        find_node(g, "conv").attrs["stride"] = {1, 1};
      },
      {"node 'conv' (Conv)", "attribute 'stride'", "unknown", "expected one of"});
  expect_invalid(
      [](Graph& g) {
        find_node(g, "relu").inputs = {"conv", "conv"};
      },
      {"node 'relu' (Relu)", "inputs", "got 2 inputs", "expected 1"});
  expect_invalid(
      [](Graph& g) {
        find_node(g, "relu").outputs = {"a", "b"};
      },
      {"node 'relu' (Relu)", "outputs", "got 2 outputs", "expected 1"});
  expect_invalid([](Graph& g) { find_node(g, "relu").inputs = {"nope"}; },
                 {"node 'relu' (Relu)", "input 0", "value 'nope' is not defined"});
  expect_invalid([](Graph& g) { find_node(g, "flat").name = "conv"; },
                 {"node 'conv'", "name", "duplicate node name", "#0"});
  expect_invalid(
      [](Graph& g) { find_node(g, "relu").outputs = {"conv"}; },
      {"node 'relu' (Relu)", "output 0", "value 'conv'", "duplicate value name", "node 'conv'"});
  expect_invalid([](Graph& g) { find_node(g, "relu").outputs = {"image"}; },
                 {"node 'relu' (Relu)", "output 0", "duplicate value name", "graph input"});
  // A cycle, and a list that is not topologically ordered.
  expect_invalid([](Graph& g) { find_node(g, "conv").inputs = {"relu"}; },
                 {"node 'conv' (Conv)", "input 0", "value 'relu' is produced by node 'relu' (#1)",
                  "topological order"});
  expect_invalid([](Graph& g) { find_node(g, "relu").inputs = {"relu"}; },
                 {"node 'relu' (Relu)", "input 0", "itself"});
  expect_invalid([](Graph& g) { std::swap(g.nodes[1], g.nodes[2]); },
                 {"node 'flat' (Flatten)", "value 'relu' is produced by node 'relu' (#2)",
                  "defined before node #1"});
  // Shapes that do not agree.
  expect_invalid(
      [](Graph& g) { g.nodes.erase(g.nodes.begin() + 2), find_node(g, "fc").inputs = {"relu"}; },
      {"node 'fc' (Gemm)", "input 0", "got shape [batch, 4, 8, 8]", "expected rank 2"});
  expect_invalid(
      [](Graph& g) {
        g.inputs[0].shape[1] = Dim(2);
        g.nodes.insert(g.nodes.begin() + 2, node("sum", "Add", {"relu", "image"}));
        find_node(g, "flat").inputs = {"sum"};
      },
      {"node 'sum' (Add)", "inputs", "[batch, 4, 8, 8] and [batch, 2, 8, 8]",
       "axis 1 has 4 and 2"});
  // Outputs that do not fit the task.
  expect_invalid([](Graph& g) { find_node(g, "fc").attrs["out_features"] = 12; },
                 {"task classification", "output 'fc'", "got float32 [batch, 12]",
                  "expected float32 [batch, 10]"});
  expect_invalid(
      [](Graph& g) { g.outputs = {"flat"}; },
      {"task classification", "got float32 [batch, 256]", "expected float32 [batch, 10]"});
  expect_invalid(
      [](Graph& g) {
        g.outputs = {"fc", "flat"};
      },
      {"task classification", "outputs", "got 2 outputs, expected 1"});
  expect_invalid([](Graph& g) { g.outputs = {"logits"}; },
                 {"output 0", "value 'logits' is not defined"});
  expect_invalid([](Graph& g) { g.task.num_classes = 1; }, {"num_classes", "got 1"});
  // Inputs, dtypes, preprocessing.
  expect_invalid([](Graph& g) { g.inputs[0].dtype = DType::kInt64; },
                 {"node 'conv' (Conv)", "input 0", "value 'image' is int64, expected float32"});
  expect_invalid([](Graph& g) { g.inputs[0].shape[0] = Dim::named("bat ch"); },
                 {"input 0 'image'", "shape", "symbols like 'batch'"});
  expect_invalid([](Graph& g) { g.inputs[0].shape[2] = Dim(0); },
                 {"input 0 'image'", "shape", "got [batch, 1, 0, 8]"});
  expect_invalid([](Graph& g) { g.inputs.push_back(g.inputs[0]); },
                 {"input 1 'image'", "duplicate value name"});
  expect_invalid(
      [](Graph& g) {
        g.preprocess.mean = {0.1, 0.2, 0.3};
      },
      {"preprocess", "mean", "got 3 values, expected 1 or 1"});
  expect_invalid([](Graph& g) { g.preprocess.std = {0.0}; }, {"preprocess", "std", "got 0"});
  expect_invalid(
      [](Graph& g) {
        g.nodes.clear();
        g.outputs = {"image"};
      },
      {"task classification", "output 'image'"});
}

TEST(GraphTest, ParameterNamesAndOverrides) {
  Graph g = small_graph();
  find_node(g, "conv").params = {{"weight", "features.0.weight"}};
  std::vector<std::string> names;
  for (const auto& p : g.parameters()) names.push_back(p.name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"features.0.weight", "conv.bias", "fc.weight", "fc.bias"}));
  find_node(g, "conv").params = {{"kernel", "x"}};
  expect_model_error([&] { g.validate(); },
                     {"node 'conv' (Conv)", "params", "role 'kernel' unknown", "bias, weight"});
  find_node(g, "conv").params = {{"weight", "fc.weight"}};
  expect_model_error([&] { g.validate(); }, {"node 'fc' (Gemm)", "params", "'fc.weight'",
                                             "already a parameter of node 'conv'"});
  find_node(g, "conv").params = {};
  find_node(g, "relu").params = {{"weight", "w"}};
  expect_model_error([&] { g.validate(); }, {"node 'relu' (Relu)", "params", "no parameters"});
}

TEST(GraphTest, OverflowInAGraphIsAnError) {
  Graph g = small_graph();
  g.inputs[0].shape = {kBatch, 1, kMaxDimSize, kMaxDimSize};
  find_node(g, "conv").attrs["kernel_shape"] = {1, 1};
  find_node(g, "conv").attrs.erase("pads");
  expect_model_error([&] { g.validate(); }, {"node 'flat' (Flatten)", "integer overflow"});
  g = small_graph();
  find_node(g, "conv").attrs["pads"] = {2147483634, 2147483634, 2147483634, 2147483634};
  expect_model_error([&] { g.validate(); }, {"node 'conv' (Conv)", "attribute 'pads'", "2147483634",
                                             "expected values in"});
  // A window product beyond kMaxDimSize is caught where it is produced.
  g = small_graph();
  g.inputs[0].shape = {kBatch, 1, 1 << 30, 1 << 30};
  find_node(g, "conv").attrs["kernel_shape"] = {1, 1};
  expect_model_error([&] { g.validate(); },
                     {"node 'flat' (Flatten)", "output 0 'flat'", "expected sizes in"});
}

// ---- the document ---------------------------------------------------------------------------

TEST(GraphDocumentTest, RoundTripIsExact) {
  Graph g = small_graph();
  find_node(g, "conv").params = {{"weight", "features.0.weight"}};
  const std::string text = g.to_json_text(2);
  const Graph again = Graph::from_json_text(text);
  EXPECT_EQ(again, g);
  EXPECT_EQ(again.to_json_text(2), text);
  const json doc = json::parse(text);
  EXPECT_EQ(doc["format"], "mcompress-graph");
  EXPECT_EQ(doc["version"], 1);
  EXPECT_EQ(doc["inputs"][0]["shape"], json::parse(R"(["batch", 1, 8, 8])"));
  for (const auto& entry : zoo_entries()) {
    const Graph z = Graph::from_sequential(zoo_spec(entry.name));
    EXPECT_EQ(Graph::from_json_text(z.to_json_text()), z) << entry.name;
  }
}

void expect_doc_error(const std::function<void(json&)>& edit,
                      std::initializer_list<std::string> parts) {
  json doc = small_graph().to_json();
  edit(doc);
  expect_model_error([&] { Graph::from_json_text(doc.dump()); }, parts);
}

TEST(GraphDocumentTest, StructureErrorsGiveTheJsonPath) {
  expect_doc_error([](json& d) { d["nodes"][0]["inputs"][0] = 5; },
                   {"graph document", "$.nodes[0].inputs[0]", "got 5", "expected a string"});
  expect_doc_error([](json& d) { d["nodes"][1]["kind"] = "x"; },
                   {"$.nodes[1]", "unknown key 'kind'"});
  expect_doc_error([](json& d) { d["nodes"][1].erase("op"); }, {"$.nodes[1]", "missing key 'op'"});
  expect_doc_error([](json& d) { d["extra"] = 1; }, {"$", "unknown key 'extra'"});
  expect_doc_error([](json& d) { d["format"] = "onnx"; },
                   {"$.format", "got 'onnx'", "expected 'mcompress-graph'"});
  expect_doc_error([](json& d) { d["version"] = 2; }, {"$.version", "got 2", "up to 1"});
  expect_doc_error([](json& d) { d["version"] = "1"; }, {"$.version", "expected an integer"});
  expect_doc_error([](json& d) { d["inputs"][0]["dtype"] = "float16"; },
                   {"$.inputs[0].dtype", "got 'float16'"});
  expect_doc_error([](json& d) { d["inputs"][0]["shape"][1] = 18446744073709551615ULL; },
                   {"$.inputs[0].shape[1]", "expected an integer in [1, "});
  expect_doc_error([](json& d) { d["inputs"][0]["shape"][1] = -3; }, {"$.inputs[0].shape[1]"});
  expect_doc_error([](json& d) { d["nodes"][0]["attrs"]["group"] = "one"; },
                   {"$.nodes[0].attrs.group", "expected a number or a list"});
  expect_doc_error([](json& d) { d["nodes"][0]["attrs"] = json::array(); },
                   {"$.nodes[0].attrs", "expected an object"});
  expect_doc_error([](json& d) { d["nodes"][0]["params"]["weight"] = 1; },
                   {"$.nodes[0].params.weight", "expected a string"});
  expect_doc_error([](json& d) { d["task"]["kind"] = "regression"; },
                   {"$.task.kind", "got 'regression'", "expected classification"});
  expect_doc_error(
      [](json& d) {
        d["preprocess"] = {{"kind", "normalize"}, {"mean", {0.5}}};
      },
      {"$.preprocess", "missing key 'std'"});
  expect_doc_error([](json& d) { d["preprocess"]["std"][0] = nullptr; },
                   {"$.preprocess.std[0]", "expected a number"});
  expect_doc_error([](json& d) { d["nodes"][2]["name"] = std::string(5000, 'x'); },
                   {"$.nodes[2].name", "5000 characters", "expected 1 to 1024"});
  expect_doc_error([](json& d) { d["nodes"][2]["name"] = ""; }, {"$.nodes[2].name"});
  expect_doc_error(
      [](json& d) {
        d["nodes"] = json::array();
        d["nodes"].get_ref<json::array_t&>().resize(kGraphMaxNodes + 1);
      },
      {"$.nodes", "expected at most 100000"});
  // Graph errors found after parsing still name the node.
  expect_doc_error([](json& d) { d["nodes"][0]["attrs"]["group"] = 3; },
                   {"node 'conv' (Conv)", "attribute 'group'"});
  expect_model_error([] { Graph::from_json_text("{\"format\": "); },
                     {"graph document", "not valid JSON"});
  expect_model_error([] { Graph::from_json_text("[]"); }, {"$", "expected an object"});
  expect_model_error([] { Graph::from_json_text(R"({"format": 1e400})"); },
                     {"graph document", "not valid JSON", "number overflow"});
}

TEST(GraphDocumentTest, DeepNestingIsRejectedBeforeParsing) {
  // 1 MB of brackets: rejected by the scan, never handed to the recursive parts.
  const std::string deep(1 << 20, '[');
  expect_model_error([&] { Graph::from_json_text(deep); },
                     {"graph document", "nested deeper than 64 levels"});
  std::string nested_attr = small_graph().to_json().dump();
  const std::string key = "\"attrs\":{";
  nested_attr.insert(nested_attr.find(key) + key.size(),
                     "\"x\":" + std::string(70, '[') + std::string(70, ']') + ",");
  expect_model_error([&] { Graph::from_json_text(nested_attr); }, {"nested deeper than 64"});
  // Brackets inside strings do not count.
  Graph g = small_graph();
  g.nodes[1].name = std::string(100, '[') + "\\\"";
  g.nodes[2].inputs = {g.nodes[1].name};
  g.nodes[1].outputs = {g.nodes[1].name};
  EXPECT_EQ(Graph::from_json_text(g.to_json_text()), g);
  // The same bound on an already parsed document.
  json doc = small_graph().to_json();
  json value = 1;
  for (int i = 0; i < 70; ++i) value = json::array({value});
  doc["nodes"][0]["attrs"]["x"] = value;
  expect_model_error([&] { Graph::from_json(doc); }, {"nested deeper than 64"});
}

TEST(GraphDocumentTest, MutatedDocumentsFailCleanly) {
  // Random edits of a valid document either read or throw ModelError, nothing else.
  const std::string text = Graph::from_sequential(zoo_spec("resnet8")).to_json_text();
  const std::string alphabet = "[]{}\",:0123456789-.eE+ abtnullfsx";
  std::mt19937_64 rng(7);
  int read = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    std::string doc = text;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % doc.size();
      const char ch = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          doc[at] = ch;
          break;
        case 1:
          doc.insert(at, 1, ch);
          break;
        default:
          doc.erase(at, 1);
          break;
      }
    }
    try {
      Graph::from_json_text(doc);
      ++read;
    } catch (const ModelError& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not a ModelError: " << e.what() << "\nfor: " << doc;
    }
  }
  EXPECT_LT(read, 2000);  // most edits break something
}

// ---- from_sequential --------------------------------------------------------------------------

std::vector<std::string> network_tensor_names(const ArchSpec& spec) {
  // named_parameters() and named_buffers() of the torch::nn network, as the model file names
  // them: without the "layers." prefix and without the num_batches_tracked counters, which
  // the model file leaves out too.
  testing::ReferenceNetwork net(spec);
  std::vector<std::string> names;
  const std::string prefix = "layers.";
  for (const auto& item : net->named_parameters())
    names.push_back(item.key().substr(prefix.size()));
  for (const auto& item : net->named_buffers()) {
    if (item.key().find("num_batches_tracked") != std::string::npos) continue;
    names.push_back(item.key().substr(prefix.size()));
  }
  std::sort(names.begin(), names.end());
  return names;
}

void expect_same_as_sequential(const ArchSpec& spec, const std::string& label) {
  const Graph g = Graph::from_sequential(spec);
  const GraphInfo info = g.analyze();
  // Parameter names: equal to the network's state, and to ArchSpec::tensors() in order, shape
  // and trainability.
  std::vector<std::string> graph_names;
  for (const auto& p : info.params) graph_names.push_back(p.name);
  std::vector<std::string> sorted = graph_names;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, network_tensor_names(spec)) << label;
  const auto tensors = spec.resolved().tensors();
  ASSERT_EQ(info.params.size(), tensors.size()) << label;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    const auto& p = info.params[i];
    EXPECT_EQ(p.name, t.name) << label;
    EXPECT_EQ(p.spec.shape, t.shape) << label << " " << t.name;
    const bool trainable = t.role == TensorRole::kWeight || t.role == TensorRole::kBias;
    EXPECT_EQ(p.spec.trainable, trainable) << label << " " << t.name;
    // Compressible: the conv/linear weights (what pruning and int8 weight quantization take).
    const bool compressible =
        t.role == TensorRole::kWeight && (t.shape.size() == 2 || t.shape.size() == 4);
    EXPECT_EQ(p.spec.compressible, compressible) << label << " " << t.name;
  }
  // Shapes: every layer's output value has the spec's shape behind the batch axis.
  const auto shapes = spec.infer_shapes();
  for (size_t i = 0; i < shapes.size(); ++i) {
    SymShape expected = {kBatch};
    for (int64_t d : shapes[i]) expected.push_back(Dim(d));
    EXPECT_EQ(info.values.at(std::to_string(i)).shape, expected) << label << " layer " << i;
  }
  ASSERT_EQ(g.outputs.size(), 1u);
  EXPECT_EQ(info.values.at(g.outputs[0]).shape, (SymShape{kBatch, spec.num_classes})) << label;
  EXPECT_EQ(g.preprocess.kind, Preprocess::Kind::kNormalize);
  EXPECT_EQ(g.preprocess.mean, spec.mean);
  EXPECT_EQ(g.preprocess.std, spec.std);
  EXPECT_EQ(g.task.num_classes, spec.num_classes);
}

TEST(FromSequentialTest, EveryZooModelKeepsTensorNamesAndShapes) {
  for (const auto& entry : zoo_entries()) {
    expect_same_as_sequential(zoo_spec(entry.name), entry.name);
  }
}

TEST(FromSequentialTest, ResidualBlockExpansion) {
  const Graph g = Graph::from_sequential(zoo_spec("resnet8"));
  std::vector<std::string> names;
  for (const auto& n : g.nodes) names.push_back(n.name + ":" + n.op);
  const std::vector<std::string> block4 = {"4.conv1:Conv",
                                           "4.bn1:BatchNormalization",
                                           "4.relu1:Relu",
                                           "4.conv2:Conv",
                                           "4.bn2:BatchNormalization",
                                           "4.shortcut.0:Conv",
                                           "4.shortcut.1:BatchNormalization",
                                           "4.add:Add",
                                           "4:Relu"};
  auto at = std::find(names.begin(), names.end(), block4[0]);
  ASSERT_NE(at, names.end());
  EXPECT_EQ(std::vector<std::string>(at, at + static_cast<long>(block4.size())), block4);
  // Block 3 has an identity shortcut: Add takes the block's input.
  for (const auto& n : g.nodes) {
    if (n.name == "3.add") {
      EXPECT_EQ(n.inputs, (std::vector<std::string>{"3.bn2", "2"}));
    }
    if (n.name == "4.add") {
      EXPECT_EQ(n.inputs, (std::vector<std::string>{"4.bn2", "4.shortcut.1"}));
    }
    if (n.name == "4.shortcut.0") {
      EXPECT_EQ(n.inputs, (std::vector<std::string>{"3"}));
    }
    if (n.op == "BatchNormalization") {
      EXPECT_DOUBLE_EQ(n.attrs["momentum"].get<double>(), 0.9) << n.name;  // PyTorch's 0.1
    }
  }
}

TEST(FromSequentialTest, EveryLayerType) {
  const ArchSpec spec = ArchSpec::from_json_text(R"({"name":"all","input_shape":[4,16,16],
    "num_classes":10,"mean":[0.1,0.2,0.3,0.4],"std":[1,2,3,4],"layers":[
    {"type":"conv2d","out_channels":8,"kernel_size":3,"padding":1,"groups":4,"bias":false},
    {"type":"batchnorm2d","eps":0.001,"momentum":0.3},{"type":"relu"},
    {"type":"avgpool2d","kernel_size":2,"padding":1},
    {"type":"maxpool2d","kernel_size":3,"stride":2},
    {"type":"residual","out_channels":16,"stride":2},
    {"type":"residual","projection":true},
    {"type":"adaptive_avgpool2d","output_size":2},{"type":"flatten"},
    {"type":"linear","out_features":32},{"type":"batchnorm1d"},{"type":"relu"},
    {"type":"dropout","p":0.25},{"type":"linear","out_features":10,"bias":false}]})");
  expect_same_as_sequential(spec, "all");
  const Graph g = Graph::from_sequential(spec);
  std::map<std::string, const Node*> by_name;
  for (const auto& n : g.nodes) by_name[n.name] = &n;
  EXPECT_EQ(by_name.at("0")->attrs["group"], 4);
  EXPECT_EQ(by_name.at("3")->op, "AveragePool");
  EXPECT_EQ(by_name.at("3")->attrs["count_include_pad"], 1);
  EXPECT_EQ(by_name.at("7")->op, "AdaptiveAveragePool");
  EXPECT_EQ(by_name.at("12")->attrs["ratio"], 0.25);
  EXPECT_NEAR(by_name.at("1")->attrs["momentum"].get<double>(), 0.7, 1e-15);
  EXPECT_EQ(by_name.count("6.shortcut.0"), 1u);  // forced projection
  // A spec with a flat input: [batch, D].
  const ArchSpec flat = ArchSpec::from_json_text(R"({"input_shape":[20],"num_classes":3,
    "layers":[{"type":"linear","out_features":3}]})");
  expect_same_as_sequential(flat, "flat");
}

}  // namespace
}  // namespace mcompress
