// The h5py reader of docs/format.md §12, run as a user would copy it (with Debian's python3-h5py
// and python3-torch): it must rebuild a version-4 graph model from the file alone and compute
// the logits GraphNetwork computes. Keeps the document's reader and its op semantics true.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <vector>

#include "graph_support.h"
#include "mcompress/core/graph.h"
#include "mcompress/core/graph_network.h"
#include "mcompress/core/model.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/zoo_graphs.h"
#include "test_support.h"

namespace mcompress {
namespace {

using json = nlohmann::json;
using testing::kBatch;

const std::string kPythonExe = "/usr/bin/python3";
const std::string kRepo = std::string(MCOMPRESS_TEST_DATA_DIR) + "/../..";

// One input, every op of the table at least once, with the attributes that change the
// arithmetic away from their defaults: asymmetric pads, dilation, groups, ceil mode,
// count_include_pad, negative axes, Reshape's 0.
Graph every_op_graph() {
  Graph g;
  g.name = "every-op";
  g.inputs.push_back({"x", DType::kFloat32, {kBatch, 2, 9, 9}});
  g.preprocess.kind = Preprocess::Kind::kNormalize;
  g.preprocess.mean = {0.1, 0.2};
  g.preprocess.std = {0.5, 2.0};
  g.task.num_classes = 5;
  const json none = json::object();
  g.nodes = {
      {"conv",
       "Conv",
       {"x"},
       {"c"},
       {{"out_channels", 4}, {"kernel_shape", {3, 3}}, {"strides", {2, 2}}, {"pads", {1, 0, 0, 1}}},
       {}},
      {"bn", "BatchNormalization", {"c"}, {"b"}, none, {}},
      {"hswish", "HardSwish", {"b"}, {"h"}, none, {}},
      {"dw",
       "Conv",
       {"h"},
       {"dw"},
       {{"out_channels", 4},
        {"kernel_shape", {3, 3}},
        {"group", 4},
        {"pads", {2, 2, 2, 2}},
        {"dilations", {2, 2}},
        {"bias", 0}},
       {{"weight", "depthwise.kernel"}}},
      {"maxpool",
       "MaxPool",
       {"dw"},
       {"mp"},
       {{"kernel_shape", {2, 2}}, {"strides", {2, 2}}, {"pads", {0, 0, 1, 1}}, {"ceil_mode", 1}},
       {}},
      {"gap", "GlobalAveragePool", {"mp"}, {"gap"}, none, {}},
      {"gap_flat", "Flatten", {"gap"}, {"gf"}, none, {}},
      {"avgpool",
       "AveragePool",
       {"h"},
       {"ap"},
       {{"kernel_shape", {3, 3}}, {"pads", {1, 1, 1, 1}}, {"count_include_pad", 0}},
       {}},
      {"sigmoid", "Sigmoid", {"ap"}, {"sig"}, none, {}},
      {"tanh", "Tanh", {"ap"}, {"tanh"}, none, {}},
      {"silu", "SiLU", {"ap"}, {"silu"}, none, {}},
      {"hsig", "HardSigmoid", {"ap"}, {"hsig"}, {{"alpha", 0.3}, {"beta", 0.4}}, {}},
      {"clip", "Clip", {"ap"}, {"clip"}, {{"min", -0.5}, {"max", 0.5}}, {}},
      {"mul", "Mul", {"sig", "tanh"}, {"mul"}, none, {}},
      {"add", "Add", {"mul", "silu"}, {"add"}, none, {}},
      {"cat", "Concat", {"add", "hsig", "clip"}, {"cat"}, {{"axis", -3}}, {}},
      {"relu", "Relu", {"cat"}, {"relu"}, none, {}},
      {"adaptive", "AdaptiveAveragePool", {"relu"}, {"ad"}, {{"output_size", {2, 2}}}, {}},
      {"rows", "Reshape", {"ad"}, {"rows"}, {{"shape", {0, 12, 4}}}, {}},
      {"cols", "Reshape", {"ad"}, {"cols"}, {{"shape", {0, 4, 12}}}, {}},
      {"matmul", "MatMul", {"rows", "cols"}, {"mm"}, none, {}},
      {"flat", "Flatten", {"mm"}, {"f"}, none, {}},
      {"dropout", "Dropout", {"f"}, {"d"}, none, {}},
      {"identity", "Identity", {"d"}, {"i"}, none, {}},
      {"join", "Concat", {"i", "gf"}, {"j"}, {{"axis", 1}}, {}},
      {"fc", "Gemm", {"j"}, {"logits"}, {{"out_features", 5}}, {}}};
  g.outputs = {"logits"};
  return g;
}

// A model of `graph` whose batchnorm statistics and affine parameters are far from the
// identity, so that the reader's batchnorm is really exercised.
Model randomized(const Graph& graph, uint64_t seed) {
  Model m = Model::initialize(graph, seed);
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  for (const GraphParam& p : graph.analyze().params) {
    const auto node = std::find_if(graph.nodes.begin(), graph.nodes.end(),
                                   [&](const Node& n) { return n.name == p.node; });
    if (node->op != "BatchNormalization") continue;
    at::Tensor& t = m.tensor(p.name);
    if (p.spec.role == "running_mean" || p.spec.role == "bias") t.normal_(0.0, 0.1);
    if (p.spec.role == "running_var" || p.spec.role == "weight") t.uniform_(0.5, 1.5);
  }
  return m;
}

class FormatReaderTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FormatReaderTest, ThePythonReaderOfFormatMdComputesTheSameLogits) {
  const auto probe = testing::run_shell(kPythonExe + " -c 'import h5py, torch'");
  if (probe.code != 0) {
    GTEST_SKIP() << kPythonExe << " cannot import h5py and torch (install python3-h5py and "
                 << "python3-torch): " << probe.out;
  }
  const Graph graph = GetParam() == "every-op" ? every_op_graph() : zoo_graph(GetParam());
  const Model model = randomized(graph, 3);
  const auto shape = model.input_shape();
  std::vector<int64_t> batch = {3};
  batch.insert(batch.end(), shape.begin(), shape.end());
  torch::manual_seed(5);
  const auto x = torch::rand(batch);
  GraphNetwork net(graph);
  net->load(model.tensors());
  net->eval();
  torch::Tensor logits;
  {
    torch::NoGradGuard no_grad;
    logits = net->forward(x).contiguous();
  }

