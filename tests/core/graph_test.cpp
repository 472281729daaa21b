#include <gtest/gtest.h>

#include <functional>
#include <initializer_list>
#include <set>
#include <string>
#include <vector>

#include "mcompress/core/error.h"
#include "mcompress/core/op_schema.h"

namespace mcompress {
namespace {

using json = nlohmann::json;

const Dim kBatch = Dim::named("batch");

// Expects fn to throw ModelError whose message contains every one of `parts`.
void expect_error(const std::function<void()>& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected a ModelError, nothing thrown";
  } catch (const ModelError& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    for (const auto& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos)
          << "missing '" << part << "' in: " << message;
    }
  }
}

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
  expect_error([] { op_schema("Convolution"); }, {"unknown op 'Convolution'", "Conv, Gemm"});
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
  expect_error(
      [&] {
        infer("Conv", with("group", 3), {{kBatch, 4, 8, 8}});
      },
      {"node 'n' (Conv)", "attribute 'group'", "got 3", "4 input channels"});
  expect_error(
      [&] {
        infer("Conv", with("strides", {0, 1}), {{kBatch, 4, 8, 8}});
      },
      {"node 'n' (Conv)", "attribute 'strides'", "got [0,1]", "[1, 65536]"});
  expect_error(
      [&] {
        infer("Conv", with("kernel_shape", {0, 3}), {{kBatch, 4, 8, 8}});
      },
      {"attribute 'kernel_shape'", "got [0,3]"});
  expect_error(
      [&] {
        infer("Conv", with("pads", {-1, 0, 0, 0}), {{kBatch, 4, 8, 8}});
      },
      {"attribute 'pads'", "got [-1,0,0,0]"});
  expect_error(
      [&] {
        infer("Conv", with("pads", {1, 1}), {{kBatch, 4, 8, 8}});
      },
      {"attribute 'pads'", "got 2 values", "expected 4"});
  expect_error(
      [&] {
        infer("Conv", with("kernel_shape", {3}), {{kBatch, 4, 8, 8}});
      },
      {"attribute 'kernel_shape'", "expected 2"});
  expect_error(
      [&] {
        infer("Conv", with("kernel_shape", {9, 9}), {{kBatch, 4, 8, 8}});
      },
      {"node 'n' (Conv)", "input 0", "smaller than the kernel extent 9",
       "output size would be <= 0"});
  expect_error(
      [&] {
        infer("Conv", with("stride", 1), {{kBatch, 4, 8, 8}});
      },
      {"attribute 'stride'", "unknown", "strides"});
  expect_error(
      [&] {
        infer("Conv", {{"kernel_shape", {3, 3}}}, {{kBatch, 4, 8, 8}});
      },
      {"attribute 'out_channels'", "missing"});
  expect_error(
      [&] {
        infer("Conv", with("group", 1.5), {{kBatch, 4, 8, 8}});
      },
      {"attribute 'group'", "got 1.5", "expected an integer"});
  expect_error(
      [&] {
        infer("Conv", base, {{kBatch, 4}});
      },
      {"input 0", "got shape [batch, 4]", "expected rank >= 3"});
  expect_error(
      [&] {
        infer("Conv", base, {{kBatch, Dim::named("c"), 8, 8}});
      },
      {"input 0", "channel count", "'c'"});
}

