// ONNX export: the graph's structure (always), and its outputs in ONNX Runtime against our
// runtime's on the same inputs (when node and the onnxruntime-node package are installed).

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <onnx/onnx_pb.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>

#include "mcompress/core/error.h"
#include "mcompress/core/train.h"
#include "mcompress/core/zoo.h"
#include "mcompress/core/zoo_graphs.h"
#include "mcompress/interop/onnx.h"
#include "mcompress/quant/quantize.h"
#include "mcompress/runtime/executor.h"
#include "test_support.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

onnx::ModelProto parse(const std::string& bytes) {
  onnx::ModelProto proto;
  EXPECT_TRUE(proto.ParseFromString(bytes)) << "not a serialized ModelProto";
  return proto;
}

std::map<std::string, int> op_counts(const onnx::ModelProto& proto) {
  std::map<std::string, int> counts;
  for (const auto& n : proto.graph().node()) ++counts[n.op_type()];
  return counts;
}

// Initializer element types by name.
std::map<std::string, int> initializer_types(const onnx::ModelProto& proto) {
  std::map<std::string, int> types;
  for (const auto& t : proto.graph().initializer()) types[t.name()] = t.data_type();
  return types;
}

// Runs exported models in ONNX Runtime through tests/interop/run_onnx.js.
class OrtRunner {
 public:
  OrtRunner() {
    const char* env = std::getenv("MCOMPRESS_ORT_NODE_DIR");
    dir_ = env != nullptr && *env != '\0' ? env : MCOMPRESS_ORT_NODE_DIR;
    if (std::system("node --version > /dev/null 2>&1") != 0) {
      missing_ = "node is not on PATH (install Node.js with npm, then run scripts/setup.sh)";
    } else if (!fs::exists(fs::path(dir_) / "node_modules" / "onnxruntime-node" / "package.json")) {
      missing_ = "the onnxruntime-node package is not installed in " + dir_ +
                 " (run scripts/setup.sh, or npm ci --ignore-scripts there)";
    }
  }
  /// Why ORT cannot run here ("" when it can).
  const std::string& missing() const { return missing_; }

  /// Logits of `model_path` on `input`; writes ORT's optimized graph to `optimized` if given.
  at::Tensor run(const std::string& model_path, const at::Tensor& input, const TempDir& tmp,
                 const std::string& optimized = "") const {
    const auto in = input.contiguous().to(at::kFloat);
    testing::write_bytes(tmp.file("input.f32"),
                         std::string(static_cast<const char*>(in.data_ptr()), in.nbytes()));
    std::string dims;
    for (int64_t d : in.sizes()) dims += (dims.empty() ? "" : ",") + std::to_string(d);
    const std::string command = "node " + std::string(MCOMPRESS_ONNX_RUNNER) + " '" + dir_ + "' '" +
                                model_path + "' '" + tmp.file("input.f32") + "' " + dims + " '" +
                                tmp.file("output.f32") + "' " +
                                (optimized.empty() ? "" : "'" + optimized + "'");
    const auto r = testing::run_shell(command);
    EXPECT_EQ(r.code, 0) << command << "\n" << r.out;
    if (r.code != 0) return {};
    const std::string bytes = testing::read_bytes(tmp.file("output.f32"));
    auto out = at::empty({static_cast<int64_t>(bytes.size() / sizeof(float))}, at::kFloat);
    std::memcpy(out.data_ptr(), bytes.data(), bytes.size());
    return out.reshape({in.size(0), -1});
  }

 private:
  std::string dir_;
  std::string missing_;
};

const OrtRunner& ort() {
  static const OrtRunner runner;
  return runner;
}

#define SKIP_WITHOUT_ORT()      \
  if (!ort().missing().empty()) \
  GTEST_SKIP() << "ONNX Runtime comparison skipped: " << ort().missing()

// Every BatchNormalization node's statistics and affine parameters away from their initial
// 0/1, so that folding and eps matter (a chain's batchnorms too: its graph has them).
void randomize_batchnorms(Model& model, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::NoGradGuard no_grad;
  const Graph& graph = model.graph();
  std::map<std::string, std::string> op_of;
  for (const Node& n : graph.nodes) op_of[n.name] = n.op;
  for (const GraphParam& p : graph.analyze().params) {
    if (op_of.at(p.node) != "BatchNormalization") continue;
    auto& t = model.tensor(p.name);
    if (p.spec.role == "running_mean") t.copy_(at::randn(t.sizes(), gen) * 0.1);
    if (p.spec.role == "running_var") t.copy_(at::rand(t.sizes(), gen) + 0.5);
    if (p.spec.role == "weight") t.copy_(at::randn(t.sizes(), gen) * 0.2 + 1);
    if (p.spec.role == "bias") t.copy_(at::randn(t.sizes(), gen) * 0.1);
  }
}