  testing::TempDir dir;
  save_model(model, dir.file("model.h5"));
  ASSERT_EQ(inspect_model_file(dir.file("model.h5")).format_version, 4);
  auto raw = [](const torch::Tensor& t) {
    return std::string(static_cast<const char*>(t.data_ptr()), t.numel() * sizeof(float));
  };
  testing::write_bytes(dir.file("x.bin"), raw(x.contiguous()));
  testing::write_bytes(dir.file("logits.bin"), raw(logits));
  std::string dims;
  for (int64_t d : batch) dims += (dims.empty() ? "" : ",") + std::to_string(d);
  const auto r =
      testing::run_shell(kPythonExe + " " + kRepo + "/tests/core/python/format_reader_check.py " +
                         kRepo + "/docs/format.md " + dir.file("model.h5") + " " +
                         dir.file("x.bin") + " " + dir.file("logits.bin") + " " + dims);
  EXPECT_EQ(r.code, 0) << r.out;
}

INSTANTIATE_TEST_SUITE_P(Graphs, FormatReaderTest,
                         ::testing::Values("every-op", "resnet18", "mobilenetv2"),
                         [](const auto& info) {
                           std::string name = info.param;
                           name.erase(std::remove(name.begin(), name.end(), '-'), name.end());
                           return name;
                         });

}  // namespace
}  // namespace mcompress