TEST(OpSchemaTest, HugePaddingIsAnErrorNotOverflow) {
  json a = {{"out_channels", 8}, {"kernel_shape", {3, 3}}, {"pads", {2147483634, 0, 0, 0}}};
  expect_error(
      [&] {
        infer("Conv", a, {{kBatch, 3, 28, 28}});
      },
      {"node 'n' (Conv)", "attribute 'pads'", "2147483634", "[0, 65536]"});
  json b = {{"kernel_shape", {3, 3}}, {"pads", {0, 0, 9223372036854775807LL, 0}}};
  expect_error([&] { infer("MaxPool", b, {{kBatch, 3, 28, 28}}); }, {"attribute 'pads'"});
  // Products of large dimensions are checked, not wrapped.
  const Dim big(kMaxDimSize);
  expect_error(
      [&] {
        infer("Flatten", {{"axis", 1}}, {{kBatch, big, big, big}});
      },
      {"node 'n' (Flatten)", "integer overflow"});
  expect_error([&] { infer("Reshape", {{"shape", {-1}}}, {{big, big}}); }, {"integer overflow"});
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
  expect_error(
      [] {
        infer("Gemm", {{"out_features", 10}}, {{kBatch, 16, 5, 5}});
      },
      {"node 'n' (Gemm)", "input 0", "got shape [batch, 16, 5, 5]", "expected rank 2"});
  expect_error(
      [] {
        infer("Gemm", {{"out_features", 0}}, {{kBatch, 5}});
      },
      {"attribute 'out_features'", "got 0"});

  EXPECT_EQ(infer1("MatMul", json::object(), {{kBatch, 4, 5}, {5, 6}}), (SymShape{kBatch, 4, 6}));
  EXPECT_EQ(infer1("MatMul", json::object(), {{2, 1, 4, 5}, {3, 5, 6}}), (SymShape{2, 3, 4, 6}));
  EXPECT_EQ(infer1("MatMul", json::object(), {{5}, {5, 6}}), (SymShape{6}));
  EXPECT_EQ(infer1("MatMul", json::object(), {{4, 5}, {5}}), (SymShape{4}));
  EXPECT_TRUE(infer("MatMul", json::object(), {{4, 5}, {5, 6}}).params.empty());
  expect_error(
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
  expect_error(
      [] {
        infer("Add", json::object(), {{kBatch, 16, 8, 8}, {kBatch, 32, 4, 4}});
      },
      {"node 'n' (Add)", "inputs", "[batch, 16, 8, 8] and [batch, 32, 4, 4]",
       "axis 1 has 16 and 32"});

  EXPECT_EQ(infer1("Concat", {{"axis", 1}}, {{kBatch, 3, 4, 4}, {kBatch, 5, 4, 4}}),
            (SymShape{kBatch, 8, 4, 4}));
  EXPECT_EQ(infer1("Concat", {{"axis", -1}}, {{kBatch, 3}, {kBatch, 5}, {kBatch, 1}}),
            (SymShape{kBatch, 9}));
  expect_error(
      [] {
        infer("Concat", {{"axis", 1}}, {{kBatch, 3, 4, 4}, {kBatch, 5, 4, 5}});
      },
      {"node 'n' (Concat)", "input 1", "got shape [batch, 5, 4, 5]",
       "expected [batch, 3, 4, 4] except on axis 1"});
  expect_error(
      [] {
        infer("Concat", {{"axis", 4}}, {{kBatch, 3, 4, 4}});
      },
      {"attribute 'axis'", "got 4", "[-4, 3]"});
  expect_error(
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
  expect_error(
      [&] {
        infer("Clip", {{"min", 6.0}, {"max", 0.0}}, {x});
      },
      {"node 'n' (Clip)", "attribute 'min'", "expected min <= max"});
  expect_error(
      [&] {
        infer("Dropout", {{"ratio", 1.0}}, {x});
      },
      {"node 'n' (Dropout)", "attribute 'ratio'", "got 1.0"});
  expect_error(
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
  expect_error(
      [] {
        infer("BatchNormalization", {{"epsilon", 0}}, {{kBatch, 4}});
      },
      {"attribute 'epsilon'", "got 0"});
  expect_error(
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
  expect_error(
      [] {
        infer("MaxPool", {{"kernel_shape", {2, 2}}, {"pads", {2, 2, 2, 2}}}, {{kBatch, 3, 8, 8}});
      },
      {"node 'n' (MaxPool)", "attribute 'pads'", "half the kernel extent 2"});
  expect_error(
      [] {
        infer("AveragePool", {{"kernel_shape", {2, 2}}, {"dilations", {1, 1}}},
              {{kBatch, 3, 8, 8}});
      },
      {"attribute 'dilations'", "unknown"});
  expect_error(
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
  expect_error([&] { infer("Flatten", {{"axis", 5}}, {x}); }, {"attribute 'axis'", "got 5"});

  EXPECT_EQ(infer1("Reshape", {{"shape", {0, 16, 5, 5}}}, {{kBatch, 400}}), x);
  EXPECT_EQ(infer1("Reshape", {{"shape", {-1, 400}}}, {x}), (SymShape{kBatch, 400}));
  EXPECT_EQ(infer1("Reshape", {{"shape", {0, -1}}}, {x}), (SymShape{kBatch, 400}));
  EXPECT_EQ(infer1("Reshape", {{"shape", {4, -1}}}, {{2, 6, 2}}), (SymShape{4, 6}));
  expect_error(
      [&] {
        infer("Reshape", {{"shape", {0, 401}}}, {x});
      },
      {"node 'n' (Reshape)", "attribute 'shape'", "got [0, 401]",
       "expected the same number of elements"});
  expect_error([&] { infer("Reshape", {{"shape", {-1, -1}}}, {x}); }, {"at most one -1"});
  expect_error([&] { infer("Reshape", {{"shape", {-1, 7}}}, {x}); }, {"same number of elements"});
}

}  // namespace
}  // namespace mcompress