at::Tensor run_ours(const Model& model, const at::Tensor& x, runtime::KernelPolicy policy) {
  runtime::ExecutorOptions o;
  o.policy = policy;
  o.batch_size = x.size(0);
  return runtime::Executor(model, o).run(x);
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

double top1_agreement(const at::Tensor& a, const at::Tensor& b) {
  return a.argmax(1).eq(b.argmax(1)).to(at::kDouble).mean().item<double>();
}

// Small data the models learn quickly (tests/support); images in [0, 1] like Fashion-MNIST.
const Dataset& data() {
  static const Dataset d = testing::block_images(512, 7);
  return d;
}

// A zoo model trained briefly, so that int8 comparisons have confident, meaningful logits.
const Model& trained(const std::string& name) {
  static std::map<std::string, Model> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    it = cache
             .emplace(name, testing::quickly_trained(name, data().slice(0, 384),
                                                     data().slice(384, 512), 1))
             .first;
  }
  return it->second;
}

Model quantized(const std::string& name, quant::QuantMode mode) {
  Model m = trained(name).clone();
  quant::QuantizeOptions o;
  o.mode = mode;
  o.calib_batches = 4;  // a quick calibration on the training images
  o.calib_batch_size = 32;
  quant::quantize_model(m, o, data().slice(0, 128), Dataset{});
  return m;
}

// ---- structure (no ONNX Runtime needed) ----

TEST(OnnxExport, Fp32GraphHasTheSpecsOpsAndDynamicBatch) {
  const Model m = Model::initialize(zoo_spec("resnet8"), 1);
  interop::OnnxExportInfo info;
  const auto proto = parse(interop::onnx_model_bytes(m, {}, &info));
  EXPECT_EQ(proto.opset_import(0).version(), 13);
  const auto ops = op_counts(proto);
  EXPECT_EQ(ops.at("Sub"), 1);  // normalisation baked in
  EXPECT_EQ(ops.at("Div"), 1);
  EXPECT_EQ(ops.at("Conv"), 1 + 3 * 2 + 2);  // stem, two per block, two projections
  EXPECT_EQ(ops.at("BatchNormalization"), 1 + 3 * 2 + 2);
  EXPECT_EQ(ops.at("Add"), 3);
  EXPECT_EQ(ops.at("GlobalAveragePool"), 1);
  EXPECT_EQ(ops.at("Gemm"), 1);
  EXPECT_EQ(ops.count("QuantizeLinear"), 0u);
  EXPECT_EQ(info.nodes, proto.graph().node_size());
  const auto& in = proto.graph().input(0);
  EXPECT_EQ(in.name(), "input");
  EXPECT_EQ(in.type().tensor_type().shape().dim(0).dim_param(), "batch");
  EXPECT_EQ(in.type().tensor_type().shape().dim(1).dim_value(), 1);
  EXPECT_EQ(proto.graph().output(0).name(), "logits");
  EXPECT_EQ(proto.graph().output(0).type().tensor_type().shape().dim(1).dim_value(), 10);
  for (const auto& [name, type] : initializer_types(proto)) {
    EXPECT_TRUE(type == onnx::TensorProto::FLOAT || type == onnx::TensorProto::INT64) << name;
  }
}

TEST(OnnxExport, Fp16ModelHasHalfInitializersCastToFloat) {
  const Model m = quantized("lenet5", quant::QuantMode::kFp16);
  const auto proto = parse(interop::onnx_model_bytes(m));
  int half = 0;
  for (const auto& [name, type] : initializer_types(proto)) {
    if (name.rfind("input_", 0) == 0) continue;  // mean/std of the normalisation
    EXPECT_EQ(type, onnx::TensorProto::FLOAT16) << name;
    half += type == onnx::TensorProto::FLOAT16;
  }
  EXPECT_EQ(half, static_cast<int>(m.quant.tensors.size()));
  EXPECT_EQ(op_counts(proto).at("Cast"), half);
}

TEST(OnnxExport, Int8StaticModelIsQdqWithInt8WeightsAndInt32Biases) {
  const Model m = quantized("lenet5", quant::QuantMode::kInt8Static);
  const auto proto = parse(interop::onnx_model_bytes(m));
  const auto ops = op_counts(proto);
  const auto types = initializer_types(proto);
  // Input + 5 conv/linear outputs (pools and flatten requantize with the same qparams).
  EXPECT_GE(ops.at("QuantizeLinear"), 6);
  EXPECT_EQ(ops.at("DequantizeLinear"), ops.at("QuantizeLinear") + 5 /*weights*/ + 5 /*biases*/);
  for (const char* w : {"0.weight_int8", "3.weight_int8", "7.weight_int8", "11.weight_int8"}) {
    EXPECT_EQ(types.at(w), onnx::TensorProto::INT8) << w;
  }
  EXPECT_EQ(types.at("0.bias_int32"), onnx::TensorProto::INT32);
  EXPECT_EQ(types.at("act_input_zero_point"), onnx::TensorProto::UINT8);
  // Per-channel weight scales on axis 0.
  for (const auto& n : proto.graph().node()) {
    if (n.op_type() == "DequantizeLinear" && n.input(0) == "0.weight_int8") {
      ASSERT_EQ(n.attribute_size(), 1);
      EXPECT_EQ(n.attribute(0).name(), "axis");
      EXPECT_EQ(n.attribute(0).i(), 0);
    }
  }
  // No float copy of a quantized weight.
  EXPECT_EQ(types.count("0.weight"), 0u);
}

TEST(OnnxExport, Int8DynamicLinearUsesIntegerMatMul) {
  const Model m = quantized("mlp", quant::QuantMode::kInt8Dynamic);
  const auto proto = parse(interop::onnx_model_bytes(m));
  const auto ops = op_counts(proto);
  EXPECT_EQ(ops.at("DynamicQuantizeLinear"), 3);
  EXPECT_EQ(ops.at("MatMulInteger"), 3);
  EXPECT_EQ(ops.count("Gemm"), 0u);
  EXPECT_EQ(initializer_types(proto).at("1.weight_int8_t"), onnx::TensorProto::INT8);
}

TEST(OnnxExport, CodebookAndPrunedTensorsAreWrittenDense) {
  Model m = Model::initialize(zoo_spec("mlp-small"), 2);
  // A pruned, weight-shared layer: codes into a 4-entry codebook, a quarter of them masked.
  const auto codebook = at::tensor({-0.1f, 0.0f, 0.05f, 0.2f});
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const auto codes = at::randint(0, 4, {32, 784}, gen, at::kByte);
  QuantizedTensor q;
  q.encoding = Encoding::kCodebook;
  q.values = codes;
  q.codebook = codebook;
  q.bits = 2;
  m.tensor("1.weight").copy_(q.dequantize());
  m.set_mask("1.weight", at::rand({32, 784}, gen) > 0.25);
  m.quant.mode = "codebook";
  m.quant.tensors["1.weight"] = q;
  const auto proto = parse(interop::onnx_model_bytes(m));
  for (const auto& t : proto.graph().initializer()) {
    if (t.name() != "1.weight") continue;
    ASSERT_EQ(t.data_type(), onnx::TensorProto::FLOAT);
    auto values = at::empty({32, 784}, at::kFloat);
    ASSERT_EQ(t.raw_data().size(), values.nbytes());
    std::memcpy(values.data_ptr(), t.raw_data().data(), values.nbytes());
    EXPECT_TRUE(values.equal(m.tensor("1.weight")));
    return;
  }
  FAIL() << "no initializer 1.weight";
}

TEST(OnnxExport, WritesAtomicallyAndNamesTheCulprit) {
  const Model m = Model::initialize(zoo_spec("mlp-small"), 3);
  TempDir tmp;
  const auto path = tmp.file("model.onnx");
  const auto info = interop::export_onnx(m, path);
  EXPECT_EQ(static_cast<int64_t>(fs::file_size(path)), info.bytes);
  EXPECT_EQ(parse(testing::read_bytes(path)).graph().node_size(), info.nodes);
  for (const auto& e : fs::directory_iterator(tmp.path())) {
    EXPECT_EQ(e.path().filename(), "model.onnx") << "left behind: " << e.path();
  }
  ASSERT_THROWS_WITH(interop::export_onnx(m, tmp.file("missing/model.onnx")), IoError, "missing");

  Model bad = m.clone();
  QuantizedTensor q;
  q.encoding = Encoding::kFp16;
  q.values = at::zeros({3}, at::kHalf);  // not the tensor's shape
  bad.quant.mode = "fp16";
  bad.quant.tensors["1.weight"] = q;
  ASSERT_THROWS_WITH(interop::onnx_model_bytes(bad), ModelError, "'1.weight'");

  Model bad_act = quantized("mlp-small", quant::QuantMode::kInt8Static);
  bad_act.quant.activations.at("2").zero_point = 300;
  ASSERT_THROWS_WITH(interop::onnx_model_bytes(bad_act), ModelError, "activation '2'");
}

TEST(OnnxExport, GraphModelsExportTheirLoweredSteps) {
  const Model m = Model::initialize(zoo_graph("mobilenetv2"), 1);
  const auto proto = parse(interop::onnx_model_bytes(m));
  const auto ops = op_counts(proto);
  int convs = 0, adds = 0, clips = 0;
  for (const Node& n : m.graph().nodes) {
    convs += n.op == "Conv";
    adds += n.op == "Add";
    clips += n.op == "Clip";
  }
  EXPECT_EQ(ops.at("Conv"), convs);
  EXPECT_EQ(ops.at("Add"), adds);
  EXPECT_EQ(ops.at("Clip"), clips);  // ReLU6, with its bounds as inputs (opset 13)
  EXPECT_EQ(proto.metadata_props(0).key(), "mcompress.graph");
  EXPECT_EQ(proto.graph().name(), "mobilenetv2");
}

// ---- ONNX Runtime against our runtime ----

// fp32 through different kernels (summation order, BatchNormalization vs folded weights):
// within 1e-5 of the logits' magnitude (measured: below 2e-7).
void expect_float_close(const at::Tensor& ours, const at::Tensor& theirs) {
  const double diff = max_abs_diff(ours, theirs);
  const double bound = 1e-5 * (1 + ours.abs().max().item<double>());
  EXPECT_LE(diff, bound);
  std::cout << "[ fp32 ] max diff " << diff << " (bound " << bound << ")\n";
}

// Every layer type of arch_spec.h, with the geometry PyTorch and ONNX could disagree on:
// grouped strided conv without bias, padded pools, an average pool counting its padding, an
// adaptive pool with unequal windows, batchnorm without a conv, identity and projection blocks.
ArchSpec every_layer_spec() {
  return ArchSpec::from_json_text(R"({"name":"every-layer","input_shape":[2,13,13],
    "num_classes":5,"mean":[0.3,0.5],"std":[0.2,0.4],"layers":[
    {"type":"conv2d","out_channels":4,"kernel_size":3,"stride":2,"padding":1,"groups":2,
     "bias":false},
    {"type":"batchnorm2d","eps":0.001},{"type":"relu"},
    {"type":"residual","out_channels":4,"stride":1},
    {"type":"residual","out_channels":6,"stride":2},
    {"type":"maxpool2d","kernel_size":3,"stride":1,"padding":1},
    {"type":"avgpool2d","kernel_size":2,"stride":1,"padding":1},
    {"type":"conv2d","out_channels":6,"kernel_size":1},
    {"type":"adaptive_avgpool2d","output_size":3},
    {"type":"flatten"},{"type":"dropout","p":0.2},
    {"type":"linear","out_features":16},{"type":"batchnorm1d"},{"type":"relu"},
    {"type":"linear","out_features":5}]})");
}

// Exports `m`, runs it in ONNX Runtime and in our runtime's fp32 plan on `x`, and compares.
void expect_fp32_export_matches(const Model& m, const at::Tensor& x) {
  TempDir tmp;
  interop::export_onnx(m, tmp.file("m.onnx"));
  const auto ours = run_ours(m, x, runtime::KernelPolicy::kFp32);
  const auto theirs = ort().run(tmp.file("m.onnx"), x, tmp);
  ASSERT_TRUE(theirs.defined());
  expect_float_close(ours, theirs);
}

TEST(OnnxRuntime, Fp32MatchesOurRuntimeForEveryLayerType) {
  SKIP_WITHOUT_ORT();
  Model m = Model::initialize(every_layer_spec(), 4);
  randomize_batchnorms(m, 5);
  expect_fp32_export_matches(m,
                             at::rand({6, 2, 13, 13}, at::make_generator<at::CPUGeneratorImpl>(6)));
}

TEST(OnnxRuntime, Fp32ZooModelsMatchOurRuntime) {
  SKIP_WITHOUT_ORT();
  for (const auto& entry : zoo_entries()) {
    SCOPED_TRACE(entry.name);
    Model m = Model::initialize(zoo_spec(entry.name), 8);
    randomize_batchnorms(m, 9);
    expect_fp32_export_matches(m, data().x.slice(0, 0, 16));
  }
}

TEST(OnnxRuntime, Fp32GraphZooModelsMatchOurRuntime) {
  SKIP_WITHOUT_ORT();
  for (const auto& entry : zoo_graph_entries()) {
    SCOPED_TRACE(entry.name);
    Model m = Model::initialize(zoo_graph(entry.name), 8);
    randomize_batchnorms(m, 9);
    expect_fp32_export_matches(m, data().x.slice(0, 0, 8));
  }
}

TEST(OnnxRuntime, HalfPrecisionMatchesOurRuntime) {
  SKIP_WITHOUT_ORT();
  const auto x = data().x.slice(0, 0, 16);
  for (const auto& [name, mode] :
       {std::pair{"lenet5", quant::QuantMode::kFp16}, std::pair{"resnet8", quant::QuantMode::kFp16},
        std::pair{"lenet5", quant::QuantMode::kBf16}}) {
    SCOPED_TRACE(std::string(name) + " " + quant::to_string(mode));
    const Model m = quantized(name, mode);  // both compute in fp32 from the same half values
    TempDir tmp;
    interop::export_onnx(m, tmp.file("m.onnx"));
    const auto ours = run_ours(m, x, runtime::KernelPolicy::kInt8);
    const auto theirs = ort().run(tmp.file("m.onnx"), x, tmp);
    ASSERT_TRUE(theirs.defined());
    expect_float_close(ours, theirs);
  }
}

// int8 outputs differ by rounding (requantization, the int32 bias, average pools), each at
// most a step of the activation it rounds, and that propagates. The tolerance is stated in
// steps of the logits: the last activation's scale for int8-static, range/255 for dynamic.
void expect_int8_close(const at::Tensor& ours, const at::Tensor& theirs, double step,
                       double max_steps, double min_top1) {
  const double diff = max_abs_diff(ours, theirs);
  EXPECT_LE(diff, max_steps * step) << "differs by " << diff / step << " logit steps";
  EXPECT_GE(top1_agreement(ours, theirs), min_top1);
  std::cout << "[ int8 ] max diff " << diff / step << " steps of " << step << ", top-1 agreement "
            << top1_agreement(ours, theirs) << "\n";
}

std::map<std::string, int> optimized_ops(const std::string& path) {
  return op_counts(parse(testing::read_bytes(path)));
}

TEST(OnnxRuntime, Int8DynamicMatchesOurRuntimeAndRunsIntegerKernels) {
  SKIP_WITHOUT_ORT();
  const auto x = data().x.slice(0, 0, 64);
  for (const char* name : {"mlp", "lenet5"}) {
    SCOPED_TRACE(name);
    const Model m = quantized(name, quant::QuantMode::kInt8Dynamic);
    TempDir tmp;
    interop::export_onnx(m, tmp.file("m.onnx"));
    const auto ours = run_ours(m, x, runtime::KernelPolicy::kInt8);
    const auto theirs = ort().run(tmp.file("m.onnx"), x, tmp, tmp.file("opt.onnx"));
    ASSERT_TRUE(theirs.defined());
    const double step = (ours.max() - ours.min()).item<double>() / 255;
    expect_int8_close(ours, theirs, step, 1, 0.98);
    auto ops = optimized_ops(tmp.file("opt.onnx"));
    EXPECT_EQ(ops["MatMulInteger"], 0) << "ORT did not fuse the dynamic MatMuls";
    EXPECT_EQ(ops["DynamicQuantizeMatMul"], 3);
  }
}

TEST(OnnxRuntime, Int8StaticMatchesOurRuntimeAndRunsInt8Kernels) {
  SKIP_WITHOUT_ORT();
  const auto x = data().x.slice(0, 0, 64);
  struct Case {
    std::string name, zoo;
    int convs, qlinear_convs, qgemms, qadds;
  };
  // "lenet5-mixed": conv 3 kept fp32 (as the accuracy guard would), so the graph leaves and
  // re-enters the int8 domain around it.
  for (const auto& c :
       {Case{"lenet5", "lenet5", 0, 2, 3, 0}, Case{"convnet", "convnet", 0, 4, 2, 0},
        Case{"resnet8", "resnet8", 0, 9, 1, 3}, Case{"lenet5-mixed", "lenet5", 1, 1, 3, 0}}) {
    SCOPED_TRACE(c.name);
    Model m = quantized(c.zoo, quant::QuantMode::kInt8Static);
    if (c.name == "lenet5-mixed") m.quant.tensors.erase("3.weight");
    TempDir tmp;
    interop::export_onnx(m, tmp.file("m.onnx"));
    const auto ours = run_ours(m, x, runtime::KernelPolicy::kInt8);
    const auto theirs = ort().run(tmp.file("m.onnx"), x, tmp, tmp.file("opt.onnx"));
    ASSERT_TRUE(theirs.defined());
    const auto last = std::to_string(m.spec().layers.size() - 1);
    expect_int8_close(ours, theirs, m.quant.activations.at(last).scale, 3, 0.95);
    // ORT's graph after its QDQ fusions: the int8 convs, linears and residual adds run as
    // int8 kernels; a float Conv only where the model keeps one.
    auto ops = optimized_ops(tmp.file("opt.onnx"));
    std::cout << "[ ORT  ] optimized graph:";
    for (const auto& [op, n] : ops) std::cout << " " << op << " " << n;
    std::cout << "\n";
    EXPECT_EQ(ops["Conv"] + ops["FusedConv"], c.convs);  // FusedConv: ORT's float conv+relu
    EXPECT_EQ(ops["Gemm"], 0);
    EXPECT_EQ(ops["QLinearConv"], c.qlinear_convs);
    EXPECT_EQ(ops["QGemm"], c.qgemms);
    EXPECT_EQ(ops["QLinearAdd"], c.qadds);
  }
}

// mobilenetv2 through its inverted-residual Adds in the int8 domain: ONNX Runtime fuses every
// Conv and Add of the QDQ graph into int8 kernels, as our plan runs them. Its ReLU6 (Clip)
// keeps the conv's qparams in our plan, wider than [0, 6], so ORT runs it between a
// DequantizeLinear and a QuantizeLinear of the same qparams rather than dropping it.
TEST(OnnxRuntime, Int8StaticGraphModelMatchesOurRuntimeAndRunsInt8Kernels) {
  SKIP_WITHOUT_ORT();
  Model m = Model::initialize(zoo_graph("mobilenetv2"), 0);
  TrainOptions t;
  t.epochs = 1;
  t.batch_size = 32;
  t.lr = 3e-3;
  t.progress = false;
  train_model(m, data().slice(0, 384), data().slice(384, 512), t);
  quant::QuantizeOptions o;
  o.mode = quant::QuantMode::kInt8Static;
  o.calib_batches = 4;
  o.calib_batch_size = 32;
  quant::quantize_model(m, o, data().slice(0, 128), Dataset{});
  TempDir tmp;
  interop::export_onnx(m, tmp.file("m.onnx"));
  const auto x = data().x.slice(0, 0, 64);
  const auto ours = run_ours(m, x, runtime::KernelPolicy::kInt8);
  const auto theirs = ort().run(tmp.file("m.onnx"), x, tmp, tmp.file("opt.onnx"));
  ASSERT_TRUE(theirs.defined());
  expect_int8_close(ours, theirs, m.quant.activations.at(m.graph().outputs[0]).scale, 3, 0.95);
  auto ops = optimized_ops(tmp.file("opt.onnx"));
  std::cout << "[ ORT  ] optimized graph:";
  for (const auto& [op, n] : ops) std::cout << " " << op << " " << n;
  std::cout << "\n";
  int convs = 0, adds = 0;
  for (const Node& n : m.graph().nodes) {
    convs += n.op == "Conv";
    adds += n.op == "Add";
  }
  EXPECT_EQ(ops["QLinearConv"], convs);
  EXPECT_EQ(ops["QLinearAdd"], adds);
  EXPECT_EQ(ops["Conv"] + ops["FusedConv"] + ops["Gemm"], 0);
  EXPECT_EQ(ops["QGemm"], 1);
}

}  // namespace
}  // namespace mcompress
